#!/usr/bin/env python
"""Where the time of one VAE training step goes (784-400-20, ReLU, Bernoulli, Adam).

    python benchmarks/profile_step.py --batch-size 128 1024 --threads 2

Times each part on its own (median of repeated runs, after a warm-up) and
prints one JSON line per batch size, in milliseconds:

    step            zero_grad + forward + backward + Adam, as in training
    forward         the whole forward pass (encoder, reparameterization, decoder, loss)
    loss_forward    the Bernoulli log-likelihood alone
    backward        the whole backward pass
    loss_backward   the Bernoulli gradient alone
    adam            the optimizer step
    gemm            the step's matrix products alone (as bench_train_step.py)
    other           step − gemm: the elementwise work and Python overhead

Uses only the public API, so it runs on older versions of minivae too
(set PYTHONPATH to a checkout) for before/after comparisons.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import gemm_step  # noqa: E402

from minivae.backend import get_backend  # noqa: E402
from minivae.models.vae import VAE  # noqa: E402
from minivae.optim import Adam  # noqa: E402


def median_ms(f, repeats: int) -> float:
    for _ in range(5):
        f()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def profile(batch_size: int, repeats: int) -> dict:
    be = get_backend("numpy", seed=0)
    model = VAE(backend=be)
    opt = Adam(model.params, model.grads, lr=1e-3)
    x = (be.uniform((batch_size, 784)) < 0.3).astype(be.dtype)
    out = model.forward(x, check=False).out
    dlogp = np.full(batch_size, -1.0 / batch_size, dtype=be.dtype)

    def step():
        model.zero_grad()
        model.forward(x, check=False)
        model.backward()
        opt.step()

    def forward_backward():
        model.forward(x, check=False)
        model.backward()

    r = {"batch_size": batch_size,
         "step": median_ms(step, repeats),
         "forward": median_ms(lambda: model.forward(x, check=False), repeats),
         "loss_forward": median_ms(lambda: model.likelihood.log_prob(x, out), repeats)}
    r["loss_backward"] = median_ms(lambda: model.likelihood.backward(dlogp), repeats)
    r["backward"] = median_ms(forward_backward, repeats) - r["forward"]
    r["adam"] = median_ms(opt.step, repeats)
    r["gemm"] = median_ms(gemm_step(be, batch_size), repeats)
    r["other"] = r["step"] - r["gemm"]
    return r


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=100)
    p.add_argument("--label", default="", help="a name for this tree, copied into each line")
    args = p.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):
        for b in args.batch_size:
            row = profile(b, args.repeats)
            row = {"label": args.label, "threads": args.threads,
                   **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
