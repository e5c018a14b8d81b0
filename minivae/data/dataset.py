"""The data set record, its errors, and the pixel scaling every loader shares."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Digit classes of MNIST and Fashion-MNIST, and the shape of one image.
N_CLASSES = 10
IMAGE_SHAPE = (28, 28)


class DataError(ValueError):
    """A data set, file or argument is missing, malformed or out of range."""


@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images with their labels.

    Attributes
    ----------
    name : str
        One of :data:`minivae.data.DATASETS`.
    x_train, x_test : numpy.ndarray
        float32, shape ``(n, 784)``, pixels / 255 in ``[0, 1]``.
    y_train, y_test : numpy.ndarray
        int64 class labels, shape ``(n,)``.
    image_shape : tuple
        ``(height, width)`` of one image, ``(28, 28)``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple = IMAGE_SHAPE

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
                f"x_test={self.x_test.shape}, image_shape={self.image_shape})")


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels of any shape ``(n, ...)`` → float32 ``(n, prod(...))`` in [0, 1]."""
    return pixels.reshape(len(pixels), math.prod(pixels.shape[1:])).astype(np.float32) \
        / np.float32(255.0)


def readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a
