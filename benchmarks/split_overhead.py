#!/usr/bin/env python
"""What the split-batch step pays for running its two halves at once.

    python benchmarks/split_overhead.py --batch-size 128 --steps 600

The split step (``minivae/training/parallel.py``) runs forward + backward of each half batch on
its own thread, with one BLAS thread each, and waits for both every step.  This measures, in
one process, with every variant alternating step by step (so that all see the same machine
state), the median milliseconds of:

    one_half_alone      one half's forward + backward, the other thread idle
    both_halves_synced  both halves, handed to a pool thread and the calling thread and
                        waited for, as the split step does every step
    half_inside_synced  in that step, each half's own time from its start to its end (the
                        median over both threads): above one_half_alone where the halves,
                        running in step with each other, slow each other down
    start_lag           in that step, from the hand-over to the pool thread's start
    end_wait            in that step, from the later half's end to the caller going on
    both_free_running   each of two threads stepping its own half in a loop with no waiting
                        for the other (the median per step of either thread): what the halves
                        cost side by side without the per-step meeting point (in turns of 20
                        steps with the variants above, so that all see the same machine state)
    handoff_hot         a no-op handed to a pool thread and its result waited for, right after
                        the previous one
    handoff_after_idle  the same after the pool thread has been idle for a millisecond (its
                        processor may have gone to sleep)

and prints them as one JSON line with the machine's BLAS kernel.  ``both_halves_synced −
one_half_alone`` is what the per-step meeting costs; ``start_lag``, ``end_wait`` and
``half_inside_synced`` say how much of that is handing over, how much waiting, and how much the
halves slowing each other down while they run side by side in step.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import blas_kernel  # noqa: E402

from minivae.backend import get_backend  # noqa: E402
from minivae.models.vae import VAE  # noqa: E402


def _halves(batch_size: int):
    """Two VAEs (the same weights) and their half batches, set up as the split step's blocks."""
    be = get_backend("numpy", dtype="float32", seed=0)
    first = VAE(backend=be).for_training()
    second = VAE(backend=get_backend("numpy", dtype="float32", seed=0)).for_training()
    half = batch_size // 2
    rng = np.random.default_rng(0)
    blocks = []
    for model in (first, second):
        model.batch_total = batch_size
        x = (rng.random((half, 784)) < 0.3).astype(np.float32)
        eps = rng.standard_normal((half, 20)).astype(np.float32)
        blocks.append((model, x, eps))
    return blocks


def _run(block) -> None:
    model, x, eps = block
    model.forward(x, eps=eps)
    model.backward()


def _timed(block) -> tuple:
    start = time.perf_counter()
    _run(block)
    return start, time.perf_counter()


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--steps", type=int, default=600)
    args = p.parse_args(argv)
    if args.batch_size < 2 or args.steps < 1:
        p.error(f"--batch-size must be at least 2 (two halves) and --steps at least 1, got "
                f"{args.batch_size} and {args.steps}")
    from threadpoolctl import threadpool_limits

    a, b = _halves(args.batch_size)
    pool = ThreadPoolExecutor(1)
    idle = np.random.default_rng(1).random(300_000)

    inside = {"half_inside_synced": [], "start_lag": [], "end_wait": []}

    def synced():
        t0 = time.perf_counter()
        other = pool.submit(_timed, b)
        mine = _timed(a)
        theirs = other.result()
        t1 = time.perf_counter()
        inside["half_inside_synced"] += [mine[1] - mine[0], theirs[1] - theirs[0]]
        inside["start_lag"].append(theirs[0] - t0)
        inside["end_wait"].append(t1 - max(mine[1], theirs[1]))

    def handoff_after_idle():
        t_idle = time.perf_counter() + 1e-3
        while time.perf_counter() < t_idle:    # keep this thread busy, the pool thread idle
            np.sqrt(idle)
        t0 = time.perf_counter()
        pool.submit(int).result()
        return time.perf_counter() - t0

    variants = {"one_half_alone": lambda: _run(a), "both_halves_synced": synced,
                "handoff_hot": lambda: pool.submit(int).result()}
    times = {k: [] for k in [*variants, "handoff_after_idle", "both_free_running"]}
    with threadpool_limits(1, user_api="blas"):
        for _ in range(20):
            for f in variants.values():
                f()
        for v in inside.values():
            v.clear()
        def loop(block, steps, out):
            for _ in range(steps):
                t0 = time.perf_counter()
                _run(block)
                out.append(time.perf_counter() - t0)

        chunk = 20                               # free-running in turns with the rest
        for start in range(0, args.steps, chunk):
            steps = min(chunk, args.steps - start)
            for _ in range(steps):
                for k, f in variants.items():
                    t0 = time.perf_counter()
                    f()
                    times[k].append(time.perf_counter() - t0)
                times["handoff_after_idle"].append(handoff_after_idle())
            threads = [threading.Thread(target=loop,
                                        args=(blk, steps, times["both_free_running"]))
                       for blk in (a, b)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
    row = {"batch_size": args.batch_size, "blas_kernel": blas_kernel(), "steps": args.steps,
           "units": "ms, median"}
    row.update({k: round(1e3 * statistics.median(v), 4) for k, v in {**times, **inside}.items()})
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
