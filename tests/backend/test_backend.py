"""The backend: choice, dtype, seeding, conversions, and the errors for what cannot run."""

import numpy as np
import pytest

from minivae.backend import Backend, BackendError, cupy_available, get_backend


def test_numpy_backend_basics():
    be = get_backend("numpy")
    assert be.xp is np and be.dtype == np.float32 and be.name == "numpy"
    x = be.to_device([[1, 2], [3, 4]])
    assert isinstance(x, np.ndarray) and x.dtype == np.float32
    assert be.to_device([1, 2], dtype="int64").dtype == np.int64
    assert be.to_numpy(x).tolist() == [[1, 2], [3, 4]]
    assert be.standard_normal((3,)).dtype == np.float32
    assert get_backend("numpy", dtype="float64").uniform((2,)).dtype == np.float64


def test_same_seed_same_numbers_other_seed_other_numbers(backend_name):
    a = get_backend(backend_name, seed=7).standard_normal((5,))
    b = get_backend(backend_name, seed=7).standard_normal((5,))
    c = get_backend(backend_name, seed=8).standard_normal((5,))
    to_np = get_backend(backend_name).to_numpy
    assert np.array_equal(to_np(a), to_np(b)) and not np.array_equal(to_np(a), to_np(c))


def test_auto_picks_what_is_available():
    assert get_backend("auto").name == ("cupy" if cupy_available() else "numpy")


def test_unknown_backend_and_dtype():
    with pytest.raises(ValueError, match=r"unknown backend 'torch'; expected one of \('numpy', 'cupy', 'auto'\)"):
        get_backend("torch")
    with pytest.raises(ValueError, match="dtype must be one of"):
        get_backend("numpy", dtype="float16")
    with pytest.raises(ValueError, match="backend must be 'numpy' or 'cupy'"):
        Backend("auto")


@pytest.mark.skipif(cupy_available(), reason="CuPy runs here")
def test_cupy_missing_is_a_one_line_error_naming_the_cause():
    with pytest.raises(BackendError) as info:
        get_backend("cupy")
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith("backend 'cupy' is unavailable: ")
    assert "CuPy is not installed" in msg or "no CUDA GPU" in msg


@pytest.mark.skipif(not cupy_available(), reason="CuPy with a CUDA GPU is not available")
def test_cupy_arrays_round_trip():
    import cupy

    be = get_backend("cupy")
    x = be.to_device(np.arange(6.0).reshape(2, 3))
    assert isinstance(x, cupy.ndarray) and x.dtype == np.float32
    assert isinstance(be.to_numpy(x), np.ndarray)
    assert be.standard_normal((4,)).dtype == np.float32


class _FakeCupy:
    """Just enough of CuPy for the backend's first-kernel probe, backed by NumPy.

    ``broken`` names the call that fails, as it does where only the NVIDIA driver
    is installed and the CUDA libraries (NVRTC, cuBLAS, cuRAND) are missing.
    """

    float32 = np.float32
    ndarray = np.ndarray

    def __init__(self, broken=None):
        outer = self

        class runtime:
            @staticmethod
            def getDeviceCount():
                return 1

        class cuda:
            pass

        cuda.runtime = runtime
        self.cuda, self.broken = cuda, broken

        class random:
            @staticmethod
            def default_rng(seed):
                if outer.broken == "rng":
                    raise RuntimeError("CURAND_STATUS_INITIALIZATION_FAILED")
                return np.random.default_rng(seed)

        self.random = random

    def arange(self, n, dtype=None):
        if self.broken == "kernel":
            raise RuntimeError("libnvrtc.so.12: cannot open shared object file\nmore lines")
        return np.arange(n, dtype=dtype)

    isfinite = staticmethod(np.isfinite)


@pytest.mark.parametrize("broken,words", [("kernel", "libnvrtc"), ("rng", "CURAND")])
def test_a_gpu_whose_first_kernel_fails_is_a_one_line_error_and_auto_falls_back(
        monkeypatch, broken, words):
    import sys

    import minivae.backend as backend

    monkeypatch.setitem(sys.modules, "cupy", _FakeCupy(broken))
    monkeypatch.setattr(backend, "_PROBED", {})
    with pytest.raises(BackendError) as info:
        get_backend("cupy")
    message = str(info.value)
    assert words in message and "\n" not in message and "[ctk]" in message
    assert get_backend("auto").name == "numpy" and not cupy_available()


def test_a_gpu_whose_first_kernels_run_is_available(monkeypatch):
    import sys

    import minivae.backend as backend

    monkeypatch.setitem(sys.modules, "cupy", _FakeCupy())
    monkeypatch.setattr(backend, "_PROBED", {})
    assert backend._cupy_or_reason() == (sys.modules["cupy"], None)


def _device_looking(name):
    """An object whose type claims to come from CuPy, as a device array or generator does."""
    return type(name, (), {"__module__": "cupy._core.core"})()


@pytest.mark.parametrize("what", ["corrupt", "binarize"])
def test_host_data_with_a_device_generator_is_refused_clearly(what):
    from minivae.corruption import make_corruption
    from minivae.data import binarize

    x, gpu_rng = np.full((2, 3), 0.5), _device_looking("Generator")
    with pytest.raises(ValueError, match=r"x is a NumPy \(host\) array but rng is a CuPy"):
        if what == "corrupt":
            make_corruption("masking", 0.3)(x, gpu_rng)
        else:
            binarize(x, gpu_rng)
    with pytest.raises(ValueError, match=r"x is a CuPy \(device\) array but rng is a NumPy"):
        make_corruption("gaussian", 0.3)(_device_looking("ndarray"), np.random.default_rng(0))


def test_mixed_inputs_pick_the_device_module():
    from minivae.backend import common_array_module

    assert common_array_module(np.zeros(2), 1.0, [0.5]) is np
    import importlib.util
    if importlib.util.find_spec("cupy") is None:
        with pytest.raises(ImportError):     # it would compute on the device: CuPy is needed
            common_array_module(np.zeros(2), _device_looking("ndarray"))
