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
