#!/usr/bin/env python
"""How wide must the code be?  The autoencoder's test MSE for several bottleneck sizes.

    OPENBLAS_NUM_THREADS=1 python benchmarks/bottleneck.py       # a table
    python benchmarks/bottleneck.py --json                       # one JSON line per bottleneck
    python benchmarks/bottleneck.py --save benchmarks/results    # also bottleneck.json and .md

Trains the plain autoencoder 784-256-k-256-784 (ReLU, sigmoid output, Adam
1e-3, batch 128, the same number of epochs and seed) for each code size k in
``--bottlenecks`` (default 2, 8, 32, 64) on the embedded digits, and scores
each on the 500 clean test digits:

    test_mse                 MSE per pixel: squared error summed over 784 pixels / 784
    test_sse_per_example     the training cost's unit: squared error summed over the pixels
    train_sse_per_example    the cost on the training digits in the last epoch

Training logs go to stderr, so with ``--json`` stdout holds only the JSON lines.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from common import machine, write_jsonl  # benchmarks/common.py, beside this file
from denoising import SETTINGS, train  # benchmarks/denoising.py, beside this file

from minivae.data import load_dataset


def run(bottlenecks, epochs: int, seed: int):
    """Yield one result dict per bottleneck size."""
    data = load_dataset(SETTINGS["dataset"])
    for k in bottlenecks:
        model, metrics, seconds = train(data, epochs, seed, bottleneck=k)
        yield {"bottleneck": k, "test_mse": metrics["test"]["mse_per_pixel"],
               "test_sse_per_example": metrics["test"]["sse_per_example"],
               "train_sse_per_example": metrics["history"][-1]["train_sse_per_example"],
               "mse_unit": "per pixel", "parameters": model.num_params(), "epochs": epochs,
               "seed": seed, "n_test": metrics["test"]["n_examples"],
               "seconds": round(seconds, 2)}


def table(rows) -> str:
    """The rows as a Markdown table."""
    head = ("| bottleneck k | test MSE per pixel | test squared error per example | "
            "train squared error per example | parameters |\n|---|---|---|---|---|\n")
    return head + "\n".join(
        f"| {r['bottleneck']} | {r['test_mse']:.4f} | {r['test_sse_per_example']:.2f} | "
        f"{r['train_sse_per_example']:.2f} | {r['parameters']:,} |" for r in rows) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--bottlenecks", default="2,8,32,64",
                   help="comma-separated code sizes (default: 2,8,32,64)")
    p.add_argument("--epochs", type=int, default=50, help="per model (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="weights and shuffling (default: 0)")
    p.add_argument("--json", action="store_true", help="one JSON line per bottleneck")
    p.add_argument("--save", metavar="DIR", default=None,
                   help="also write DIR/bottleneck.json (a settings record, then the JSON "
                        "lines) and DIR/bottleneck.md")
    args = p.parse_args(argv)
    try:
        bottlenecks = [int(t) for t in args.bottlenecks.split(",")]
    except ValueError:
        p.error("--bottlenecks must be comma-separated positive integers, "
                f"got {args.bottlenecks!r}")
    if min(bottlenecks) < 1 or args.epochs < 1:
        p.error("bottleneck sizes and --epochs must be positive integers")
    t0 = time.perf_counter()
    rows = []
    for row in run(bottlenecks, args.epochs, args.seed):
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    total = time.perf_counter() - t0
    falls = all(a["test_mse"] > b["test_mse"] for a, b in zip(rows, rows[1:]))
    if not args.json:
        print(f"Plain autoencoder 784-{SETTINGS['hidden'][0]}-k-{SETTINGS['hidden'][0]}-784 on "
              f"the {rows[0]['n_test']} clean test digits; {args.epochs} epochs per model, seed "
              f"{args.seed}, {total:.0f} s in all\n")
        print(table(rows))
        print(f"test MSE falls as k grows: {falls}")
    if args.save:
        record = {"settings": {**SETTINGS, "bottleneck": bottlenecks, "epochs": args.epochs,
                               "seed": args.seed},
                  "machine": machine(), "total_seconds": round(total, 1),
                  "test_mse_falls_as_bottleneck_grows": falls,
                  "command": "python benchmarks/bottleneck.py " + " ".join(sys.argv[1:])}
        write_jsonl(os.path.join(args.save, "bottleneck.json"), [record, *rows])
        threads = record["machine"].get("OPENBLAS_NUM_THREADS") or "unset (OpenBLAS default)"
        with open(os.path.join(args.save, "bottleneck.md"), "w") as f:
            f.write("# The autoencoder's test error against the size of its code\n\n"
                    "Written by `python benchmarks/bottleneck.py --save benchmarks/results`. "
                    f"Plain autoencoder 784-{SETTINGS['hidden'][0]}-k-{SETTINGS['hidden'][0]}-784, "
                    "ReLU, linear code, sigmoid output, Adam 1e-3, batch "
                    f"{SETTINGS['batch_size']}, {args.epochs} epochs, seed {args.seed}, float32 "
                    "NumPy, trained on the 4,500 embedded training digits and scored on the 500 "
                    "clean test digits. MSE per pixel = squared error summed over the 784 "
                    "pixels / 784, averaged over the digits.\n\n")
            f.write(table(rows))
            f.write(f"\nThe test MSE falls as k grows: {'yes' if falls else 'no'}. One run on "
                    f"{record['machine'].get('cpu')} ({record['machine'].get('logical_cpus')} "
                    f"logical CPUs), OPENBLAS_NUM_THREADS={threads}: {total:.0f} s in all. The "
                    "raw numbers, with the machine record, are in `bottleneck.json`.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
