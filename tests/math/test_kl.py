"""The standard-normal KL: closed form against numerical integration, gradients, properties."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from conftest import to_np
from minivae.gradcheck import numerical_gradient, relative_error
from minivae.kl import kl_normal_std, kl_normal_std_grad


def kl_by_quadrature(mu, logvar):
    """∫ q(z) log(q(z)/p(z)) dz for q = N(mu, e^logvar), p = N(0, 1), by adaptive quadrature."""
    sd = np.exp(0.5 * logvar)
    q, p = stats.norm(mu, sd), stats.norm(0, 1)
    f = lambda z: q.pdf(z) * (q.logpdf(z) - p.logpdf(z))  # noqa: E731
    value, err = integrate.quad(f, mu - 40 * sd, mu + 40 * sd, points=[mu], limit=200,
                                epsabs=1e-12, epsrel=1e-10)
    return value, err


@given(mu=st.floats(-4, 4), logvar=st.floats(-4, 3))
def test_closed_form_equals_numerical_integration_1d(mu, logvar):
    closed = float(kl_normal_std(np.array([mu]), np.array([logvar])))
    numeric, err = kl_by_quadrature(mu, logvar)
    assert abs(closed - numeric) <= 1e-8 + 1e-7 * abs(numeric) + 10 * err


def test_sum_over_dimensions_and_one_value_per_example(be64):
    mu, logvar = be64.standard_normal((3, 4)), be64.standard_normal((3, 4))
    kl = to_np(kl_normal_std(mu, logvar))
    assert kl.shape == (3,)
    per_dim = np.array([[kl_by_quadrature(m, lv)[0] for m, lv in zip(mr, lr)]
                        for mr, lr in zip(to_np(mu), to_np(logvar))])
    np.testing.assert_allclose(kl, per_dim.sum(axis=1), rtol=1e-8)


def test_zero_at_the_prior_and_positive_elsewhere(be64):
    z = be64.zeros((2, 5))
    assert np.all(to_np(kl_normal_std(z, z)) == 0)
    mu, logvar = be64.standard_normal((50, 3)), be64.standard_normal((50, 3))
    assert np.all(to_np(kl_normal_std(mu, logvar)) > 0)


def test_logvar_is_log_variance_not_log_std():
    # σ = 2: logvar = log 4.  KL = ½(4 + 0 − 1 − log 4)
    assert float(kl_normal_std(np.array([0.0]), np.array([np.log(4.0)]))) == pytest.approx(
        0.5 * (4 - 1 - np.log(4)), rel=1e-14)


def test_gradients_match_central_differences(be64):
    mu, logvar = be64.standard_normal((4, 3)), be64.standard_normal((4, 3))
    dmu, dlogvar = kl_normal_std_grad(mu, logvar)
    f = lambda: float(kl_normal_std(mu, logvar).sum())  # noqa: E731
    assert relative_error(dmu, numerical_gradient(f, mu)) <= 1e-6
    assert relative_error(dlogvar, numerical_gradient(f, logvar)) <= 1e-6


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="same shape"):
        kl_normal_std(np.zeros((2, 3)), np.zeros((2, 4)))
