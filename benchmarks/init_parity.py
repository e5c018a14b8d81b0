"""Which initialization should the VAE use by default?  Measured against PyTorch's defaults.

    python benchmarks/init_parity.py [--seeds 0 1 2 3] [--epochs 10 30 100] [--iw-samples 500]
                                     [--save benchmarks/results]

For every seed it trains the default 784-400-20 VAE (Bernoulli, dynamic
binarization, Adam 1e-3, batch 128, float32) on the embedded digits with each
of minivae's initializations (``he``: He/Glorot uniform, zero biases;
``torch``: every layer as PyTorch's nn.Linear, W and b ~ U(±1/√fan_in)), and the
independent PyTorch VAE of ``tests/torch_reference.py`` with nn.Linear's own
default initialization.  After each of the given epochs it scores all of them
on the same fixed binarized test digits: the test −ELBO (z sampled, 10 draws
per digit) and the importance-weighted −log p(x) with K samples.

minivae's runs reach the later epochs by resuming its own checkpoint, which on
NumPy continues bit-identically, so the 30-epoch numbers are those of a
30-epoch run.  Needs PyTorch (``pip install torch``); the reference runs with
one thread.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from minivae.data import binarize_fixed, load_dataset  # noqa: E402
from minivae.models.vae import INITS  # noqa: E402
from minivae.training.train import VAEConfig, train_vae  # noqa: E402


def minivae_runs(init: str, seed: int, epochs, iw_samples: int) -> dict:
    """Test metrics after each of ``epochs`` of one minivae run (resumed from stage to stage)."""
    result, resume = {}, None
    with tempfile.TemporaryDirectory() as tmp:
        for i, e in enumerate(epochs):
            out = Path(tmp) / f"stage{i}"
            m = train_vae(VAEConfig(epochs=e, seed=seed, init=init, out=str(out),
                                      progress=False, iw_samples=iw_samples), resume=resume)
            t = m["test"]
            result[e] = {"neg_elbo": t["neg_elbo"], "recon": t["recon"], "kl": t["kl"],
                         "iw_nll": t["iw_nll"], "active_units": t["active_units"]}
            resume = out / "checkpoint.npz"
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3])
    p.add_argument("--epochs", type=int, nargs="+", default=[10, 30, 100])
    p.add_argument("--iw-samples", type=int, default=500)
    p.add_argument("--save", type=Path, default=None, help="directory for init_parity.json")
    args = p.parse_args(argv)
    from torch_reference import train_torch_vae

    epochs = sorted(args.epochs)
    ds = load_dataset("mnist5k")
    x_test = binarize_fixed(ds.x_test)
    rows = {f"minivae {init}": {} for init in INITS} | {"torch nn.Linear default": {}}
    t0 = time.perf_counter()
    for seed in args.seeds:
        for init in INITS:
            rows[f"minivae {init}"][seed] = minivae_runs(init, seed, epochs, args.iw_samples)
        r = train_torch_vae(ds.x_train, x_test, epochs=epochs[-1], seed=seed, eval_samples=10,
                            threads=1, init="torch", iw_samples=args.iw_samples,
                            eval_epochs=tuple(epochs))
        at = {**r.get("at", {}), epochs[-1]: {k: r[k] for k in ("neg_elbo", "recon", "kl",
                                                               "iw_nll")}}
        rows["torch nn.Linear default"][seed] = at
        print(f"seed {seed} done, {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)

    print(f"mean over seeds {args.seeds} (std over seeds); test -ELBO | IW -log p(x), "
          f"k={args.iw_samples}, nats per example")
    summary = {}
    for name, by_seed in rows.items():
        cells = []
        for e in epochs:
            ne = np.array([by_seed[s][e]["neg_elbo"] for s in args.seeds])
            iw = np.array([by_seed[s][e]["iw_nll"] for s in args.seeds])
            summary.setdefault(name, {})[e] = {
                "neg_elbo_mean": ne.mean(), "neg_elbo_std": ne.std(ddof=1) if len(ne) > 1 else 0,
                "iw_nll_mean": iw.mean(), "iw_nll_std": iw.std(ddof=1) if len(iw) > 1 else 0}
            s = summary[name][e]
            cells.append(f"{e:3d} ep: {s['neg_elbo_mean']:7.2f} ({s['neg_elbo_std']:.2f}) | "
                         f"{s['iw_nll_mean']:7.2f} ({s['iw_nll_std']:.2f})")
        print(f"{name:26s} " + "   ".join(cells))
    if args.save is not None:
        args.save.mkdir(parents=True, exist_ok=True)
        (args.save / "init_parity.json").write_text(json.dumps(
            {"seeds": args.seeds, "epochs": epochs, "iw_samples": args.iw_samples,
             "runs": rows, "summary": summary, "seconds": time.perf_counter() - t0,
             "command": "python benchmarks/init_parity.py " + " ".join(argv or sys.argv[1:])},
            indent=1, default=float) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
