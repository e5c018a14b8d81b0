"""The fused GPU kernels (minivae.kernels) compute what the NumPy paths compute.

Run on the NumPy-backed CuPy stand-in where no GPU runs CuPy (cupy.fuse then runs the
Python function itself), in float64, against the NumPy path of the same code.
"""

import numpy as np
import pytest

import fake_cupy
from conftest import REAL_CUPY, to_np
from minivae import kernels
from minivae.backend import get_backend
from minivae.likelihoods import Bernoulli
from minivae.models.posterior import Posterior
from minivae.optim import Adam


@pytest.fixture
def device(monkeypatch):
    if not REAL_CUPY:
        fake_cupy.install(monkeypatch)
    kernels._compiled.cache_clear()
    yield get_backend("cupy", dtype="float64", seed=0)
    kernels._compiled.cache_clear()


@pytest.fixture
def calls(monkeypatch):
    """Which fused kernels ran."""
    seen = []
    original = kernels.fused

    def spy(name, like):
        seen.append(name)
        return original(name, like)

    for module in ("minivae.likelihoods", "minivae.optim", "minivae.models.posterior"):
        monkeypatch.setattr(f"{module}.fused", spy)
    return seen


def test_bernoulli_kernels_match_the_numpy_path(device, calls):
    rng = np.random.default_rng(0)
    x, logits, w = (rng.random((5, 7)) < 0.4).astype(float), 30 * rng.normal(size=(5, 7)), \
        rng.normal(size=5)
    host, dev = Bernoulli(get_backend("numpy", dtype="float64")), Bernoulli(device)
    lp_host = host.log_prob(x, logits)
    lp_dev = dev.log_prob(device.to_device(x), device.to_device(logits))
    np.testing.assert_allclose(to_np(lp_dev), lp_host, rtol=1e-14)
    np.testing.assert_allclose(to_np(dev.backward(device.to_device(w))), host.backward(w),
                               rtol=1e-13, atol=1e-15)
    assert calls == ["bernoulli_terms", "bernoulli_grad"]


def test_reparameterization_kernel_matches(device, calls):
    rng = np.random.default_rng(1)
    mu, logvar, eps = (rng.normal(size=(4, 3)) for _ in range(3))
    q = Posterior(*(device.to_device(a) for a in (mu, logvar)))
    z = q.sample(device.to_device(eps))
    np.testing.assert_allclose(to_np(z), mu + np.exp(0.5 * logvar) * eps, rtol=1e-14)
    np.testing.assert_allclose(to_np(q.std), np.exp(0.5 * logvar), rtol=1e-15)
    assert calls == ["reparameterize"]


def test_adam_kernel_matches_the_in_place_update(device, calls):
    rng = np.random.default_rng(2)
    start = {"W": rng.normal(size=(6, 4)), "b": rng.normal(size=4)}
    runs = []
    for be in (get_backend("numpy", dtype="float64"), device):
        params = {k: be.to_device(v.copy()) for k, v in start.items()}   # (NumPy: no copy)
        grads = {k: be.xp.zeros_like(v) for k, v in params.items()}
        opt = Adam(params, grads, lr=0.01, threads=1)
        g_rng = np.random.default_rng(3)
        for _ in range(20):
            for k in grads:
                grads[k][...] = be.to_device(g_rng.normal(size=start[k].shape))
            opt.step()
        arrays = {**{f"p.{k}": a for k, a in params.items()},
                  **{f"m.{k}": a for k, a in opt.m.items()},
                  **{f"v.{k}": a for k, a in opt.v.items()}}
        runs.append({k: to_np(a) for k, a in arrays.items()})
    assert len(runs[0]) == 6
    for k in runs[0]:
        np.testing.assert_allclose(runs[1][k], runs[0][k], rtol=1e-12, atol=1e-15)
    assert not np.allclose(runs[1]["p.W"], start["W"])
    assert set(calls) == {"adam"} and len(calls) == 20 * 2


def test_the_plain_kernels_run_on_numpy_too():
    f = kernels.fused("reparameterize", np.zeros(2))
    std, z = f(np.zeros(2), np.zeros(2), np.ones(2))
    assert std.tolist() == [1.0, 1.0] and z.tolist() == [1.0, 1.0]


def test_an_unknown_kernel_is_named_in_the_error():
    with pytest.raises(ValueError, match="unknown kernel 'softmax'"):
        kernels.fused("softmax", np.zeros(2))
