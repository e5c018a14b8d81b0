"""Data: the embedded MNIST subset, IDX files, downloads and minibatches.

Three data sets are known by name (:data:`DATASETS`):

``"mnist5k"``
    5,000 real MNIST digits (500 per class) shipped inside this package
    (:mod:`minivae.data.mnist5k`), split 4,500 / 500 by :func:`load_mnist5k`.
    Needs no network and is the default everywhere.
``"mnist"``, ``"fashion-mnist"``
    The full 60,000 / 10,000 sets, read from the four standard IDX files in a
    directory (:func:`load_idx_dataset`, :mod:`minivae.data.idx`), which
    :func:`download_idx_dataset` (:mod:`minivae.data.download`) can fetch and
    verify.

Every image set is a float32 array of shape ``(n, 784)`` with pixels scaled
to ``[0, 1]``; labels are int64.  :class:`Minibatches`
(:mod:`minivae.data.batches`) moves an image set onto the backend's device
once and yields shuffled (optionally binarized) batches.  Every problem with
the data raises :class:`DataError`.
"""

from __future__ import annotations

import os

from .batches import (BINARIZE, Minibatches, as_model_input, binarize, binarize_fixed,
                      check_images)
from .dataset import DataError, Dataset
from .download import MD5SUMS, MIRRORS, download_idx_dataset
from .idx import IDX_FILES, MAX_IDX_BYTES, load_idx_dataset, read_idx
from .mnist5k import load_mnist5k

__all__ = [
    "DATASETS", "BINARIZE", "DataError", "Dataset", "load_dataset",
    "load_mnist5k", "read_idx", "load_idx_dataset", "download_idx_dataset",
    "check_images", "as_model_input", "binarize", "binarize_fixed", "Minibatches",
    "IDX_FILES", "MAX_IDX_BYTES", "MIRRORS", "MD5SUMS",
]

DATASETS = ("mnist5k", "mnist", "fashion-mnist")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 download: bool = False, cache_dir=None) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : {"mnist5k", "mnist", "fashion-mnist"}
    data_dir : path, optional
        Directory holding the four IDX files of ``"mnist"`` or
        ``"fashion-mnist"``.  Ignored for ``"mnist5k"``.
    download : bool
        Without ``data_dir``, fetch the IDX files into ``cache_dir`` first.
    cache_dir : path, optional
        Passed to :func:`download_idx_dataset`.

    Raises
    ------
    DataError
        Unknown name, or a full data set asked for with neither ``data_dir``
        nor ``download=True``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "mnist5k":
        return load_mnist5k()
    if data_dir is not None:
        return load_idx_dataset(name, data_dir)
    if download:
        return load_idx_dataset(name, download_idx_dataset(name, cache_dir))
    raise DataError(
        f"dataset {name!r} is not bundled: pass data_dir (--data-dir) naming a "
        f"directory with {', '.join(IDX_FILES)}, or download=True (--download) "
        "to fetch them; 'mnist5k' needs neither")


