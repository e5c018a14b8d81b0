#!/usr/bin/env python
"""One peer's VAE training step, timed in a process of its own: one JSON line.

    python benchmarks/peer_step.py --peer minivae --batch-size 128 --seconds 5
    python benchmarks/peer_step.py --peer torch --batch-size 1024 --hidden 1000

The peers run the same step: 784-H-20 (H = --hidden), ReLU, Bernoulli likelihood on a fixed
binary batch, one ε draw per example, Adam (lr 1e-3), float32, ``--threads`` threads:
minivae as ``train_vae`` runs it (:func:`bench_train_step.minivae_step`), PyTorch eager
(:func:`bench_train_step.torch_step`), JAX with the whole step (loss, gradient, Adam) under
one ``jax.jit``.  :mod:`compare_peers` runs them in alternating rounds, each in a process of
its own, as a user compares programs.  The line holds the median step time, samples per
second and, for minivae, the OpenBLAS kernel, the time of the step's matrix products
alone (the GEMM bound) and two least times for minivae's step:

* the floor: the matrix products of one row block on one BLAS thread (what each thread of
  the split step computes; the whole batch's for a serial step) plus Adam's step alone;
* the bound: one row block's whole forward + backward alone (its ε drawn beforehand, the
  other core idle) plus Adam's step alone plus the step's hand-offs to pool threads (one
  for the split step's block, one for Adam's second thread), each timed as the round trip
  of a no-op sent back to back.  That is the step with its blocks side by side and neither
  slowing the other, without drawing ε or adding the blocks' gradients, and its hand-offs at
  their quickest: a step of this design, its blocks and then Adam, cannot be faster.
  (Absent for a tree older than the split step's protocol.)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import bench_train_step as bts
from common import blas_kernel


def _time(step, sync, seconds: float, min_steps: int = 10) -> float:
    """The median time of ``step`` (then ``sync``) over about ``seconds``, after a warm-up."""
    for _ in range(3):
        step()
    sync()
    times, deadline = [], time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < min_steps:
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def block_step(be, rows: int, batch_size: int):
    """One row block's forward + backward alone, as a thread of the split step computes it.

    None for a tree older than the split step's protocol (no ``for_training``).
    """
    from minivae.models.vae import VAE

    model = VAE(bts.D, (bts.H,), bts.L, "relu", "bernoulli", backend=be)
    if not hasattr(model, "for_training"):
        return None
    model.for_training()
    model.batch_total = batch_size                 # the block's share of the batch mean
    x = (be.uniform((rows, bts.D)) < 0.3).astype(be.dtype)
    eps = be.standard_normal((rows, bts.L))

    def step():
        model.forward(x, eps=eps)
        model.backward()
    return step


def handoff_time(seconds: float) -> float:
    """One round trip to an idle pool thread: a no-op handed over and its result waited for."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        return _time(lambda: pool.submit(int).result(), lambda: None, seconds)


def jax_step(batch_size: int, hidden: int, seed: int = 0):
    """The step under one jax.jit: ELBO loss, its gradient, Adam; returns (step, sync)."""
    import jax
    import jax.numpy as jnp

    D, L = bts.D, bts.L
    key = jax.random.PRNGKey(seed)
    shapes = {"enc": (D, hidden), "mu": (hidden, L), "lv": (hidden, L), "dec1": (L, hidden),
              "dec2": (hidden, D)}
    params = {}
    for name, (n_in, n_out) in shapes.items():
        key, k1, k2 = jax.random.split(key, 3)
        bound = 1.0 / n_in ** 0.5
        params[name] = (jax.random.uniform(k1, (n_in, n_out), jnp.float32, -bound, bound),
                        jax.random.uniform(k2, (n_out,), jnp.float32, -bound, bound))
    key, kx = jax.random.split(key)
    x = (jax.random.uniform(kx, (batch_size, D)) < 0.3).astype(jnp.float32)

    def loss(p, eps):
        h = jax.nn.relu(x @ p["enc"][0] + p["enc"][1])
        mu, logvar = h @ p["mu"][0] + p["mu"][1], h @ p["lv"][0] + p["lv"][1]
        z = mu + jnp.exp(0.5 * logvar) * eps
        logits = jax.nn.relu(z @ p["dec1"][0] + p["dec1"][1]) @ p["dec2"][0] + p["dec2"][1]
        recon = (jax.nn.softplus(logits) - x * logits).sum()
        kl = 0.5 * (jnp.exp(logvar) + mu * mu - 1 - logvar).sum()
        return (recon + kl) / batch_size

    @jax.jit
    def update(state, key):
        p, m, v, t = state
        key, k = jax.random.split(key)
        g = jax.grad(loss)(p, jax.random.normal(k, (batch_size, L)))
        t = t + 1
        m = jax.tree_util.tree_map(lambda m, g: 0.9 * m + 0.1 * g, m, g)
        v = jax.tree_util.tree_map(lambda v, g: 0.999 * v + 0.001 * g * g, v, g)
        c1, c2 = 1 - 0.9 ** t, 1 - 0.999 ** t
        p = jax.tree_util.tree_map(lambda p, m, v: p - 1e-3 * (m / c1) / (jnp.sqrt(v / c2) + 1e-8),
                                   p, m, v)
        return (p, m, v, t), key

    zeros = jax.tree_util.tree_map(jnp.zeros_like, params)
    box = {"state": (params, zeros, zeros, jnp.float32(0)), "key": key}

    def step():
        box["state"], box["key"] = update(box["state"], box["key"])

    return step, lambda: jax.block_until_ready(box["state"])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--peer", choices=("minivae", "torch", "jax"), required=True)
    p.add_argument("--batch-size", type=int, default=128)
    p.add_argument("--hidden", type=int, default=400)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args(argv)
    bts.H = args.hidden                    # the model's hidden width, for every peer's step
    row = {"peer": args.peer, "batch_size": args.batch_size, "hidden": args.hidden,
           "threads": args.threads}
    if args.peer == "minivae":
        from threadpoolctl import threadpool_limits

        from minivae.backend import get_backend
        with threadpool_limits(args.threads):
            be = get_backend("numpy", dtype="float32", seed=0)
            opt, fwd_bwd, split = bts.minivae_parts(be, args.batch_size, args.threads)

            def step():                            # as bts.minivae_step
                fwd_bwd()
                opt.step()
            t = _time(step, lambda: None, args.seconds)
            t_adam = _time(opt.step, lambda: None, args.seconds / 6)
            # one row block on one BLAS thread before the whole batch on BLAS's threads,
            # which would still be spinning on the cores for a while after
            block = -(-args.batch_size // args.threads) if split else args.batch_size
            with threadpool_limits(1 if split else args.threads, user_api="blas"):
                t_block = _time(bts.gemm_step(be, block), lambda: None, args.seconds / 6)
                alone = block_step(be, block, args.batch_size)
                t_alone = (_time(alone, lambda: None, args.seconds / 6) if alone is not None
                           else None)
            t_gemm = _time(bts.gemm_step(be, args.batch_size), lambda: None, args.seconds / 3)
            # the split step hands a block to its pool thread, Adam half its arrays to its own
            adam_pool = getattr(getattr(opt, "_workspace", None), "pool", None)
            handoffs = int(split) + int(adam_pool is not None)
            t_handoff = handoff_time(args.seconds / 12)
        row.update(blas_kernel=blas_kernel(), split_batch=split, gemm_ms=1e3 * t_gemm,
                   gemm_bound_samples_per_second=args.batch_size / t_gemm,
                   gemm_fraction=t_gemm / t, gemm_block_ms=1e3 * t_block,
                   adam_ms=1e3 * t_adam, floor_ms=1e3 * (t_block + t_adam),
                   floor_samples_per_second=args.batch_size / (t_block + t_adam))
        if t_alone is not None:
            t_bound = t_alone + t_adam + handoffs * t_handoff
            row.update(block_alone_ms=1e3 * t_alone, handoff_ms=1e3 * t_handoff,
                       handoffs=handoffs, bound_ms=1e3 * t_bound,
                       bound_samples_per_second=args.batch_size / t_bound)
    elif args.peer == "torch":
        import torch
        step, sync = bts.torch_step(args.batch_size, "float32", args.threads)
        t = _time(step, sync, args.seconds)
        row.update(version=torch.__version__, mkl=torch.backends.mkl.is_available())
    else:
        import jax
        step, sync = jax_step(args.batch_size, args.hidden)
        t = _time(step, sync, args.seconds)
        row.update(version=jax.__version__)
    row.update(step_ms=1e3 * t, samples_per_second=args.batch_size / t)
    print(json.dumps(row), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
