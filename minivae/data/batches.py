"""Where data enters a model: checks, binarization, and minibatches on the backend's device."""

from __future__ import annotations

import numpy as np

from ..backend import array_module, check_same_side
from ..numerics import FIXED_SEED
from .dataset import DataError

#: How pixels in [0, 1] become the binary data a Bernoulli likelihood models.
BINARIZE = ("none", "dynamic", "static")


def check_images(x, *, name: str = "x", width: int | None = None,
                 unit_interval: bool = False) -> None:
    """Raise :class:`DataError` unless ``x`` is a usable 2-D batch of images.

    Works on NumPy and CuPy arrays; on a GPU only scalar reductions travel to
    the host.

    Parameters
    ----------
    x : array
        Expected shape ``(n, width)``, finite numbers.
    name : str
        How the array is called in the message.
    width : int, optional
        Required number of features per example.
    unit_interval : bool
        Also require every value in ``[0, 1]`` (a Bernoulli likelihood needs
        pixel intensities that are probabilities).
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"{name} must be 2-D (examples, features), found {x.ndim}-D "
                        f"shape {tuple(x.shape)}")
    if width is not None and x.shape[1] != width:
        raise DataError(f"{name} has {x.shape[1]} features per example, the model "
                        f"expects {width}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold real numbers, found dtype {x.dtype}")
    if x.size == 0:
        return
    xp = array_module(x)
    if x.dtype.kind == "f" and not bool(xp.isfinite(x).all()):
        n_nan = int(xp.isnan(x).sum())
        n_inf = int(xp.isinf(x).sum())
        raise DataError(f"{name} contains {n_nan} NaN and {n_inf} Inf values "
                        f"(out of {x.size})")
    if unit_interval:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{name} has values in [{lo:g}, {hi:g}], outside [0, 1]; the "
                            "Bernoulli likelihood needs pixels in [0, 1] (divide by 255?)")


def as_model_input(x, backend, width: int, *, values: bool = True, name: str = "x"):
    """``x`` on ``backend`` in its dtype, checked to be a batch (B, width); return it.

    This is where data enters a model.  The shape is always checked (it costs
    nothing: no element is read); with ``values`` also NaN and Inf (every element
    is read, on a GPU a transfer to the host) and B ≥ 1.  (``values=False`` lets
    0 rows through: the split-batch step gives an empty block to a thread when a
    batch has fewer rows than threads.)  Complex numbers, strings and objects
    are refused by :meth:`Backend.to_device`.
    """
    if not backend.is_device_array(x) or x.dtype != backend.dtype:
        x = backend.to_device(x)
    if values or x.ndim != 2 or x.shape[1] != width:
        check_images(x, name=name, width=width)
    if values and x.shape[0] == 0:
        raise DataError(f"{name} has no rows; expected at least one example of {width} values")
    return x


def binarize(x, rng):
    """One Bernoulli draw per pixel: 1 with probability ``x``, else 0.

    ``x`` and ``rng`` must live on the same side: a NumPy array with a
    ``numpy.random.Generator`` or a CuPy array with a CuPy Generator (else
    ValueError saying so).
    """
    check_same_side(x, rng)
    return (rng.random(x.shape, dtype=x.dtype) < x).astype(x.dtype)


def binarize_fixed(x: np.ndarray, seed: int = FIXED_SEED) -> np.ndarray:
    """One fixed stochastic binarization of host data, the same for the same seed.

    Used for static binarization and for a fixed binarized test set.
    ``x`` must be floating point with values read as probabilities.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise DataError(f"binarize_fixed needs floating-point pixels in [0, 1], "
                        f"found dtype {x.dtype} (divide by 255 first)")
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return binarize(x.astype(dtype, copy=False), np.random.default_rng(seed)).astype(x.dtype)




def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class Minibatches:
    """Batches of one image set, held on the backend's device.

    Each pass over the object is one epoch.  The order of an epoch is a
    permutation drawn on the host from the object's own
    ``numpy.random.default_rng(seed)``, which advances every epoch: epochs
    differ, and the whole sequence repeats for the same seed.

    Parameters
    ----------
    x : array, shape (n, d)
        NumPy array or an array already on the backend's device.
    backend : minivae.backend.Backend
    batch_size : int
        Positive.
    shuffle : bool
        Permute every epoch; otherwise keep the order of ``x``.
    binarize : {"none", "dynamic", "static"}
        ``"dynamic"``: every yielded batch is a fresh Bernoulli draw made on
        the device from ``backend.rng``.  ``"static"``: ``x`` is binarized once,
        here, by :func:`binarize_fixed` with ``seed``.  Both need ``x`` in [0, 1].
    seed : int
        Seed of the shuffling (and of the static binarization).
    drop_last : bool
        Skip the final batch when it is smaller than ``batch_size``.
    """

    def __init__(self, x, backend, batch_size: int, *, shuffle: bool = True,
                 binarize: str = "none", seed: int = 0, drop_last: bool = False):
        self.batch_size = _check_batch_size(batch_size)
        if not isinstance(binarize, str) or binarize not in BINARIZE:
            raise DataError(f"binarize must be one of {BINARIZE}, got {binarize!r}")
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        check_images(x, name="x", unit_interval=binarize != "none")
        self.n = int(x.shape[0])
        if self.n == 0:
            raise DataError("x has no examples; Minibatches needs at least one")
        if drop_last and self.n < self.batch_size:
            raise DataError(f"batch_size={self.batch_size} exceeds the {self.n} examples "
                            "and drop_last=True: an epoch would yield no batch")
        self.backend = backend
        self.shuffle = bool(shuffle)
        self.binarize = binarize
        self.drop_last = bool(drop_last)
        self.seed = seed
        self._order_rng = np.random.default_rng(seed)
        if binarize == "static":
            x = binarize_fixed(backend.to_numpy(x).astype(backend.dtype, copy=False), seed)
        if backend.is_device_array(x) and x.dtype == backend.dtype:
            self.x = x
        else:
            self.x = backend.to_device(x)

    @property
    def shuffle_state(self) -> dict:
        """The shuffling generator's state (a JSON-able dict), for checkpoints."""
        return self._order_rng.bit_generator.state

    @shuffle_state.setter
    def shuffle_state(self, state: dict) -> None:
        self._order_rng.bit_generator.state = state

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def _epoch_order(self) -> np.ndarray:
        if self.shuffle:
            return self._order_rng.permutation(self.n)
        return np.arange(self.n)

    def __iter__(self):
        """Yield one epoch of device arrays ``(b, d)`` in ``backend.dtype``."""
        order = self.backend.to_device(self._epoch_order(), dtype=np.int64)
        stop = len(self) * self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            batch = self.x[order[start:start + self.batch_size]]
            if self.binarize == "dynamic":
                batch = binarize(batch, self.backend.rng)
            yield batch
