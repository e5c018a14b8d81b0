#!/usr/bin/env python
"""The same training on NumPy and on CuPy, draw for draw: the two loss curves side by side.

    python benchmarks/gpu_parity.py --steps 300 --json OUT.json      # needs a GPU

A seeded run cannot be compared across backends as it is: NumPy's and CuPy's generators
draw different numbers from the same seed.  So here every random number is drawn once, on
the host, and handed to both: the initial weights (copied from one model into the other),
the minibatches (binarized once on the host) and every ε (``forward(x, eps=...)``).  What is
left to differ is arithmetic: cuBLAS and OpenBLAS sum the matrix products in other orders,
the GPU contracts a·b + c into one rounding (FMA), and the fused kernels round where NumPy
rounds elsewhere.  Each is a difference of about one float32 rounding (6e-8 relative) per
operation, and training carries it forward: Adam divides each update by its own scale, so
the weights drift apart by a few roundings per step and the losses with them.

The tolerance, measured on the CPU with two roundings of the same arithmetic (the fast twins
against their formulas, 300 steps of batch 128): the per-step losses differed by at most
8.7e-8 relative over the first 10 steps and 6.6e-4 over all 300.  So the curves must agree to
1e-5 over the first 10 steps, before rounding has had time to grow, and to ``--rtol``
(default 1e-2: the GPU sums every product in another order, so it may drift further than
the CPU's 6.6e-4) over the whole run.  The fused Adam's float16 bug (1 − β₂ = 0.0009765625),
played on the CPU, separated the curves by 6.5e-3 within the first 10 steps: 650 times the
first bound.  Run with ``--cpu-only`` it
compares NumPy with itself through the same code (the difference is then 0): a check of
the script, not of a GPU.
"""

from __future__ import annotations

import argparse
import json
import sys

import numpy as np

from minivae.backend import get_backend
from minivae.data import load_dataset
from minivae.models.vae import VAE
from minivae.optim import Adam


def _run(name, x_batches, eps, start_params, threads):
    be = get_backend(name, dtype="float32", seed=0)
    model = VAE(784, (400,), 20, backend=be).for_training()
    for k, p in model.params.items():
        p[...] = be.to_device(start_params[k])
    opt = Adam(model.params, model.grads, lr=1e-3, threads=threads)
    losses = []
    for xb, e in zip(x_batches, eps):
        o = model.forward(be.to_device(xb), eps=be.to_device(e))
        model.backward()
        opt.step()
        losses.append(float((o.recon + o.kl).mean()))
    return np.array(losses)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=300)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--rtol", type=float, default=1e-2)
    p.add_argument("--json", default=None, help="write the curves and the verdict here")
    p.add_argument("--cpu-only", action="store_true", help="NumPy against NumPy (a dry run)")
    args = p.parse_args(argv)

    rng = np.random.default_rng(0)
    x = load_dataset("mnist5k").x_train
    order = rng.permutation(len(x))
    need = args.steps * args.batch_size
    rows = np.resize(order, need).reshape(args.steps, args.batch_size)
    x_batches = (rng.random((args.steps, args.batch_size, 784)) < x[rows]).astype(np.float32)
    eps = rng.standard_normal((args.steps, args.batch_size, 20)).astype(np.float32)
    start = {k: v.copy() for k, v in VAE(784, (400,), 20,
                                         backend=get_backend("numpy", seed=0)).params.items()}

    numpy_curve = _run("numpy", x_batches, eps, start, threads=1)
    other = "numpy" if args.cpu_only else "cupy"
    other_curve = _run(other, x_batches, eps, start, threads=1)
    rel = np.abs(other_curve - numpy_curve) / np.abs(numpy_curve)
    verdict = {"steps": args.steps, "batch_size": args.batch_size, "rtol": args.rtol,
               "compared": ["numpy", other],
               "max_rel_first_10": float(rel[:10].max()), "max_rel": float(rel.max()),
               "rel_at_end": float(rel[-1]),
               "first_loss": float(numpy_curve[0]), "last_loss": float(numpy_curve[-1])}
    verdict["ok"] = bool(verdict["max_rel_first_10"] <= 1e-5 and verdict["max_rel"] <= args.rtol
                         and numpy_curve[-1] < numpy_curve[0] - 50)
    print(json.dumps(verdict))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**verdict, "numpy": numpy_curve.tolist(), other: other_curve.tolist()}, f)
    return 0 if verdict["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
