"""``"mnist5k"``: the 5,000 real MNIST digits shipped inside this package.

``mnist5k.npz`` beside this file holds 500 digits of each class as uint8
arrays ``pixels`` (5000, 784) and ``labels`` (5000,), about 0.8 MB.  Their
source and licence (MNIST, CC BY-SA 3.0) are in ``NOTICE`` beside it;
``tests/regression/make_mnist5k_npz.py`` says how the file was made and
``tests/test_data.py`` pins its SHA-256.  Reading it needs NumPy only and
takes a few milliseconds.
"""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

from .dataset import N_CLASSES, DataError, Dataset, readonly, scale_pixels

#: The embedded digits, next to this module.
MNIST5K_PATH = Path(__file__).with_name("mnist5k.npz")

_RAW: dict = {}      # "raw" -> (pixels uint8 (5000, 784), labels int64)
_SPLITS: dict = {}   # (test_per_class, seed) -> Dataset of read-only arrays


def read_mnist5k(path=MNIST5K_PATH) -> tuple[np.ndarray, np.ndarray]:
    """The 5,000 digits as ``(pixels uint8 (5000, 784), labels int64 (5000,))``, checked."""
    try:
        with np.load(path, allow_pickle=False) as f:
            pixels, labels = f["pixels"], f["labels"]
    except (OSError, KeyError, ValueError, EOFError, zipfile.BadZipFile) as exc:
        raise DataError(f"cannot read the embedded digits {path}: {exc}; reinstall minivae")
    if pixels.shape != (5000, 784) or pixels.dtype != np.uint8 or labels.shape != (5000,) \
            or labels.dtype != np.uint8 or labels.max() >= N_CLASSES:
        raise DataError(f"{path} does not hold 5,000 uint8 digits of 784 pixels with labels "
                        f"0..9 (found pixels {pixels.dtype} {pixels.shape}, labels "
                        f"{labels.dtype} {labels.shape}); reinstall minivae")
    return pixels, labels.astype(np.int64)


def _stratified_split(labels: np.ndarray, test_per_class: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)``: ``test_per_class`` random rows of each class go to test.

    Each class's rows are permuted by ``rng``; the first ``test_per_class``
    go to test, the rest to train.  Both index sets are then shuffled so
    neither is ordered by class.
    """
    train, test = [], []
    for c in range(N_CLASSES):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if rows.size <= test_per_class:
            raise DataError(f"class {c} has {rows.size} examples; test_per_class="
                            f"{test_per_class} would leave none for training")
        test.append(rows[:test_per_class])
        train.append(rows[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a



def load_mnist5k(test_per_class: int = 50, seed: int = 0) -> Dataset:
    """The 5,000 embedded MNIST digits, split train / test by class.

    The split is stratified: for every digit class, a permutation drawn from
    ``numpy.random.default_rng(seed)`` sends ``test_per_class`` of its 500
    examples to the test set and the rest to the training set (4,500 / 500
    with the defaults).  The training and test orders are then shuffled by
    the same generator.  Same arguments, same split.

    Parameters
    ----------
    test_per_class : int
        Test examples per class, 1..499.
    seed : int
        Seed of the split.

    Returns
    -------
    Dataset
        Fresh (writable) copies; the file and each split are cached.
    """
    if isinstance(test_per_class, bool) or not isinstance(test_per_class, (int, np.integer)) \
            or not 1 <= test_per_class <= 499:
        raise DataError(f"test_per_class must be an integer in 1..499, got {test_per_class!r}")
    key = (int(test_per_class), int(seed))
    if key not in _SPLITS:
        if "raw" not in _RAW:
            _RAW["raw"] = read_mnist5k()
        pixels, labels = _RAW["raw"]
        train, test = _stratified_split(labels, key[0], np.random.default_rng(key[1]))
        _SPLITS[key] = Dataset(
            name="mnist5k",
            x_train=readonly(scale_pixels(pixels[train])),
            y_train=readonly(labels[train]),
            x_test=readonly(scale_pixels(pixels[test])),
            y_test=readonly(labels[test]),
        )
    cached = _SPLITS[key]
    return Dataset(name=cached.name, x_train=cached.x_train.copy(),
                   y_train=cached.y_train.copy(), x_test=cached.x_test.copy(),
                   y_test=cached.y_test.copy(), image_shape=cached.image_shape)
