#!/usr/bin/env python
"""Where the time of one VAE training step goes (784-400-20, ReLU, Bernoulli, Adam).

    python benchmarks/profile_step.py --batch-size 128 1024 --threads 2

Runs the step that training runs (on NumPy with 2+ threads and a batch of at
least SPLIT_BATCH_MIN rows, the split-batch step: row blocks on threads), and
times its parts *inside* that step: each part's method is wrapped with a
timer for the measured steps only, so the parts see the caches, threads and
memory traffic of real training.  Prints one JSON line per batch size, in
milliseconds per step:

    step              the whole step (median wall time)
    forward_backward  per row block, forward + backward (mean over the threads)
      dense_forward     Dense layers' forward: x W + b        } inside forward_backward,
      dense_backward    Dense layers' backward: Xᵀ dY, Σ dY, dY Wᵀ } each per row block
      activations       ReLU forward + backward                }
      loss_forward      the Bernoulli log-likelihood           }
      loss_backward     its gradient                           }
      vae_rest          forward_backward minus the five parts above: the
                        reparameterization, the KL and its gradient, the head
                        fan-out, Python between the calls
    split_overhead    the split step's wall time minus forward_backward: drawing
                      ε, starting and joining the threads, adding the blocks'
                      gradients (0 for a serial step)
    adam              the optimizer step
    gemm              the step's matrix products alone, on the whole batch with
                      ``threads`` BLAS threads (as bench_train_step.py)
    gemm_block        the matrix products of one row block alone, on one BLAS
                      thread: what each thread of the split step computes, so
                      the least time a split step can take (equal to gemm for
                      a serial step)
    other             step − gemm: everything that is not a matrix product
    page_faults_per_step  minor page faults per step: large temporaries that the
                      C library maps fresh from the OS in every step.  glibc
                      does so until a block larger than they are has been
                      freed (that raises its thresholds; in a process that has
                      run PyTorch, one has), so a step that makes many large
                      temporaries runs slower in a plain training process
                      than beside PyTorch in bench_train_step.py.

Uses only classes and methods that older versions of minivae have too (set
PYTHONPATH to a checkout to profile it; without a split-batch step it
profiles the serial step).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import sys
import threading
import time
from collections import defaultdict
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_train_step import gemm_step, minivae_parts  # noqa: E402
from common import blas_kernel  # noqa: E402

from minivae import layers, likelihoods  # noqa: E402
from minivae.backend import get_backend  # noqa: E402
from minivae.models.vae import VAE  # noqa: E402

PARTS = {"dense_forward": (layers.Dense, "forward"), "dense_backward": (layers.Dense, "backward"),
         "activations": [(layers.ReLU, "forward"), (layers.ReLU, "backward")],
         "loss_forward": (likelihoods.Bernoulli, "log_prob"),
         "loss_backward": (likelihoods.Bernoulli, "backward"),
         "forward_backward": [(VAE, "forward"), (VAE, "backward")]}


@contextmanager
def timed_parts(totals: dict):
    """Wrap the methods in PARTS so that each call adds its wall time to totals[part]."""
    lock, saved = threading.Lock(), []

    def wrap(cls, name, part):
        original = cls.__dict__[name]

        def timed(*args, **kwargs):
            t0 = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                with lock:
                    totals[part] += time.perf_counter() - t0
        saved.append((cls, name, original))
        setattr(cls, name, timed)

    for part, where in PARTS.items():
        for cls, name in (where if isinstance(where, list) else [where]):
            wrap(cls, name, part)
    try:
        yield
    finally:
        for cls, name, original in saved:
            setattr(cls, name, original)


def _median_time(fn, repeats: int) -> float:
    """The median wall time of ``fn()`` in milliseconds, after 5 calls to warm up."""
    for _ in range(5):
        fn()
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return 1e3 * statistics.median(times)


def profile(batch_size: int, threads: int, steps: int) -> dict:
    be = get_backend("numpy", seed=0)
    opt, fwd_bwd, split = minivae_parts(be, batch_size, threads)
    blocks = threads if split else 1

    def step():
        fwd_bwd()
        opt.step()

    for _ in range(20):                                         # warm-up
        step()
    walls, faults = [], resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    for _ in range(steps):                                      # the whole step, unwrapped
        t0 = time.perf_counter()
        step()
        walls.append(time.perf_counter() - t0)
    faults = (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps
    totals, split_wall, adam_wall = defaultdict(float), 0.0, 0.0
    with timed_parts(totals):
        for _ in range(steps):
            t0 = time.perf_counter()
            fwd_bwd()
            t1 = time.perf_counter()
            opt.step()
            split_wall += t1 - t0
            adam_wall += time.perf_counter() - t1
    per_block = {k: 1e3 * v / steps / blocks for k, v in totals.items()}
    # one row block (the largest) on one BLAS thread first: after the whole batch's products
    # on BLAS's threads, those would still be spinning on the cores for a while
    if split:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(1, user_api="blas"):
            block_times = _median_time(gemm_step(be, -(-batch_size // blocks)), steps)
    gemm_times = _median_time(gemm_step(be, batch_size), steps)
    if not split:
        block_times = gemm_times
    row = {"batch_size": batch_size, "threads": threads, "split_batch": split,
           "step": 1e3 * statistics.median(walls),
           "forward_backward": per_block["forward_backward"]}
    for part in ("dense_forward", "dense_backward", "activations", "loss_forward", "loss_backward"):
        row[part] = per_block[part]
    row["vae_rest"] = row["forward_backward"] - sum(row[p] for p in (
        "dense_forward", "dense_backward", "activations", "loss_forward", "loss_backward"))
    row["split_overhead"] = 1e3 * split_wall / steps - row["forward_backward"]
    row["adam"] = 1e3 * adam_wall / steps
    row["gemm"] = gemm_times
    row["gemm_block"] = block_times
    row["other"] = row["step"] - row["gemm"]
    row["page_faults_per_step"] = faults
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--steps", type=int, default=300, help="measured steps per batch size")
    p.add_argument("--label", default="", help="a name for this tree, copied into each line")
    args = p.parse_args(argv)
    if min(args.batch_size) < 1 or args.threads < 1 or args.steps < 1:
        p.error("batch sizes, threads and steps must be positive")
    from threadpoolctl import threadpool_limits

    kernel = blas_kernel()
    with threadpool_limits(args.threads):
        for b in args.batch_size:
            row = profile(b, args.threads, args.steps)
            row = {"label": args.label, "blas_kernel": kernel,
                   **{k: (round(v, 3) if isinstance(v, float) else v) for k, v in row.items()}}
            print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
