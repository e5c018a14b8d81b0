"""The shared log-densities and log-mean-exp of minivae.numerics, against SciPy and plain sums."""

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from scipy import stats

from minivae.numerics import LOG_2PI, log_mean_exp, log_normal_diag, log_normal_std


def test_log_normal_densities_match_scipy():
    rng = np.random.default_rng(0)
    z, mu, logvar = rng.normal(size=(5, 3)), rng.normal(size=3), rng.normal(size=3)
    ref = stats.norm(mu, np.exp(0.5 * logvar)).logpdf(z).sum(axis=-1)
    np.testing.assert_allclose(log_normal_diag(z, mu, logvar), ref, rtol=1e-13)
    np.testing.assert_allclose(log_normal_std(z), stats.norm().logpdf(z).sum(axis=-1),
                               rtol=1e-13)
    np.testing.assert_allclose(log_normal_diag(z, 0.0, 0.0), log_normal_std(z), rtol=1e-15)
    assert LOG_2PI == math.log(2 * math.pi)


@given(hnp.arrays(np.float64, st.tuples(st.integers(1, 4), st.integers(1, 30)),
                  elements=st.floats(-50, 50)))
def test_log_mean_exp_is_the_log_of_the_mean(a):
    ref = np.log(np.exp(a).mean(axis=-1))
    np.testing.assert_allclose(log_mean_exp(a), ref, rtol=1e-12, atol=1e-12)


def test_log_mean_exp_does_not_overflow_or_underflow():
    a = np.array([[1000.0, 1000.0 + math.log(3)], [-1000.0, -1000.0]])
    np.testing.assert_allclose(log_mean_exp(a), [1000.0 + math.log(2), -1000.0], rtol=1e-15)
    assert log_mean_exp(a, axis=0).shape == (2,)
    with pytest.raises(ValueError):
        log_mean_exp(np.zeros((2, 0)))


def test_normal_quantiles_match_scipy_and_refuse_probabilities_outside_0_1():
    from scipy.special import ndtri

    from minivae.numerics import normal_quantiles

    p = np.concatenate([np.linspace(0.001, 0.999, 97), [1e-12, 0.5, 1 - 1e-12]])
    np.testing.assert_allclose(normal_quantiles(p), ndtri(p), rtol=1e-13, atol=1e-13)
    assert normal_quantiles(np.full((2, 3), 0.5)).shape == (2, 3)
    for bad in ([0.0, 0.5], [0.5, 1.0], [np.nan]):
        with pytest.raises(ValueError, match="strictly between 0 and 1"):
            normal_quantiles(bad)
