#!/usr/bin/env python
"""Time one VAE training step (784-400-20, ReLU, Bernoulli, Adam), optionally beside PyTorch.

    python benchmarks/bench_train_step.py --batch-size 128 1024 --threads 2
    python benchmarks/bench_train_step.py --compare-torch --seconds 10
    python benchmarks/bench_train_step.py --backend cupy --compare-torch --batch-size 128 1024 8192

One step is what the fit loop does per minibatch: forward (ε drawn),
backward (writing the gradients), Adam update, on a fixed binary batch (data
loading is not timed); from SPLIT_BATCH_MIN rows on, with 2+ threads, the
batch is split into row blocks on threads as train_vae does (``split_batch``
in the output).  For each configuration it prints one JSON line:

    samples_per_second              batch / median step time
    gemm_bound_samples_per_second   batch / time of the step's matrix products alone,
                                    run back to back on the same backend and threads
    gemm_fraction                   samples_per_second / gemm_bound_samples_per_second
    peak_rss_mib                    peak resident memory of this process so far
    torch_samples_per_second,       with --compare-torch: the same model, batch, dtype
    ratio_vs_torch                  and threads in PyTorch, timed in alternation with
                                    minivae (rounds of A, B, A, B, ...) so both see the
                                    same machine state; with --backend cupy PyTorch runs
                                    on the GPU too (CUDA, eager), every step synchronized

Absolute numbers depend on the machine: compare ratios from one run.  Each
line names the OpenBLAS kernel that ran (``blas_kernel``): forcing an older
one with ``OPENBLAS_CORETYPE`` changes the matrix products' speed a lot.

Runs against an older checkout too (``PYTHONPATH=that/checkout``), for
before/after figures.
"""

from __future__ import annotations

import argparse
import inspect
import json
import resource
import statistics
import sys
import time

from common import blas_kernel, machine  # benchmarks/common.py, beside this file

from minivae.backend import get_backend
from minivae.models.vae import VAE
from minivae.optim import Adam

try:               # a tree from before the split-batch step (PYTHONPATH=old checkout)
    from minivae.training.parallel import SplitBatchStep
    from minivae.training.train import SPLIT_BATCH_MIN
except ImportError:  # pragma: no cover
    SplitBatchStep, SPLIT_BATCH_MIN = None, None

D, H, L = 784, 400, 20


def _sync(be):
    if be.name == "cupy":
        be.xp.cuda.get_current_stream().synchronize()


def _time_rounds(step, sync, seconds: float, min_steps: int = 5) -> list:
    """Run ``step`` for about ``seconds``, waiting for the device after each; the step times."""
    times = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(times) < min_steps:
        t0 = time.perf_counter()
        step()
        sync()
        times.append(time.perf_counter() - t0)
    return times


def minivae_parts(be, batch_size: int, threads: int):
    """``(opt, fwd_bwd, split)``: Adam on the benchmark's model and its forward + backward.

    ``fwd_bwd`` computes the gradients for a fixed binary batch as train_vae
    does: split into row blocks on ``threads`` threads where it would
    (``split``), else serially, writing the gradients where the tree can.
    """
    model = VAE(D, (H,), L, "relu", "bernoulli", backend=be)
    opt = Adam(model.params, model.grads, lr=1e-3)
    x = (be.uniform((batch_size, D)) < 0.3).astype(be.dtype)
    split = (SplitBatchStep is not None and be.name == "numpy" and threads >= 2
             and batch_size >= SPLIT_BATCH_MIN)
    splitter = SplitBatchStep(model, threads) if split else None
    if not split and hasattr(opt, "threads"):   # as the trainer gives Adam beside a serial step
        opt.threads = 1
    if hasattr(model, "for_training"):       # the run's settings, once (issue 16's layout)
        model.for_training()
        writes = "new"
    else:                                    # older trees: flags in the signatures, if any
        writes = "accumulate" in inspect.signature(model.backward).parameters

    def fwd_bwd():
        if splitter is not None:
            splitter.step(x)
        elif writes == "new":
            model.forward(x)
            model.backward()
        elif writes:
            model.forward(x, check=False)
            model.backward(accumulate=False)
        else:
            model.zero_grad()
            model.forward(x, check=False)
            model.backward()
    return opt, fwd_bwd, split


def minivae_step(be, batch_size, threads):
    """The step train_vae runs: forward + backward (see :func:`minivae_parts`), then Adam."""
    opt, fwd_bwd, split = minivae_parts(be, batch_size, threads)

    def step():
        fwd_bwd()
        opt.step()
    return step, split


def gemm_step(be, batch_size):
    """Only the matrix products a step needs, on preallocated arrays.

    Forward: x W₁, h W_μ, h W_v, z W₃, h₂ W₄.  Backward: for each Dense layer
    Xᵀ dY, and dY Wᵀ for every layer but the first (its dX is not needed).
    """
    xp, B = be.xp, batch_size
    a = lambda *s: be.standard_normal(s)  # noqa: E731
    x, h, z, h2 = a(B, D), a(B, H), a(B, L), a(B, H)
    W1, Wm, Wv, W3, W4 = a(D, H), a(H, L), a(H, L), a(L, H), a(H, D)
    dout, dh2, dmu, dlv, dh = a(B, D), a(B, H), a(B, L), a(B, L), a(B, H)

    def step():
        x @ W1; h @ Wm; h @ Wv; z @ W3; h2 @ W4                     # forward
        h2.T @ dout; dout @ W4.T                                     # decoder output layer
        z.T @ dh2; dh2 @ W3.T                                        # decoder hidden layer
        h.T @ dmu; dmu @ Wm.T; h.T @ dlv; dlv @ Wv.T                 # the two heads
        x.T @ dh                                                     # encoder layer, no dX
    del xp
    return step


def torch_step(batch_size, dtype, threads, seed=0, device="cpu"):
    """PyTorch's step on the same model (eager), and the function that waits for its device."""
    import torch
    from torch import nn

    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    tdtype = {"float32": torch.float32, "float64": torch.float64}[dtype]
    enc, mu_h, lv_h = nn.Linear(D, H), nn.Linear(H, L), nn.Linear(H, L)
    dec1, dec2 = nn.Linear(L, H), nn.Linear(H, D)
    modules = nn.ModuleList([enc, mu_h, lv_h, dec1, dec2]).to(device=device, dtype=tdtype)
    opt = torch.optim.Adam(modules.parameters(), lr=1e-3)
    x = (torch.rand(batch_size, D, device=device) < 0.3).to(tdtype)

    def step():
        opt.zero_grad(set_to_none=False)
        h = torch.relu(enc(x))
        mu, logvar = mu_h(h), lv_h(h)
        z = mu + torch.exp(0.5 * logvar) * torch.randn_like(mu)
        logits = dec2(torch.relu(dec1(z)))
        recon = nn.functional.binary_cross_entropy_with_logits(logits, x, reduction="sum")
        kl = 0.5 * (logvar.exp() + mu * mu - 1 - logvar).sum()
        ((recon + kl) / batch_size).backward()
        opt.step()
    return step, (torch.cuda.synchronize if device == "cuda" else (lambda: None))


def run(backend_name, dtype, batch_size, threads, seconds, rounds, compare_torch):
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover
        threadpool_limits = None
    limit = threadpool_limits(threads) if (threadpool_limits and backend_name == "numpy") \
        else nullcontext()
    with limit:
        be = get_backend(backend_name, dtype=dtype, seed=0)
        sync = lambda: _sync(be)                                  # noqa: E731
        (ours, split), gemm = minivae_step(be, batch_size, threads), gemm_step(be, batch_size)
        theirs, torch_sync = torch_step(
            batch_size, dtype, threads, device="cuda" if be.name == "cupy" else "cpu") \
            if compare_torch else (None, None)
        for f, s in ((ours, sync), (gemm, sync)) + (((theirs, torch_sync),) if theirs else ()):
            _time_rounds(f, s, min(1.0, seconds / 4))             # warm-up
        t_ours, t_gemm, t_torch = [], [], []
        for _ in range(rounds):                                   # alternate A, B, A, B, ...
            t_ours += _time_rounds(ours, sync, seconds / rounds)
            if theirs:
                t_torch += _time_rounds(theirs, torch_sync, seconds / rounds)
            t_gemm += _time_rounds(gemm, sync, seconds / (2 * rounds))
    med = statistics.median
    row = {"backend": backend_name, "dtype": dtype, "batch_size": batch_size, "threads": threads,
           "blas_kernel": blas_kernel() if backend_name == "numpy" else None, "split_batch": split,
           "step_ms": 1e3 * med(t_ours), "samples_per_second": batch_size / med(t_ours),
           "gemm_ms": 1e3 * med(t_gemm),
           "gemm_bound_samples_per_second": batch_size / med(t_gemm),
           "gemm_fraction": med(t_gemm) / med(t_ours), "steps_timed": len(t_ours),
           "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    if be.name == "cupy":
        row["peak_gpu_pool_mib"] = be.xp.get_default_memory_pool().total_bytes() / 2 ** 20
    if theirs:
        row["torch_samples_per_second"] = batch_size / med(t_torch)
        row["ratio_vs_torch"] = med(t_torch) / med(t_ours)
    return row


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", choices=("numpy", "cupy"), default="numpy")
    p.add_argument("--dtype", choices=("float32", "float64"), default="float32")
    p.add_argument("--batch-size", type=int, nargs="+", default=[128, 1024])
    p.add_argument("--threads", type=int, nargs="+", default=[2])
    p.add_argument("--seconds", type=float, default=6.0, help="timed seconds per configuration and side")
    p.add_argument("--rounds", type=int, default=6, help="alternations between minivae and torch")
    p.add_argument("--compare-torch", action="store_true")
    p.add_argument("--machine", action="store_true", help="print a JSON line describing the machine first")
    args = p.parse_args(argv)
    if min(args.batch_size) < 1 or min(args.threads) < 1 or args.seconds <= 0 or args.rounds < 1:
        p.error("batch sizes, threads and rounds must be positive, seconds > 0")
    torch = None
    if args.compare_torch:
        try:
            import torch
        except ImportError:
            p.error("--compare-torch needs PyTorch (pip install torch)")
    if args.machine:
        info = machine()
        if torch is not None:
            info["torch"] = {"version": torch.__version__,
                             "mkl": torch.backends.mkl.is_available(),
                             "mkldnn": torch.backends.mkldnn.is_available()}
        print(json.dumps({"machine": info}), flush=True)
    for threads in args.threads:
        for b in args.batch_size:
            print(json.dumps(run(args.backend, args.dtype, b, threads, args.seconds, args.rounds,
                                 args.compare_torch)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
