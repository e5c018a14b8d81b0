#!/usr/bin/env python
"""Train the lecture's denoising autoencoder on the embedded MNIST digits.

    python examples/train_denoising.py                                  # Gaussian noise, σ = 0.3
    python examples/train_denoising.py --corruption masking --noise-level 0.5
    python examples/train_denoising.py --help                           # every flag

All the work is in the library: minivae/training/cli.py parses the flags (made from the
settings in minivae/training/config.py), minivae/training/train.py runs the training (its loop is
minivae/training/fit.py, its step minivae/training/steps.py), minivae/models/denoising.py is the model
and minivae/corruption.py the corruption process χ(x̃|x).
"""

import sys

from minivae.training.cli import main_denoising

if __name__ == "__main__":
    sys.exit(main_denoising())
