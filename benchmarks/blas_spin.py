#!/usr/bin/env python
"""What BLAS's own threads cost the split-batch step when they wake between steps.

    python benchmarks/blas_spin.py --epochs 30 --rounds 6 --json benchmarks/results/blas_spin.json

OpenBLAS's worker threads keep spinning for a while after every call that used them (about
0.1 s by default; ``OPENBLAS_THREAD_TIMEOUT`` sets it).  The split step runs its row blocks on
as many threads as there are cores, each with one BLAS thread; a BLAS call on BLAS's own
threads between two steps (the epoch's test −ELBO, say) leaves a thread spinning on a core that
a block needs.  Two measurements, each variant in a process of its own, the variants
alternating round by round:

    steps       the time of 35 split steps (batch 128, Adam) right after one forward pass of
                500 digits: none (``after_nothing``), on BLAS's 2 threads (``after_2_threads``),
                and the same inside :meth:`SplitBatchStep.one_blas_thread`
                (``after_held``); the median over ``--repeats`` in each process
    fit         the default run (``train_vae``: 784-400-20 on the embedded digits, batch
                128, 2 threads) for ``--epochs`` epochs, with BLAS held at one thread
                over the epochs as the trainer does (``held``) and with the hold
                switched off (``not_held``): the sum of the epochs' seconds, and the
                last epoch's test −ELBO (the same number both ways)
    adam        the autoencoder's default run (``train_autoencoder``, a serial step with
                BLAS on its own threads) for ``--epochs`` epochs, with Adam on one thread
                as the trainer gives it there (``adam_1_thread``) and on two
                (``adam_2_threads``, the one a split step gets): the sum of the epochs'
                seconds and the last test squared error (the same both ways)

Prints one JSON line per process and a summary with the per-round ratios; ``--json`` writes
them all with the machine.  The processes run in the environment this one is given (each line
names the OpenBLAS kernel that ran; ``benchmarks/results/blas_spin.json`` was measured with the
workplace's ``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` removed, as ``compare_peers.py`` does).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import blas_kernel, machine  # noqa: E402

STEP_VARIANTS = ("after_nothing", "after_2_threads", "after_held")
FIT_VARIANTS = ("held", "not_held")
ADAM_VARIANTS = ("adam_1_thread", "adam_2_threads")


def steps_after(variant: str, repeats: int, n_steps: int = 35) -> float:
    """Median milliseconds of ``n_steps`` split steps right after the variant's BLAS call."""
    import numpy as np
    from threadpoolctl import threadpool_limits

    from minivae.backend import get_backend
    from minivae.models.vae import VAE
    from minivae.optim import Adam
    from minivae.training.parallel import SplitBatchStep

    be = get_backend("numpy", seed=0)
    model = VAE(784, (400,), 20, backend=be)
    opt = Adam(model.params, model.grads, lr=1e-5)
    split = SplitBatchStep(model, 2)
    x = (be.uniform((128, 784)) < 0.13).astype(np.float32)
    x_eval = (be.uniform((500, 784)) < 0.13).astype(np.float32)
    hold = split.one_blas_thread if variant == "after_held" else contextlib.nullcontext
    times = []
    with threadpool_limits(2, user_api="blas"):
        for r in range(repeats + 1):
            for _ in range(35):                     # steady state first
                split.step(x)
                opt.step()
            if variant != "after_nothing":
                with hold():
                    model.forward(x_eval)
            t0 = time.perf_counter()
            for _ in range(n_steps):
                split.step(x)
                opt.step()
            if r:                                   # the first repeat warms up
                times.append(1e3 * (time.perf_counter() - t0))
    return statistics.median(times)


def fit_time(variant: str, epochs: int) -> dict:
    """Train the default run for ``epochs`` epochs: the epochs' seconds, the last test −ELBO."""
    from minivae.training import parallel
    from minivae.training.train import VAEConfig, train_vae

    held = parallel.SplitBatchStep.one_blas_thread
    if variant == "not_held":                # the trainer as it was before the hold
        parallel.SplitBatchStep.one_blas_thread = lambda self: contextlib.nullcontext()
    try:
        metrics = train_vae(VAEConfig(epochs=epochs, progress=False, out=None))
    finally:
        parallel.SplitBatchStep.one_blas_thread = held
    if metrics["config"]["threads"] != 2:
        raise SystemExit("the default run did not split its batches (fewer than 2 cores?)")
    return {"fit_seconds": sum(e["seconds"] for e in metrics["history"]),
            "last_test_neg_elbo": metrics["history"][-1]["test_neg_elbo"]}


def ae_fit_time(variant: str, epochs: int) -> dict:
    """Train the autoencoder's default run: the epochs' seconds, the last test squared error."""
    from minivae.training import resources, train

    given = train.optimizer_for
    if variant == "adam_2_threads":           # Adam as beside a split step: its 2 threads
        train.optimizer_for = lambda config, model, split=False: \
            resources.optimizer_for(config, model, split=True)
    try:
        metrics = train.train_autoencoder(train.AEConfig(epochs=epochs, progress=False,
                                                         out=None))
    finally:
        train.optimizer_for = given
    return {"fit_seconds": sum(e["seconds"] for e in metrics["history"]),
            "last_test_sse": metrics["history"][-1]["test_sse_per_example"]}


def _child(args) -> int:
    if args.variant in STEP_VARIANTS:
        row = {"kind": "steps", "variant": args.variant,
               "ms_35_steps": steps_after(args.variant, args.repeats)}
    elif args.variant in FIT_VARIANTS:
        row = {"kind": "fit", "variant": args.variant, "epochs": args.epochs,
               **fit_time(args.variant, args.epochs)}
    else:
        row = {"kind": "adam", "variant": args.variant, "epochs": args.epochs,
               **ae_fit_time(args.variant, args.epochs)}
    print(json.dumps({**row, "blas_kernel": blas_kernel()}), flush=True)
    return 0


def _run(variant: str, args) -> dict:
    cmd = [sys.executable, __file__, "--variant", variant, "--epochs", str(args.epochs),
           "--repeats", str(args.repeats)]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode:
        raise SystemExit(f"{variant} failed:\n{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--epochs", type=int, default=30, help="epochs of the default run per round")
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--repeats", type=int, default=9,
                   help="measurements of 35 steps per process, after one to warm up")
    p.add_argument("--only", choices=("steps", "fit", "adam"), help="run one measurement")
    p.add_argument("--json", help="write every line and the summary here, with the machine")
    p.add_argument("--variant", choices=STEP_VARIANTS + FIT_VARIANTS + ADAM_VARIANTS,
                   help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if min(args.epochs, args.rounds, args.repeats) < 1:
        p.error("--epochs, --rounds and --repeats must be positive")
    if args.variant:
        return _child(args)
    variants = {"steps": STEP_VARIANTS, "fit": FIT_VARIANTS, "adam": ADAM_VARIANTS}
    kinds = [args.only] if args.only else ["steps", "fit", "adam"]
    rows = []
    for r in range(args.rounds):
        for kind in kinds:
            for v in variants[kind]:
                row = {"round": r, **_run(v, args)}
                print(json.dumps(row), flush=True)
                rows.append(row)
    summary = {}
    for kind, base, key in (("steps", "after_nothing", "ms_35_steps"),
                            ("fit", "held", "fit_seconds"),
                            ("adam", "adam_1_thread", "fit_seconds")):
        if kind not in kinds:
            continue
        per = {v: [row[key] for row in rows if row["variant"] == v] for v in variants[kind]}
        for v, values in per.items():
            ratios = [a / b for a, b in zip(values, per[base])]
            summary[f"{kind}.{v}"] = {"median": statistics.median(values),
                                      f"ratio_to_{base}": statistics.median(ratios),
                                      "ratio_range": [min(ratios), max(ratios)]}
    print(json.dumps({"summary": summary}), flush=True)
    if args.json:
        from compare_peers import commit_of
        Path(args.json).write_text(json.dumps({"machine": machine(),
                                               "commit": commit_of(Path(__file__).parent),
                                               "rounds": args.rounds,
                                               "epochs": args.epochs, "runs": rows,
                                               "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
