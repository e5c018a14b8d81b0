"""Every fast twin of minivae.fast computes its formula.

Each twin is run against the formula it is named after, on NumPy and on CuPy: on the
NumPy-backed CuPy stand-in where no GPU runs CuPy (cupy.fuse then runs the Python function
itself), in float64.  The formula is the decorated function's ``.formula``.
"""

import numpy as np
import pytest

import fake_cupy
from conftest import REAL_CUPY, to_np
from minivae import fast
from minivae.backend import get_backend
from minivae.likelihoods import Bernoulli
from minivae.models.posterior import Posterior
from minivae.optim import Adam


@pytest.fixture
def device(cupy_kernels):
    return get_backend("cupy", dtype="float64", seed=0)


@pytest.fixture
def calls(monkeypatch):
    """Which fused kernels ran."""
    seen = []
    original = fast._compiled

    def spy(name):
        seen.append(name)
        return original(name)

    monkeypatch.setattr(fast, "_compiled", spy)
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
    assert calls == ["adam"] * 20                  # the kernel, looked up once per step


def test_every_twin_is_named_after_a_formula_of_the_core():
    """The registry and the decorated formulas are the same set: no twin without its formula."""
    from minivae import likelihoods, optim
    from minivae.models import posterior

    formulas = {f.twin_name: f for module in (likelihoods, optim, posterior)
                for f in vars(module).values() if hasattr(f, "twin_name")}
    assert set(formulas) == set(fast._TWINS)
    for name, f in formulas.items():
        assert f.__name__ == name and f.formula.__name__ == name   # named after its formula


@pytest.mark.parametrize("side", ["numpy", "cupy"])
def test_each_twin_equals_its_formula(side, monkeypatch):
    """bernoulli_log_prob, bernoulli_grad and reparameterize: twin against formula, float64."""
    from minivae.likelihoods import bernoulli_grad, bernoulli_log_prob
    from minivae.models.posterior import reparameterize

    if side == "cupy" and not REAL_CUPY:
        fake_cupy.install(monkeypatch)
    fast._compiled.cache_clear()
    be = get_backend(side, dtype="float64", seed=5)
    x = (be.uniform((6, 9)) < 0.3).astype(be.dtype)
    logits = 25 * be.standard_normal((6, 9))
    w, mu, logvar, eps = (be.standard_normal(s) for s in ((6,), (6, 3), (6, 3), (6, 3)))
    for f, args, tol in ((bernoulli_log_prob, (x, logits), 1e-14),
                         (bernoulli_grad, (x, logits, w), 4e-16),
                         (reparameterize, (mu, logvar, eps), 1e-15)):
        got, want = f(*args), f.formula(*args)
        for g, r in zip(got if isinstance(got, tuple) else (got,),
                        want if isinstance(want, tuple) else (want,)):
            scale = np.abs(to_np(r)).max() if f is not bernoulli_grad else np.abs(to_np(w)).max()
            np.testing.assert_allclose(to_np(g), to_np(r), rtol=tol, atol=tol * 8 * scale)
    fast._compiled.cache_clear()


def test_every_cupy_twin_launches_a_listed_kernel(cupy_kernels, monkeypatch):
    """What the GPU runs is what the compile check compiles: fast.GPU_KERNELS, all of them."""
    from minivae.likelihoods import bernoulli_grad, bernoulli_log_prob
    from minivae.models.posterior import reparameterize
    from minivae.optim import Adam

    compiled = cupy_kernels
    seen = []
    monkeypatch.setattr(fast, "_compiled", lambda name: seen.append(name) or compiled(name))
    be = get_backend("cupy", dtype="float32", seed=0)
    x, logits, w = be.uniform((3, 4)), be.standard_normal((3, 4)), be.standard_normal((3,))
    bernoulli_log_prob(x, logits)
    bernoulli_grad(x, logits, w)
    reparameterize(logits, logits, logits)
    Adam({"p": be.standard_normal((2, 2))}, {"p": be.standard_normal((2, 2))}).step()
    assert sorted(seen) == sorted(fast.GPU_KERNELS)


def test_the_gpu_adam_equals_the_numpy_twin_in_float32(cupy_kernels):
    """The in-place kernel's body (run on the stand-in as written, scalars cast to float32 first,
    as CUDA casts them) against the NumPy twin: float32 rounding apart, over 30 steps."""
    rng = np.random.default_rng(4)
    start, grads = rng.normal(size=(5, 4)), rng.normal(size=(30, 5, 4)) * 1e-2
    runs = []
    for name in ("numpy", "cupy"):
        be = get_backend(name, dtype="float32")
        p = be.to_device(start.copy())
        g = be.xp.zeros_like(p)
        opt = Adam({"p": p}, {"p": g}, lr=1e-2, threads=1)
        for t in range(30):
            g[...] = be.to_device(grads[t])
            opt.step()
        runs.append((to_np(p), to_np(opt.m["p"]), to_np(opt.v["p"])))
    for a, b in zip(*runs):
        np.testing.assert_allclose(b, a, rtol=2e-5, atol=1e-7)
    assert runs[1][0].dtype == np.float32
