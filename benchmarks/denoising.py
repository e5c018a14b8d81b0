#!/usr/bin/env python
"""Does denoising pay?  A plain autoencoder and denoising ones, same architecture and budget.

    OPENBLAS_NUM_THREADS=1 python benchmarks/denoising.py        # a table
    python benchmarks/denoising.py --json                        # one JSON line per corruption
    python benchmarks/denoising.py --save benchmarks/results     # also denoising.json and .md

On the embedded digits (4,500 training, 500 test) it trains

* one plain autoencoder on the clean digits, and
* for each corruption χ at a moderate level (Gaussian σ = 0.3 clipped to
  [0, 1], masking ν = 0.3, salt-and-pepper ν = 0.2) a denoising autoencoder
  that sees a fresh x̃ ~ χ(x̃|x) in every batch,

all with the same architecture (784-256-64-256-784, ReLU, sigmoid output),
optimizer (Adam, 1e-3), batch size (128), number of epochs and seed.  The 500
test digits are then corrupted once per χ with a fixed seed, and *both* models
reconstruct those same x̃; each is scored against the clean digits.  Columns:

    ae_mse, dae_mse          MSE per pixel of f(g(x̃)) against the clean x
    input_mse                MSE per pixel of x̃ itself (what copying the input scores)
    ae_clean_mse, dae_clean_mse   the same models on the clean test digits
    *_sse_per_example        the training cost's unit: squared error summed over 784 pixels

Training logs go to stderr, so with ``--json`` stdout holds only the JSON lines.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import time

import numpy as np

from common import machine, write_jsonl  # benchmarks/common.py, beside this file

from minivae.corruption import DEFAULT_LEVELS, corrupt_fixed, make_corruption
from minivae.data import load_dataset
from minivae.models.autoencoder import evaluate_reconstruction
from minivae.numerics import FIXED_SEED as CORRUPTED_TEST_SEED
from minivae.training.train import AEConfig, train_autoencoder

SETTINGS = {"dataset": "mnist5k", "hidden": [256], "bottleneck": 64, "activation": "relu",
            "output": "sigmoid", "optimizer": "adam", "lr": 1e-3, "batch_size": 128,
            "dtype": "float32", "backend": "numpy"}


def train(data, epochs: int, seed: int, **kw):
    """One run of :func:`train_autoencoder` with the shared settings; logs to stderr."""
    settings = {**SETTINGS, "hidden": tuple(SETTINGS["hidden"]), **kw}
    config = AEConfig(**settings, epochs=epochs, seed=seed, out=None, progress=False)
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(sys.stderr):
        metrics, model = train_autoencoder(config, dataset=data, return_model=True)
    return model, metrics, time.perf_counter() - t0


def run(epochs: int, seed: int):
    """Yield one result dict per corruption (the plain autoencoder is trained first, once)."""
    data = load_dataset(SETTINGS["dataset"])
    ae, ae_metrics, ae_seconds = train(data, epochs, seed)
    for name, level in DEFAULT_LEVELS.items():
        corruption = make_corruption(name, level)
        dae, _, dae_seconds = train(data, epochs, seed, corruption=name, noise_level=level)
        x_tilde = corrupt_fixed(corruption, data.x_test, seed=CORRUPTED_TEST_SEED)
        on_ae = evaluate_reconstruction(ae, data.x_test, x_input=x_tilde)
        on_dae = evaluate_reconstruction(dae, data.x_test, x_input=x_tilde)
        yield {"corruption": name, "noise_level": level, **(
                   {"clip": corruption.clip} if name == "gaussian" else {}),
               "ae_mse": on_ae["mse_per_pixel"], "dae_mse": on_dae["mse_per_pixel"],
               "input_mse": float(np.mean((x_tilde - data.x_test) ** 2, dtype=np.float64)),
               "ae_clean_mse": ae_metrics["test"]["mse_per_pixel"],
               "dae_clean_mse": evaluate_reconstruction(dae, data.x_test)["mse_per_pixel"],
               "ae_sse_per_example": on_ae["sse_per_example"],
               "dae_sse_per_example": on_dae["sse_per_example"],
               "dae_better": on_dae["mse_per_pixel"] < on_ae["mse_per_pixel"],
               "mse_unit": "per pixel", "epochs": epochs, "seed": seed,
               "test_corruption_seed": CORRUPTED_TEST_SEED, "n_test": int(len(data.x_test)),
               "ae_seconds": round(ae_seconds, 2), "dae_seconds": round(dae_seconds, 2)}


def table(rows) -> str:
    """The rows as a Markdown table."""
    head = ("| corruption | level | x̃ itself | plain AE | DAE | DAE / AE | AE on clean | "
            "DAE on clean |\n|---|---|---|---|---|---|---|---|\n")
    symbol = {"gaussian": "σ", "masking": "ν", "salt-pepper": "ν"}
    def cells(r):  # the lower of the two MSEs on corrupted digits in bold
        ae, dae = f"{r['ae_mse']:.4f}", f"{r['dae_mse']:.4f}"
        return (ae, f"**{dae}**") if r["dae_mse"] < r["ae_mse"] else (f"**{ae}**", dae)

    def level(r):
        return f"{symbol[r['corruption']]} = {r['noise_level']:g}" + (
            ", clipped" if r.get("clip") else "")

    lines = [f"| {r['corruption']} | {level(r)} | "
             f"{r['input_mse']:.4f} | {' | '.join(cells(r))} | "
             f"{r['dae_mse'] / r['ae_mse']:.2f} | {r['ae_clean_mse']:.4f} | "
             f"{r['dae_clean_mse']:.4f} |" for r in rows]
    return head + "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    p.add_argument("--epochs", type=int, default=50, help="per model (default: 50)")
    p.add_argument("--seed", type=int, default=0, help="weights, shuffling, noise (default: 0)")
    p.add_argument("--json", action="store_true", help="one JSON line per corruption")
    p.add_argument("--save", metavar="DIR", default=None,
                   help="also write DIR/denoising.json (a settings record, then the JSON "
                        "lines) and DIR/denoising.md")
    args = p.parse_args(argv)
    if args.epochs < 1:
        p.error(f"--epochs must be a positive integer, got {args.epochs}")
    t0 = time.perf_counter()
    rows = []
    for row in run(args.epochs, args.seed):
        rows.append(row)
        if args.json:
            print(json.dumps(row), flush=True)
    total = time.perf_counter() - t0
    if not args.json:
        print(f"MSE per pixel on the {rows[0]['n_test']} test digits, corrupted once "
              f"(seed {CORRUPTED_TEST_SEED}), against the clean digits; {args.epochs} epochs "
              f"per model, seed {args.seed}, {total:.0f} s in all\n")
        print(table(rows))
    if args.save:
        record = {"settings": {**SETTINGS, "epochs": args.epochs, "seed": args.seed,
                               "levels": DEFAULT_LEVELS,
                               "test_corruption_seed": CORRUPTED_TEST_SEED},
                  "machine": machine(), "total_seconds": round(total, 1),
                  "command": "python benchmarks/denoising.py " + " ".join(sys.argv[1:])}
        write_jsonl(os.path.join(args.save, "denoising.json"), [record, *rows])
        threads = record["machine"].get("OPENBLAS_NUM_THREADS") or "unset (OpenBLAS default)"
        with open(os.path.join(args.save, "denoising.md"), "w") as f:
            f.write("# Plain vs denoising autoencoder on the same corrupted test digits\n\n"
                    "Written by `python benchmarks/denoising.py --save benchmarks/results`. "
                    "Every cell is an MSE per pixel (squared error summed over the 784 pixels, "
                    "divided by 784, averaged over the 500 test digits) against the *clean* "
                    f"digits. Both models: 784-{SETTINGS['hidden'][0]}-{SETTINGS['bottleneck']}-"
                    f"{SETTINGS['hidden'][0]}-784, ReLU, sigmoid output, Adam 1e-3, batch "
                    f"{SETTINGS['batch_size']}, {args.epochs} epochs, seed {args.seed}, float32 "
                    "NumPy. The plain AE is trained once on clean digits; each DAE on fresh "
                    "corruptions of every batch. The test digits are corrupted once per "
                    f"corruption (seed {CORRUPTED_TEST_SEED}) and both models reconstruct that "
                    "same x̃. \"x̃ itself\" is the MSE of the corrupted digits, what copying "
                    "the input would score.\n\n")
            f.write(table(rows))
            f.write(f"\nOne run on {record['machine'].get('cpu')} "
                    f"({record['machine'].get('logical_cpus')} logical CPUs), "
                    f"OPENBLAS_NUM_THREADS={threads}: {total:.0f} s in all (plain AE "
                    f"{rows[0]['ae_seconds']:.0f} s, each DAE about "
                    f"{np.mean([r['dae_seconds'] for r in rows]):.0f} s). The raw numbers, "
                    "with the machine record, are in `denoising.json`.\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
