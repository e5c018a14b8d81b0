#!/usr/bin/env python
"""Train a VAE on the embedded MNIST digits (or MNIST / Fashion-MNIST).

    python examples/train_vae.py                      # NumPy, 100 epochs, writes runs/vae/
    python examples/train_vae.py --backend cupy       # the same on an NVIDIA GPU
    python examples/train_vae.py --iw-samples 500     # also -log p(x) by importance weighting
    python examples/train_vae.py --resume runs/vae/checkpoint.npz --epochs 200
                                                      # continue that run to 200 epochs in total
    python examples/train_vae.py --help               # every flag

Ctrl-C saves the state after the last completed epoch into --out/checkpoint.npz
and exits with status 130 (SIGTERM: the same, status 143); --resume continues
from it.  A run that diverges saves the last finite epoch's state and exits
with status 2 (docs/reliability.md has every case).

All the work is in the library: minivae/training/cli.py parses the flags (made from the
settings in minivae/training/config.py), minivae/training/train.py runs the training (its loop is
minivae/training/fit.py, its step minivae/training/steps.py), minivae/models/vae.py is the model.
"""

import sys

from minivae.training.cli import main_vae

if __name__ == "__main__":
    sys.exit(main_vae())
