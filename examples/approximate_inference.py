#!/usr/bin/env python
r"""The problem of approximate inference, made visible with a 2-D latent.

    python examples/approximate_inference.py                 # ~1 minute on 2 CPU cores
    python examples/approximate_inference.py --epochs 300 --digits 6 --out runs/ai300

Trains a 784-400-2 VAE on the embedded digits, then, for a few held-out digits
(the fixed binarized test set), integrates over the whole latent plane on a grid:

    log p(x)        = log ∫ p(x|z) p(z) dz                   (the "intractable" integral)
    ELBO            = E_q[log p(x|z)] − KL(q(z|x) ‖ p(z))      (what the VAE maximises)
    KL(q ‖ p(z|x))  = ∫ q(z|x) log( q(z|x) / p(z|x) ) dz       (how wrong q is)

and shows that log p(x) = ELBO + KL(q ‖ p(z|x)) (the last column of the table is
the difference, zero up to quadrature error).  As independent checks it prints an
importance-sampling estimate of log p(x) (20,000 draws from q, with its standard
error) and how much log p(x) and the ELBO move on a grid of 2/3 the resolution.

Writes into --out: posterior.png (each digit above its true posterior p(z|x), with
q(z|x) drawn over it) and numbers.json.  The maths is in minivae/inference.py.
"""

import argparse
import json
import sys
import time

import numpy as np

from minivae import plots
from minivae.cli import integer_in, non_negative_int, output_dir, positive_int, run_guarded
from minivae.data import binarize_fixed, load_dataset
from minivae.files import atomic_write, prepare_output_dir
from minivae.inference import float64_copy, vae_log_likelihood, vae_posterior_grid
from minivae.numerics import log_mean_exp, log_normal_diag
from minivae.train import TrainConfig, train_vae


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


def importance_sampled_log_px(model, x, mu_q, logvar_q, k, rng):
    r"""An independent Monte Carlo check of log p(x), with its standard error.

    log p(x) = log E_q[w],  w = p(x|z) p(z) / q(z|x),  z ~ q:  estimated by the log of
    the mean of k weights; its standard error by the delta method, std(w) / (√k · mean w).
    When q is a poor fit the weights are heavy-tailed and the error bar is optimistic.
    """
    z = mu_q + np.exp(0.5 * logvar_q) * rng.standard_normal((k, 2))
    log_w = (vae_log_likelihood(model, x)(z) + log_normal_diag(z, 0.0, 0.0)
             - log_normal_diag(z, mu_q, logvar_q))
    w = np.exp(log_w - log_w.max())
    return float(log_mean_exp(log_w)), float(w.std(ddof=1) / (np.sqrt(k) * w.mean()))


#: The finest grid per axis: a grid of n² cells decodes n² latent points per digit (plus a
#: coarser check grid), so the bound keeps a mistyped --grid from running for hours.
MAX_GRID = 1001


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--epochs", type=positive_int, default=100,
                    help="training epochs (default 100, ~20 s)")
    ap.add_argument("--seed", type=non_negative_int, default=0)
    ap.add_argument("--backend", choices=["numpy", "cupy", "auto"], default="numpy")
    ap.add_argument("--digits", type=integer_in(1, "an integer from 1 to 10", 10), default=4,
                    help="how many test digits (of distinct classes, at most 10)")
    ap.add_argument("--grid", type=integer_in(30, f"an integer from 30 to {MAX_GRID}", MAX_GRID),
                    default=301, help=f"cells per axis of the posterior's grid, 30 to {MAX_GRID}")
    ap.add_argument("--out", type=output_dir, default="runs/approximate_inference",
                    help="output directory")
    args = ap.parse_args(argv)
    # every failure (no GPU for --backend cupy, an unwritable --out, Ctrl-C) is one line
    _, status = run_guarded(lambda: run(args), args.out)
    return status


def run(args):
    """Train, integrate, print the table, write the figure and numbers.json; return the numbers."""
    out = prepare_output_dir(args.out, ["posterior.png", "numbers.json"])
    t0 = time.perf_counter()
    metrics, model = train_vae(TrainConfig(latent_dim=2, epochs=args.epochs, seed=args.seed,
                                           backend=args.backend, out=None, progress=False),
                               return_model=True)
    t_train = time.perf_counter() - t0
    model = float64_copy(model)                      # grid sums are compared to ~1e-9

    data = load_dataset("mnist5k")
    x_test = binarize_fixed(data.x_test)
    indices = pick_digits(data.y_test, args.digits)
    n, n_check = args.grid, max(30, (2 * args.grid) // 3)

    rows, panels = [], []
    rng = np.random.default_rng(args.seed)
    for i in indices:
        x = x_test[i]
        g = vae_posterior_grid(model, x, n=n)
        s = g.summary()
        coarser = vae_posterior_grid(model, x, n=n_check, n_q=max(30, (2 * 201) // 3), box=g.post.box)
        is_log_px, is_se = importance_sampled_log_px(model, x, g.mu_q, g.logvar_q, 20_000, rng)
        s.update(index=int(i), label=int(data.y_test[i]),
                 importance_sampled_log_px=is_log_px, importance_sampled_se=is_se,
                 grid_change_log_px=coarser.log_px - s["log_px"],
                 grid_change_elbo=coarser.elbo - s["elbo"])
        rows.append(s)
        panels.append({"image": x, "z1": g.post.z1, "z2": g.post.z2, "log_post": g.log_posterior,
                       "mu_q": g.mu_q, "logvar_q": g.logvar_q,
                       "label": f"test digit #{i} (a {int(data.y_test[i])})",
                       "text": (f"log p(x) {s['log_px']:.2f}  ELBO {s['elbo']:.2f}\n"
                                f"KL(q‖p(z|x)) {s['kl_q_posterior']:.3f}")})

    header = (f"{'digit':>9} {'log p(x)':>10} {'ELBO':>10} {'KL(q‖p(z|x))':>13} "
              f"{'ELBO+KL−log p(x)':>17} {'IS log p(x) ± se':>18} {'Δgrid log p':>12} "
              f"{'Δgrid ELBO':>11}")
    print("\n" + header)
    for s in rows:
        print(f"{'#%d (%d)' % (s['index'], s['label']):>9} {s['log_px']:10.4f} {s['elbo']:10.4f} "
              f"{s['kl_q_posterior']:13.4f} {s['identity_residual']:17.2e} "
              f"{s['importance_sampled_log_px']:10.4f} ± {s['importance_sampled_se']:5.3f} "
              f"{s['grid_change_log_px']:12.1e} {s['grid_change_elbo']:11.1e}")
    print("(nats.  IS: importance sampling from q with k = 20,000, an independent estimate of "
          "log p(x);\n Δgrid: how much the grid values move on a grid of 2/3 the resolution)")

    plots.plot_posteriors(panels, out / "posterior.png", data.image_shape,
                          title=f"q(z|x) against the true posterior p(z|x): 784-400-2 VAE, "
                                f"{args.epochs} epochs, test −ELBO {metrics['test']['neg_elbo']:.1f}")
    result = {"config": {"epochs": args.epochs, "seed": args.seed, "backend": args.backend,
                         "grid": n, "model": "784-400-2, relu, bernoulli"},
              "test_neg_elbo": metrics["test"]["neg_elbo"], "digits": rows,
              "seconds": {"train": t_train, "total": time.perf_counter() - t0}}
    text = json.dumps(result, indent=2) + "\n"
    atomic_write(out / "numbers.json", lambda f: f.write(text.encode()))
    print(f"wrote {out / 'posterior.png'} and {out / 'numbers.json'} "
          f"({time.perf_counter() - t0:.0f} s, of which training {t_train:.0f} s)")
    return result


if __name__ == "__main__":
    sys.exit(main())
