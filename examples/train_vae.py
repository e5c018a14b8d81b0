#!/usr/bin/env python
"""Train a VAE on the embedded MNIST digits (or MNIST / Fashion-MNIST).

    python examples/train_vae.py                      # NumPy, 100 epochs, writes runs/vae/
    python examples/train_vae.py --backend cupy       # the same on an NVIDIA GPU
    python examples/train_vae.py --help               # every flag

All the work is in the library: minivae/cli.py parses the flags,
minivae/train.py runs the fit loop, minivae/models/vae.py is the model.
"""

import sys

from minivae.cli import main_vae

if __name__ == "__main__":
    sys.exit(main_vae())
