"""The corruption processes χ(x̃|x): their statistics against theory, their randomness, bad levels.

Tolerances are 5 standard errors of the estimate (binomial for fractions,
normal-theory for means and variances), over N = 200,000 pixels.
"""

import math

import numpy as np
import pytest

from conftest import to_np
from minivae.backend import get_backend
from minivae.corruption import (CORRUPTIONS, DEFAULT_LEVELS, GaussianNoise, MaskingNoise,
                                SaltAndPepper, corrupt_fixed, make_corruption)

B, D = 250, 800
N = B * D


def _phi(t):
    """The standard normal CDF Φ(t)."""
    return 0.5 * (1 + math.erf(t / math.sqrt(2)))


def _grey(be, value=0.5):
    return be.xp.full((B, D), value, dtype=be.dtype)


def _assert_fraction(observed, p, what):
    se = math.sqrt(p * (1 - p) / N)
    assert abs(observed - p) <= 5 * se, f"{what}: {observed} vs {p} ± 5·{se:.2e}"


@pytest.mark.parametrize("sigma", [0.1, 0.3, 1.0])
def test_unclipped_gaussian_noise_has_mean_zero_and_variance_sigma_squared(be32, sigma):
    x = _grey(be32)
    noise = to_np(GaussianNoise(sigma, clip=False)(x, be32.rng) - x).astype(np.float64)
    se_mean = sigma / math.sqrt(N)
    se_var = sigma ** 2 * math.sqrt(2 / (N - 1))
    assert abs(noise.mean()) <= 5 * se_mean
    assert abs(noise.var(ddof=1) - sigma ** 2) <= 5 * se_var
    # unclipped noise does leave [0, 1]
    assert noise.min() < -0.5 or sigma < 0.2
    # and every pixel is changed: it is additive noise on all of them
    assert np.count_nonzero(noise) == N


@pytest.mark.parametrize("sigma", [0.3, 0.6])
def test_clipped_gaussian_noise_matches_the_clipped_normal(be32, sigma):
    """x = ½: x̃ − ½ = clip(σn, −½, ½); check P(x̃ = 0), P(x̃ = 1), the mean and the variance."""
    a = 0.5
    x = _grey(be32, a)
    x_tilde = to_np(GaussianNoise(sigma)(x, be32.rng)).astype(np.float64)
    assert x_tilde.min() == 0.0 and x_tilde.max() == 1.0
    p_edge = _phi(-a / sigma)                 # P(σn < −½) = P(σn > ½)
    _assert_fraction((x_tilde == 0).mean(), p_edge, "fraction clipped to 0")
    _assert_fraction((x_tilde == 1).mean(), p_edge, "fraction clipped to 1")
    # E[clip(σn, −a, a)²] = σ²[2Φ(t) − 1 − 2tφ(t)] + 2a²Φ(−t), t = a/σ
    t = a / sigma
    pdf = math.exp(-t * t / 2) / math.sqrt(2 * math.pi)
    var = sigma ** 2 * (2 * _phi(t) - 1 - 2 * t * pdf) + 2 * a * a * _phi(-t)
    d = x_tilde - a
    se_var = math.sqrt(a * a * var / N)       # Var(Y²) ≤ E[Y⁴] ≤ a² E[Y²] for |Y| ≤ a
    assert abs(d.mean()) <= 5 * math.sqrt(var / N)
    assert abs((d * d).mean() - var) <= 5 * se_var, ((d * d).mean(), var)
    assert var < sigma ** 2                   # clipping shrinks the variance


@pytest.mark.parametrize("nu", [0.1, 0.3, 0.75])
def test_masking_zeroes_a_fraction_nu_of_the_pixels(be32, nu):
    x = 0.1 + 0.9 * be32.uniform((B, D))      # no pixel is 0 yet: every masked pixel changes
    x_tilde = MaskingNoise(nu)(x, be32.rng)
    xn, xt = to_np(x), to_np(x_tilde)
    changed = xt != xn
    _assert_fraction(changed.mean(), nu, "fraction masked")
    assert (xt[changed] == 0).all()
    np.testing.assert_array_equal(xt[~changed], xn[~changed])
    # independently per pixel: the count per example is Binomial(D, ν), not exactly ν·D
    counts = changed.sum(axis=1)
    assert counts.min() < counts.max()
    assert 0.5 < counts.var(ddof=1) / (D * nu * (1 - nu)) < 1.5


@pytest.mark.parametrize("nu", [0.1, 0.2, 0.6])
def test_salt_and_pepper_sets_half_of_a_fraction_nu_to_1_and_half_to_0(be32, nu):
    x = _grey(be32)
    xt = to_np(SaltAndPepper(nu)(x, be32.rng)).astype(np.float64)
    changed = xt != 0.5
    _assert_fraction(changed.mean(), nu, "fraction changed")
    _assert_fraction((xt == 1).mean(), nu / 2, "fraction of salt (1)")
    _assert_fraction((xt == 0).mean(), nu / 2, "fraction of pepper (0)")
    assert set(np.unique(xt)) <= {0.0, 0.5, 1.0}
    # mean ½ (salt and pepper balance); variance ν·¼ (a chosen pixel moves by ±½)
    var = nu / 4
    assert abs(xt.mean() - 0.5) <= 5 * math.sqrt(var / N)
    assert abs(((xt - 0.5) ** 2).mean() - var) <= 5 * 0.25 * math.sqrt(nu * (1 - nu) / N)


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_noise_is_fresh_each_call_on_the_device_and_seeded(be32, name):
    x = 0.1 + 0.8 * be32.uniform((8, 50))
    chi = make_corruption(name, 0.4)
    a, b = chi(x, be32.rng), chi(x, be32.rng)
    assert be32.is_device_array(a) and a.dtype == be32.dtype and a.shape == x.shape
    assert not np.array_equal(to_np(a), to_np(b))     # a new draw every call (every batch)
    # the same seed gives the same draws
    be_a = get_backend(be32.name, dtype="float32", seed=7)
    be_b = get_backend(be32.name, dtype="float32", seed=7)
    np.testing.assert_array_equal(to_np(chi(be_a.to_device(to_np(x)), be_a.rng)),
                                  to_np(chi(be_b.to_device(to_np(x)), be_b.rng)))


@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_level_zero_changes_nothing_and_full_levels_behave(be64, name):
    x = be64.uniform((5, 40))
    np.testing.assert_array_equal(to_np(make_corruption(name, 0.0)(x, be64.rng)), to_np(x))
    if name == "masking":
        assert not to_np(make_corruption(name, 1.0)(x, be64.rng)).any()
    if name == "salt-pepper":
        assert set(np.unique(to_np(make_corruption(name, 1.0)(x, be64.rng)))) <= {0.0, 1.0}


def test_corrupt_fixed_is_the_same_for_the_same_seed():
    x = np.random.default_rng(0).random((20, 30)).astype(np.float32)
    chi = make_corruption("salt-pepper", 0.3)
    a, b = corrupt_fixed(chi, x), corrupt_fixed(chi, x)
    assert isinstance(a, np.ndarray) and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, corrupt_fixed(chi, x, seed=1))
    with pytest.raises(ValueError, match="float32 or float64 pixels, got dtype uint8"):
        corrupt_fixed(chi, (x * 255).astype(np.uint8))


def test_make_corruption_defaults_and_config_round_trip():
    for name, level in DEFAULT_LEVELS.items():
        chi = make_corruption(name)
        assert chi.level == level and chi.name == name
        assert make_corruption(**chi.config()).config() == chi.config()
    assert make_corruption("gaussian", 0.2, clip=False).config() == \
        {"name": "gaussian", "level": 0.2, "clip": False}
    assert "σ = 0.2" in make_corruption("gaussian", 0.2).describe()


@pytest.mark.parametrize("name,level,message", [
    ("masking", 1.5, r"masking noise level nu must be in \[0, 1\], got 1.5"),
    ("masking", -0.1, r"masking noise level nu must be in \[0, 1\], got -0.1"),
    ("salt-pepper", 1.01, r"salt-and-pepper noise level nu must be in \[0, 1\], got 1.01"),
    ("salt-pepper", -0.5, r"salt-and-pepper noise level nu must be in \[0, 1\], got -0.5"),
    ("gaussian", -0.3, "Gaussian noise level sigma must be a finite number ≥ 0, got -0.3"),
    ("gaussian", float("nan"), "Gaussian noise level sigma must be a finite number ≥ 0, got nan"),
    ("masking", True, r"must be in \[0, 1\], got True"),
    ("gauss", 0.3, r"unknown corruption 'gauss'; expected one of \('gaussian', 'masking', "
                   r"'salt-pepper'\)"),
])
def test_bad_corruptions_are_rejected(name, level, message):
    with pytest.raises(ValueError, match=message):
        make_corruption(name, level)
