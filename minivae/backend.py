"""The array backend: NumPy on the CPU or CuPy on a GPU, chosen once.

Every model in minivae holds one :class:`Backend` and does all of its array work
through ``backend.xp`` (the ``numpy`` or ``cupy`` module, which share one API),
draws all of its noise from ``backend.rng``, and creates arrays in
``backend.dtype``.  Arrays cross between host and device at two edges only:
:meth:`Backend.to_device` where data enters, :meth:`Backend.to_numpy` where
numbers and images leave.  Nothing inside a model ever mixes the two kinds.

>>> be = get_backend("numpy", dtype="float64", seed=0)
>>> x = be.to_device([[0.0, 1.0]])
>>> be.to_numpy(x * 2).tolist()
[[0.0, 2.0]]
"""

from __future__ import annotations

import numpy as np

BACKENDS = ("numpy", "cupy", "auto")
DTYPES = ("float32", "float64")


def _is_cupy(obj) -> bool:
    """True for CuPy's arrays and generators (checked by type, without importing CuPy)."""
    return type(obj).__module__.startswith("cupy")


class BackendError(RuntimeError):
    """The requested backend cannot run here (CuPy missing or no GPU)."""


def _cupy_or_reason():
    """Return ``(cupy_module, None)`` when CuPy can run, else ``(None, reason)``."""
    try:
        import cupy
    except ImportError as exc:  # pragma: no cover - depends on the machine
        return None, (f"CuPy is not installed ({exc}); install it with "
                      "pip install -e '.[cuda]' on a machine with an NVIDIA GPU")
    try:
        n = cupy.cuda.runtime.getDeviceCount()
    except Exception as exc:  # pragma: no cover - depends on the machine
        return None, f"CuPy is installed but no CUDA GPU answers ({exc})"
    if n < 1:  # pragma: no cover - depends on the machine
        return None, "CuPy is installed but no CUDA GPU is visible"
    reason = _first_kernels(cupy)
    if reason is not None:
        return None, reason
    return cupy, None


def _first_kernels(cupy):
    """Run what every model needs once: None when it worked, else why not (one line).

    A GPU can answer while nothing runs on it: the plain ``cupy-cuda12x`` wheel
    brings no CUDA libraries, and on a machine with only the driver the first
    kernel (compiled by NVRTC), the first matmul (cuBLAS) or the first draw
    (cuRAND) fails.  This tries one of each, on tiny arrays, and checks the
    answers, so that failure is a one-line BackendError now rather than a
    traceback in the middle of a run.
    """
    try:
        a = cupy.arange(6, dtype=cupy.float32).reshape(2, 3)
        product = float(((a @ a.T) * 2 + 1).sum())     # [[5, 14], [14, 50]] · 2 + 1 → 170
        draw = cupy.random.default_rng(0).standard_normal(8, dtype=cupy.float32)
        if product != 170.0 or not bool(cupy.isfinite(draw).all()):
            return f"CuPy's first kernels gave wrong answers (matmul sum {product}, not 170)"
    except Exception as exc:  # any failure of the CUDA stack, whatever CuPy raises
        message = str(exc).splitlines()[0] if str(exc) else ""
        return (f"CuPy is installed and a GPU answers, but a first kernel, matmul or random "
                f"draw failed ({type(exc).__name__}: {message}); the CUDA libraries may be "
                f"missing: install them with pip install -e '.[cuda]' (cupy-cuda12x[ctk]) or "
                f"'.[cuda13]' (cupy-cuda13x[ctk]) to match the driver's CUDA")
    return None


_PROBED: dict = {}


def _probed_cupy():
    """``_cupy_or_reason()``, worked out once per process (it runs kernels on the GPU)."""
    if "cupy" not in _PROBED:
        _PROBED["cupy"] = _cupy_or_reason()
    return _PROBED["cupy"]


def cupy_available() -> bool:
    """True when CuPy is importable, a CUDA device answers and its first kernels run."""
    return _probed_cupy()[0] is not None


def cupy_unavailable_reason() -> str | None:
    """Why CuPy cannot run here, in one line (None when it can)."""
    return _probed_cupy()[1]


class Backend:
    """An array module, a float dtype and a seeded random generator.

    Parameters
    ----------
    name : {"numpy", "cupy"}
    dtype : {"float32", "float64"}
        The floating type of every parameter, activation and gradient.
        float32 for training, float64 for gradient checks.
    seed : int or None
        Seed of :attr:`rng`, the generator behind every random draw a model
        makes (initial weights, ε of the reparameterization, binarization,
        corruption noise).  Same seed, same backend: same numbers.
    """

    def __init__(self, name: str = "numpy", dtype="float32", seed: int | None = 0):
        if name not in ("numpy", "cupy"):
            raise ValueError(f"backend must be 'numpy' or 'cupy', got {name!r}")
        dtype_name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
        if dtype_name not in DTYPES:
            raise ValueError(f"dtype must be one of {DTYPES}, got {dtype!r}")
        if name == "cupy":
            cupy, reason = _probed_cupy()
            if cupy is None:
                raise BackendError(f"backend 'cupy' is unavailable: {reason}")
            self.xp = cupy
        else:
            self.xp = np
        self.name = name
        self.dtype = np.dtype(dtype_name)
        self.seed = seed
        self.rng = self.xp.random.default_rng(seed)

    def __repr__(self) -> str:
        return f"Backend(name={self.name!r}, dtype={self.dtype.name!r}, seed={self.seed!r})"

    # -- the two edges -----------------------------------------------------
    def to_device(self, a, dtype=None):
        """Host data on this backend's device, as ``dtype``.

        On CuPy this is always a copy.  On NumPy an array that already has the
        dtype is returned as it is, not copied: write into the result only if
        writing into the argument is meant too.

        ``dtype`` defaults to the backend's float dtype; pass another (for
        example ``"int64"`` for labels) to keep integers integral.  Only real
        numbers enter: complex data (whose imaginary part a cast would drop
        with no more than a warning), strings and objects raise ValueError.
        """
        dtype = self.dtype if dtype is None else np.dtype(dtype)
        if not hasattr(a, "dtype"):          # a list or a scalar: read it once, on the host
            a = np.asarray(a)
        if a.dtype.kind not in "biuf":
            raise ValueError(f"expected an array of real numbers, got dtype {a.dtype}")
        if self.name == "cupy":
            return self.xp.asarray(a, dtype=dtype)
        return np.asarray(self.to_numpy(a), dtype=dtype)

    def to_numpy(self, a) -> np.ndarray:
        """Copy an array of either backend back to a NumPy array on the host."""
        if hasattr(a, "get") and _is_cupy(a):
            return a.get()
        return np.asarray(a)

    def zeros(self, shape, dtype=None):
        return self.xp.zeros(shape, dtype=self.dtype if dtype is None else dtype)

    def standard_normal(self, shape):
        """ε ~ N(0, I) of the backend's dtype, drawn from :attr:`rng`."""
        return self.rng.standard_normal(shape, dtype=self.dtype)

    def uniform(self, shape):
        """u ~ U[0, 1) of the backend's dtype, drawn from :attr:`rng`."""
        return self.rng.random(shape, dtype=self.dtype)

    def is_device_array(self, a) -> bool:
        """True when ``a`` already lives on this backend (no copy needed)."""
        return isinstance(a, self.xp.ndarray)


def get_backend(name: str = "numpy", dtype="float32", seed: int | None = 0) -> Backend:
    """Return a :class:`Backend` for ``"numpy"``, ``"cupy"`` or ``"auto"``.

    ``"auto"`` picks CuPy when it is installed and a GPU answers, NumPy
    otherwise.  Asking for ``"cupy"`` where it cannot run raises
    :class:`BackendError` with a one-line reason.
    """
    if not isinstance(name, str) or name not in BACKENDS:
        raise ValueError(f"unknown backend {name!r}; expected one of {BACKENDS}")
    if name == "auto":
        name = "cupy" if cupy_available() else "numpy"
    return Backend(name, dtype=dtype, seed=seed)


def array_module(a):
    """The module (``numpy`` or ``cupy``) that owns array ``a``."""
    if isinstance(a, np.ndarray) or np.isscalar(a):
        return np
    if _is_cupy(a):
        import cupy
        return cupy
    return np


def common_array_module(*arrays):
    """CuPy when any of ``arrays`` is a CuPy array, else NumPy: where mixed inputs meet.

    A function given host and device arrays together computes on the device
    (``cupy.asarray`` copies the host ones there); NumPy cannot read a device
    array without an explicit copy.
    """
    if any(_is_cupy(a) for a in arrays):
        import cupy
        return cupy
    return np


def check_same_side(x, rng) -> None:
    """Raise ValueError unless array ``x`` and generator ``rng`` are both NumPy or both CuPy.

    Noise is drawn where the data lives; a NumPy generator cannot fill a device
    array, and a CuPy generator's draws would silently move host data to the GPU.
    """
    x_device, rng_device = _is_cupy(x), _is_cupy(rng)
    if x_device != rng_device:
        side = {False: "NumPy (host)", True: "CuPy (device)"}
        raise ValueError(f"x is a {side[x_device]} array but rng is a {side[rng_device]} "
                         f"generator; use the backend's own generator (backend.rng) for its "
                         f"arrays, or move x with backend.to_device / to_numpy")


def available_backends() -> list[str]:
    """The backend names that can run on this machine (for tests)."""
    return ["numpy"] + (["cupy"] if cupy_available() else [])
