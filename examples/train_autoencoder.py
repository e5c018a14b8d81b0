#!/usr/bin/env python
"""Train the lecture's autoencoder on the embedded MNIST digits (or MNIST / Fashion-MNIST).

    python examples/train_autoencoder.py                   # NumPy, 50 epochs, runs/autoencoder/
    python examples/train_autoencoder.py --bottleneck 8    # a narrower code
    python examples/train_autoencoder.py --help            # every flag

All the work is in the library: minivae/training/cli.py parses the flags (made from the
settings in minivae/training/config.py), minivae/training/train.py runs the training (its loop is
minivae/training/fit.py, its step minivae/training/steps.py), minivae/models/autoencoder.py is the model.
"""

import sys

from minivae.training.cli import main_autoencoder

if __name__ == "__main__":
    sys.exit(main_autoencoder())
