"""Shared fixtures: every backend-aware test runs on NumPy and, where a GPU answers, on CuPy."""

import os
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

from minivae.backend import cupy_available, get_backend
from minivae.data import Dataset, load_dataset

# Hypothesis profiles: "default" keeps the suite fast on 2 cores; "thorough"
# (MINIVAE_HYPOTHESIS_PROFILE=thorough) runs many more examples per property.
settings.register_profile("default", max_examples=40, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("thorough", max_examples=500, deadline=None,
                          suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("MINIVAE_HYPOTHESIS_PROFILE", "default"))


@pytest.fixture(scope="session", autouse=True)
def nothing_written_into_runs():
    """No test leaves the scripts' default output folder (``runs/``) behind: each gives ``--out``.

    Checked where ``runs/`` did not exist when the session started (a fresh clone, CI).
    """
    folders = {Path.cwd() / "runs", Path(__file__).resolve().parents[1] / "runs"}
    absent = [f for f in folders if not f.exists()]
    yield
    written = [str(f) for f in absent if f.exists()]
    assert not written, f"a test wrote into {written}: give it --out under tmp_path"


#: Whether a real GPU runs CuPy here.  Where none does, the "cupy" tests run on the
#: strict NumPy-backed stand-in of tests/fake_cupy.py instead of being skipped.
REAL_CUPY = cupy_available()
BACKEND_NAMES = ["numpy", "cupy"]


@pytest.fixture(params=BACKEND_NAMES)
def backend_name(request, monkeypatch):
    if request.param == "cupy" and not REAL_CUPY:
        import fake_cupy
        fake_cupy.install(monkeypatch)
    return request.param


@pytest.fixture
def cupy_kernels(monkeypatch):
    """CuPy for minivae.fast's GPU kernels: the real one where a GPU runs it, else the stand-in.

    The kernels are compiled afresh for the test and dropped after it, also when it fails, so
    no test sees another's (stand-in) kernels.  Yields ``fast._compiled`` itself, for a test
    that wraps it in a spy.
    """
    from minivae import fast

    if not REAL_CUPY:
        import fake_cupy
        fake_cupy.install(monkeypatch)
    compiled = fast._compiled
    compiled.cache_clear()
    yield compiled
    compiled.cache_clear()


@pytest.fixture
def be64(backend_name):
    """A float64 backend (gradient checks), seeded."""
    return get_backend(backend_name, dtype="float64", seed=1234)


@pytest.fixture
def be32(backend_name):
    """A float32 backend (training), seeded."""
    return get_backend(backend_name, dtype="float32", seed=1234)


def to_np(a):
    """Any array (NumPy or CuPy) as NumPy."""
    return a.get() if hasattr(a, "get") and not isinstance(a, np.ndarray) else np.asarray(a)


@pytest.fixture(scope="module")
def small_digits():
    """1,000 training and 200 test digits of the embedded set: fast runs on 2 cores."""
    ds = load_dataset("mnist5k")
    return Dataset("mnist5k", ds.x_train[:1000], ds.y_train[:1000], ds.x_test[:200],
                   ds.y_test[:200])
