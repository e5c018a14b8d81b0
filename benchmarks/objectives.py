"""The VAE's objective and posterior, compared at equal epochs over several seeds.

    python benchmarks/objectives.py --variants vae iwae1 iwae5 [--seeds 0 1 2 3]
                                    [--epochs 30 100] [--iw-samples 500] [--save DIR]

Each variant is the default 784-400-20 VAE on the embedded digits with a few
settings changed (:data:`VARIANTS`).  After each of the given epochs every run
is scored on the same fixed binarized test digits: the test −ELBO (z sampled,
10 draws per digit), the importance-weighted −log p(x) with K samples (and its
standard error over the digits) and the active units (Burda et al.'s
Var_x E_q[z_j|x] ≥ 0.01).  The later epochs are reached by resuming each run's
own checkpoint, which on NumPy continues bit-identically.

Differences between variants are reported per seed (the runs of one seed share
the data order and the initial weights), so their standard error is that of a
paired difference.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from minivae.training.train import VAEConfig, train_vae

#: The settings each variant changes from the default run.
VARIANTS = {
    "vae": {},
    "iwae1": {"objective": "iwae", "k": 1},
    "iwae5": {"objective": "iwae", "k": 5},
    "vae_full": {"posterior": "full"},
    "iwae5_full": {"objective": "iwae", "k": 5, "posterior": "full"},
}


def staged_run(settings: dict, seed: int, epochs, iw_samples: int) -> dict:
    """Test metrics after each of ``epochs`` of one run, resumed from stage to stage."""
    result, resume = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, e in enumerate(epochs):
            out = Path(tmp) / f"stage{i}"
            m = train_vae(VAEConfig(epochs=e, seed=seed, out=str(out), progress=False,
                                      iw_samples=iw_samples, **settings), resume=resume)
            t = m["test"]
            result[e] = {key: t[key] for key in ("neg_elbo", "recon", "kl", "iw_nll",
                                                 "iw_nll_se", "active_units")}
            result[e]["seconds"] = sum(h["seconds"] for h in m["history"])
            resume = out / "checkpoint.npz"
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--variants", nargs="+", choices=tuple(VARIANTS), default=["vae", "iwae1",
                                                                              "iwae5"])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--epochs", type=int, nargs="+", default=[30, 100])
    p.add_argument("--iw-samples", type=int, default=500)
    p.add_argument("--save", type=Path, default=None, help="directory for the JSON results")
    args = p.parse_args(argv)
    epochs = sorted(args.epochs)
    runs = {v: {} for v in args.variants}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for v in args.variants:
            runs[v][seed] = staged_run(VARIANTS[v], seed, epochs, args.iw_samples)
            print(f"{v} seed {seed} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr,
                  flush=True)
    base = args.variants[0]
    print(f"mean over seeds {args.seeds}; IW = importance-weighted -log p(x), k={args.iw_samples}"
          f"; differences against {base}, paired by seed, ± their standard error")
    summary = {}
    for v in args.variants:
        for e in epochs:
            get = {key: np.array([runs[v][s][e][key] for s in args.seeds])
                   for key in ("neg_elbo", "iw_nll", "active_units", "seconds")}
            d_iw = get["iw_nll"] - np.array([runs[base][s][e]["iw_nll"] for s in args.seeds])
            d_ne = get["neg_elbo"] - np.array([runs[base][s][e]["neg_elbo"] for s in args.seeds])
            n = len(args.seeds)
            sem = (lambda a: float(a.std(ddof=1) / np.sqrt(n)) if n > 1 else 0.0)
            summary.setdefault(v, {})[e] = row = {
                "neg_elbo": float(get["neg_elbo"].mean()), "neg_elbo_sem": sem(get["neg_elbo"]),
                "iw_nll": float(get["iw_nll"].mean()), "iw_nll_sem": sem(get["iw_nll"]),
                "active_units": float(get["active_units"].mean()),
                "seconds": float(get["seconds"].mean()),
                "d_neg_elbo": float(d_ne.mean()), "d_neg_elbo_sem": sem(d_ne),
                "d_iw_nll": float(d_iw.mean()), "d_iw_nll_sem": sem(d_iw)}
            print(f"{v:11s} {e:4d} epochs: -ELBO {row['neg_elbo']:7.2f}  IW {row['iw_nll']:7.2f}"
                  f"  active {row['active_units']:4.1f}  Δ-ELBO {row['d_neg_elbo']:+6.2f} ± "
                  f"{row['d_neg_elbo_sem']:.2f}  ΔIW {row['d_iw_nll']:+6.2f} ± "
                  f"{row['d_iw_nll_sem']:.2f}  ({row['seconds']:.0f} s of training)")
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        name = "objectives_" + "_".join(args.variants) + ".json"
        (args.save / name).write_text(json.dumps(
            {"variants": {v: VARIANTS[v] for v in args.variants}, "seeds": args.seeds,
             "epochs": epochs, "iw_samples": args.iw_samples, "runs": runs, "summary": summary,
             "seconds": time.perf_counter() - t0,
             "command": "python benchmarks/objectives.py " + " ".join(argv or sys.argv[1:])},
            indent=1) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
