"""Likelihoods: values against direct formulas / SciPy, gradients against central differences."""

import numpy as np
import pytest
from scipy import stats

from conftest import to_np
from minivae import fast
from minivae.gradcheck import check_gradients
from minivae.likelihoods import Bernoulli, Gaussian, make_likelihood

TOL = 1e-6


def _grad_check(lik, x, out, be):
    """Check ∂(Σ w·log p)/∂out and any parameter of ``lik`` for a random weight w per example."""
    w = be.standard_normal((x.shape[0],))
    lik.zero_grad()
    lik.log_prob(x, out)
    analytic = {"out": lik.backward(w), **{k: g.copy() for k, g in lik.grads.items()}}
    return check_gradients(lambda: float((w * lik.log_prob(x, out)).sum()),
                           {"out": out, **lik.params}, analytic)


def test_bernoulli_matches_the_textbook_formula(be64):
    x = (be64.uniform((5, 7)) < 0.5).astype(be64.dtype)
    logits = 3 * be64.standard_normal((5, 7))
    p = 1 / (1 + np.exp(-to_np(logits)))
    xn = to_np(x)
    expected = (xn * np.log(p) + (1 - xn) * np.log(1 - p)).sum(axis=1)
    np.testing.assert_allclose(to_np(Bernoulli(be64).log_prob(x, logits)), expected, rtol=1e-12)


def test_bernoulli_is_exact_for_extreme_logits(be64):
    x = be64.to_device([[1.0, 0.0, 1.0, 0.0]])
    logits = be64.to_device([[800.0, -800.0, -800.0, 800.0]])
    # log σ(800) = 0, log(1 − σ(−800)) = 0, log σ(−800) = −800, log(1 − σ(800)) = −800
    assert float(to_np(Bernoulli(be64).log_prob(x, logits))[0]) == -1600.0


@pytest.mark.parametrize("grey", [False, True], ids=["binary", "grey"])
def test_bernoulli_gradient(be64, grey):
    x = be64.uniform((6, 5))
    if not grey:
        x = (x < 0.5).astype(be64.dtype)
    errors = _grad_check(Bernoulli(be64), x, 2 * be64.standard_normal((6, 5)), be64)
    assert max(errors.values()) <= TOL, errors


def test_bernoulli_rejects_pixels_outside_unit_interval(be64):
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs pixels in \[0, 1\].*255"):
        Bernoulli(be64).check_data(be64.to_device([[0.0, 255.0]]))
    Bernoulli(be64).check_data(be64.to_device([[0.0, 0.3, 1.0]]))  # grey values are allowed


@pytest.mark.parametrize("logvar", [0.0, -2.5, 1.3])
def test_gaussian_matches_scipy(be64, logvar):
    x, m = be64.standard_normal((4, 6)), be64.standard_normal((4, 6))
    expected = stats.norm.logpdf(to_np(x), loc=to_np(m), scale=np.exp(0.5 * logvar)).sum(axis=1)
    got = to_np(Gaussian(logvar=logvar, backend=be64).log_prob(x, m))
    np.testing.assert_allclose(got, expected, rtol=1e-12)


@pytest.mark.parametrize("learn", [False, True], ids=["fixed", "learned"])
def test_gaussian_gradient(be64, learn):
    lik = Gaussian(logvar=-0.7, learn_logvar=learn, backend=be64)
    assert set(lik.params) == ({"logvar"} if learn else set())
    errors = _grad_check(lik, be64.standard_normal((5, 4)), be64.standard_normal((5, 4)), be64)
    assert max(errors.values()) <= TOL, errors


def test_likelihood_factory_and_errors(be64):
    assert isinstance(make_likelihood("bernoulli", be64), Bernoulli)
    with pytest.raises(ValueError, match="unknown likelihood 'poisson'"):
        make_likelihood("poisson", be64)
    with pytest.raises(ValueError, match="logvar must be finite"):
        Gaussian(logvar=float("nan"), backend=be64)
    with pytest.raises(RuntimeError, match="before log_prob"):
        Bernoulli(be64).backward(be64.zeros((2,)))


def test_bernoulli_fast_path_equals_the_reference_expressions(be64):
    """log_prob must equal Σ x·ℓ − softplus(ℓ); backward, computed through tanh(ℓ/2),
    must equal w·(x − σ(ℓ)) to a few ulps of 1 (its scale), for logits of both signs
    far into the tails."""
    from minivae.layers import sigmoid, softplus

    x = (be64.uniform((9, 13)) < 0.4).astype(be64.dtype)
    logits = 30 * be64.standard_normal((9, 13))  # wide range, both signs
    lik = Bernoulli(be64)
    w = be64.standard_normal((9,))
    got_lp, got_grad = lik.log_prob(x, logits), lik.backward(w)
    xp = be64.xp
    ref_lp = (x * logits - softplus(logits, xp)).sum(axis=1)
    ref_grad = w[:, None] * (x - sigmoid(logits, xp))
    # the library's formula, with its fast twin set aside, is that expression exactly
    with fast.formulas_only():
        np.testing.assert_array_equal(to_np(lik.backward(w)), to_np(ref_grad))
        np.testing.assert_allclose(to_np(lik.log_prob(x, logits)), to_np(ref_lp), rtol=1e-14)
    np.testing.assert_allclose(to_np(got_lp), to_np(ref_lp), rtol=1e-14, atol=0)
    ulps = np.abs(to_np(got_grad - ref_grad)) / (np.abs(to_np(w))[:, None] * np.finfo(np.float64).eps)
    assert ulps.max() <= 4, ulps.max()
    # A wrong identity (σ = ½ + tanh(ℓ/2), say) is off by far more than that.
    assert np.abs(to_np(ref_grad)).max() > 0.1


def test_bernoulli_backward_can_be_called_twice(be64):
    """backward builds its result in a new array: the cache stays intact for a second call."""
    x = (be64.uniform((3, 5)) < 0.5).astype(be64.dtype)
    lik = Bernoulli(be64)
    lik.log_prob(x, be64.standard_normal((3, 5)))
    w = be64.standard_normal((3,))
    first = to_np(lik.backward(w)).copy()
    np.testing.assert_array_equal(to_np(lik.backward(w)), first)
