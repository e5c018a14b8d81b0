#!/usr/bin/env python
r"""The problem of approximate inference, made visible with a 2-D latent.

    python examples/approximate_inference.py                 # ~2 minutes on 2 CPU cores
    python examples/approximate_inference.py --posterior diagonal --epochs 300 --digits 6

Trains 784-400-2 VAEs on the embedded digits, one with a diagonal q(z|x) and one
with a full-covariance q(z|x) = N(μ, C Cᵀ) (``--posterior`` picks one), then, for a
few held-out digits (the fixed binarized test set), integrates over the whole
latent plane on a grid:

    log p(x)        = log ∫ p(x|z) p(z) dz                   (the "intractable" integral)
    ELBO            = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))      (what the VAE maximises)
    KL(q ‖ p(z|x))  = ∫ q(z|x) log( q(z|x) / p(z|x) ) dz       (how wrong q is)

and shows that log p(x) = ELBO + KL(q ‖ p(z|x)) (the last column of the table is
the difference, zero up to quadrature error).  As independent checks it prints an
importance-sampling estimate of log p(x) (20,000 draws from q, with its standard
error) and how much log p(x) and the ELBO move on a grid of 2/3 the resolution.
With both posteriors it ends with KL(q ‖ p(z|x)) side by side: where a posterior
is tilted, only the full q can lean with it.

Writes into --out: posterior.png (diagonal) and posterior_full.png (each digit
above its true posterior p(z|x), with q(z|x) drawn over it) and numbers.json.
The maths is in minivae/inference.py and minivae/models/posterior.py.
"""

import argparse
import json
import sys
import time

import numpy as np

from minivae.training import plots
from minivae.training.cli import integer_in, non_negative_int, output_dir, positive_int, run_guarded
from minivae.data import binarize_fixed, load_dataset
from minivae.training.files import atomic_write, prepare_output_dir
from minivae.inference import float64_copy, vae_log_likelihood, vae_posterior_grid
from minivae.numerics import log_mean_exp, log_normal_diag
from minivae.training.train import VAEConfig, train_vae


def pick_digits(labels, count):
    """Indices of the first ``count`` test digits with distinct labels."""
    chosen, seen = [], set()
    for i, y in enumerate(labels):
        if int(y) not in seen:
            chosen.append(i)
            seen.add(int(y))
        if len(chosen) == count:
            break
    return chosen


def importance_sampled_log_px(model, x, grid, k, rng):
    r"""An independent Monte Carlo check of log p(x), with its standard error.

    log p(x) = log E_q[w],  w = p(x|z) p(z) / q(z|x),  z = μ + L ε ~ q:  estimated by the
    log of the mean of k weights; its standard error by the delta method,
    std(w) / (√k · mean w).  When q is a poor fit the weights are heavy-tailed and the
    error bar is optimistic.
    """
    z = grid.mu_q + rng.standard_normal((k, 2)) @ grid.scale_q.T
    log_w = (vae_log_likelihood(model, x)(z) + log_normal_diag(z, 0.0, 0.0)
             - grid.log_q_on(z))
    w = np.exp(log_w - log_w.max())
    return float(log_mean_exp(log_w)), float(w.std(ddof=1) / (np.sqrt(k) * w.mean()))


#: The finest grid per axis: a grid of n² cells decodes n² latent points per digit (plus a
#: coarser check grid), so the bound keeps a mistyped --grid from running for hours.
MAX_GRID = 1001


def check_grid_size(n: int) -> int:
    """The coarser grid the convergence check recomputes on: 2n/3 cells per axis, always
    fewer than n (from the smallest --grid, 30, on), so the check compares two grids."""
    return (2 * n) // 3


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=positive_int, default=100,
                    help="training epochs per model (default 100: about 16 s a model on "
                         "2 CPU cores)")
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument("--backend", choices=["numpy", "cupy", "auto"], default="numpy")
    ap.add_argument("--digits", type=integer_in(1, "an integer from 1 to 10", 10), default=4,
                    help="how many test digits (of distinct classes, at most 10)")
    ap.add_argument("--grid", type=integer_in(30, f"an integer from 30 to {MAX_GRID}", MAX_GRID),
                    default=301, help=f"cells per axis of the posterior's grid, 30 to {MAX_GRID}")
    ap.add_argument("--posterior", choices=("diagonal", "full", "both"), default="both",
                    help="q(z|x) of the VAE(s) trained: diagonal, full covariance, or one of "
                         "each, side by side (default both)")
    ap.add_argument("--out", type=output_dir, default="runs/approximate_inference",
                    help="output directory")
    args = ap.parse_args(argv)
    # every failure (no GPU for --backend cupy, an unwritable --out, Ctrl-C) is one line
    _, status = run_guarded(lambda: run(args), args.out)
    return status


def study(args, posterior, data, x_test, indices):
    """Train one 784-400-2 VAE with this posterior family; tabulate its digits; return all."""
    t0 = time.perf_counter()
    metrics, model = train_vae(VAEConfig(latent_dim=2, epochs=args.epochs, seed=args.seed,
                                           backend=args.backend, posterior=posterior,
                                           out=None, progress=False), return_model=True)
    t_train = time.perf_counter() - t0
    model = float64_copy(model)                      # grid sums are compared to ~1e-9
    n, n_check = args.grid, check_grid_size(args.grid)
    rows, panels = [], []
    rng = np.random.default_rng(args.seed)
    for i in indices:
        x = x_test[i]
        g = vae_posterior_grid(model, x, n=n)
        s = g.summary()
        coarser = vae_posterior_grid(model, x, n=n_check, n_q=max(30, (2 * 201) // 3),
                                     box=g.post.box)
        is_log_px, is_se = importance_sampled_log_px(model, x, g, 20_000, rng)
        s.update(index=int(i), label=int(data.y_test[i]),
                 importance_sampled_log_px=is_log_px, importance_sampled_se=is_se,
                 grid_change_log_px=coarser.log_px - s["log_px"],
                 grid_change_elbo=coarser.elbo - s["elbo"])
        rows.append(s)
        panels.append({"image": x, "z1": g.post.z1, "z2": g.post.z2, "log_post": g.log_posterior,
                       "mu_q": g.mu_q, "logvar_q": g.logvar_q, "tril_q": g.tril_q,
                       "posterior": posterior,
                       "label": f"test digit #{i} (a {int(data.y_test[i])})",
                       "text": (f"log p(x) {s['log_px']:.2f}  ELBO {s['elbo']:.2f}\n"
                                f"KL(q‖p(z|x)) {s['kl_q_posterior']:.3f}")})
    return {"posterior": posterior, "test_neg_elbo": metrics["test"]["neg_elbo"],
            "digits": rows, "panels": panels, "train_seconds": t_train}


def print_table(result):
    print(f"\n{result['posterior']} q(z|x); test -ELBO {result['test_neg_elbo']:.2f}")
    print(f"{'digit':>9} {'log p(x)':>10} {'ELBO':>10} {'KL(q‖p(z|x))':>13} "
          f"{'ELBO+KL−log p(x)':>17} {'IS log p(x) ± se':>18} {'Δgrid log p':>12} "
          f"{'Δgrid ELBO':>11}")
    for s in result["digits"]:
        print(f"{'#%d (%d)' % (s['index'], s['label']):>9} {s['log_px']:10.4f} {s['elbo']:10.4f} "
              f"{s['kl_q_posterior']:13.4f} {s['identity_residual']:17.2e} "
              f"{s['importance_sampled_log_px']:10.4f} ± {s['importance_sampled_se']:5.3f} "
              f"{s['grid_change_log_px']:12.1e} {s['grid_change_elbo']:11.1e}")


def run(args):
    """Train, integrate, print the tables, write the figures and numbers.json; return the numbers."""
    families = ["diagonal", "full"] if args.posterior == "both" else [args.posterior]
    figures = {"diagonal": "posterior.png", "full": "posterior_full.png"}
    out = prepare_output_dir(args.out, [figures[f] for f in families] + ["numbers.json"])
    t0 = time.perf_counter()
    data = load_dataset("mnist5k")
    x_test = binarize_fixed(data.x_test)
    indices = pick_digits(data.y_test, args.digits)
    results = [study(args, f, data, x_test, indices) for f in families]
    for r in results:
        print_table(r)
    print("(nats.  IS: importance sampling from q with k = 20,000, an independent estimate of "
          "log p(x);\n Δgrid: how much the grid values move on a grid of 2/3 the resolution)")
    if len(results) == 2:
        print("\nKL(q ‖ p(z|x)), how far each model's q is from its own true posterior:")
        for a, b in zip(results[0]["digits"], results[1]["digits"]):
            print(f"{'#%d (%d)' % (a['index'], a['label']):>9}  diagonal q {a['kl_q_posterior']:8.4f}"
                  f"   full q {b['kl_q_posterior']:8.4f}   (full q: t = {b['tril_q']:+.3f})")
    for r in results:
        plots.plot_posteriors(r["panels"], out / figures[r["posterior"]], data.image_shape,
                              title=f"{r['posterior']} q(z|x) against the true posterior p(z|x): "
                                    f"784-400-2 VAE, {args.epochs} epochs, test −ELBO "
                                    f"{r['test_neg_elbo']:.1f}")
    result = {"config": {"epochs": args.epochs, "seed": args.seed, "backend": args.backend,
                         "grid": args.grid, "model": "784-400-2, relu, bernoulli"},
              "runs": {r["posterior"]: {"test_neg_elbo": r["test_neg_elbo"],
                                        "digits": r["digits"],
                                        "train_seconds": r["train_seconds"]} for r in results},
              "seconds": time.perf_counter() - t0}
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out / "numbers.json", lambda f: f.write(text.encode()))
    names = " and ".join(str(out / figures[f]) for f in families)
    print(f"wrote {names} and {out / 'numbers.json'} ({time.perf_counter() - t0:.0f} s)")
    return result


if __name__ == "__main__":
    sys.exit(main())
