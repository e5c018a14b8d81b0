"""The KL family's API: worked values, the limits of the discrete formula, bad input, batching
and broadcasting, and CuPy against NumPy (skipped without a GPU)."""

import math
import warnings

import numpy as np
import pytest

from conftest import to_np
from minivae.backend import get_backend
from minivae.kl import (kl_categorical, kl_mvn, kl_mvn_tril, kl_mvn_tril_grad, kl_normal_diag,
                        kl_normal_diag_grad, kl_normal_std, kl_normal_std_grad)


def spd(rng, *shape, d):
    A = rng.standard_normal((*shape, d, d))
    return A @ np.swapaxes(A, -1, -2) + 0.1 * np.eye(d)


# --------------------------------------------------------------------------
# Worked values: the lecture's properties on explicit pairs
# --------------------------------------------------------------------------

def test_categorical_worked_pair_is_asymmetric():
    p, q = np.array([0.5, 0.5]), np.array([0.9, 0.1])
    forward = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)     # 0.5108…
    backward = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)    # 0.3681…
    assert float(kl_categorical(p, q)) == pytest.approx(forward, rel=1e-14)
    assert float(kl_categorical(q, p)) == pytest.approx(backward, rel=1e-14)
    assert forward - backward > 0.14


def test_normal_worked_pair_is_asymmetric():
    # KL(N(0,1) ‖ N(0,4)) = ½(log 4 − 1 + 1/4);  KL(N(0,4) ‖ N(0,1)) = ½(−log 4 − 1 + 4)
    one, four = np.array([[1.0]]), np.array([[4.0]])
    zero = np.zeros(1)
    assert float(kl_mvn(zero, one, zero, four)) == pytest.approx(0.5 * (math.log(4) - 0.75), rel=1e-14)
    assert float(kl_mvn(zero, four, zero, one)) == pytest.approx(0.5 * (3 - math.log(4)), rel=1e-14)
    assert float(kl_normal_diag(zero, zero, zero, np.log(4.0) + zero)) == pytest.approx(
        0.5 * (math.log(4) - 0.75), rel=1e-14)


def test_kl_mvn_matches_the_lecture_formula_evaluated_literally():
    """½[log|Σ₂|/|Σ₁| − d + tr(Σ₂⁻¹Σ₁) + (μ₂−μ₁)ᵀΣ₂⁻¹(μ₂−μ₁)] with det and inv, on one example."""
    rng = np.random.default_rng(0)
    d = 4
    m1, m2 = rng.standard_normal(d), rng.standard_normal(d)
    S1, S2 = spd(rng, d=d), spd(rng, d=d)
    inv2 = np.linalg.inv(S2)
    literal = 0.5 * (math.log(np.linalg.det(S2) / np.linalg.det(S1)) - d + np.trace(inv2 @ S1)
                     + (m2 - m1) @ inv2 @ (m2 - m1))
    assert float(kl_mvn(m1, S1, m2, S2)) == pytest.approx(literal, rel=1e-10)


def test_standard_normal_special_case_and_its_gradients_agree():
    rng = np.random.default_rng(1)
    mu, lv = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    zero = np.zeros(3)
    np.testing.assert_allclose(kl_normal_diag(mu, lv, zero, zero), kl_normal_std(mu, lv), rtol=1e-13)
    dmu1, dlv1, _, _ = kl_normal_diag_grad(mu, lv, zero, zero)
    dmu, dlv = kl_normal_std_grad(mu, lv)
    np.testing.assert_allclose(dmu1, dmu, rtol=1e-13)
    np.testing.assert_allclose(dlv1, dlv, rtol=1e-13)


# --------------------------------------------------------------------------
# The discrete formula: limits and validation
# --------------------------------------------------------------------------

def test_categorical_limits_without_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        # 0·log(0/q) = 0, also where q = 0
        one, half = np.array([1.0, 0.0]), np.array([0.5, 0.5])
        assert float(kl_categorical(one, half)) == pytest.approx(math.log(2))
        assert float(kl_categorical(np.array([1.0, 0.0]), np.array([1.0, 0.0]))) == 0.0
        # p > 0 where q = 0: infinite
        assert float(kl_categorical(np.array([0.5, 0.5]), np.array([1.0, 0.0]))) == math.inf


def test_categorical_axis_batch_and_integer_inputs():
    p = np.array([[0.2, 0.8], [1.0, 0.0], [0.5, 0.5]])
    q = np.array([0.5, 0.5])                              # broadcast against the batch
    expected = [0.2 * math.log(0.4) + 0.8 * math.log(1.6), math.log(2), 0.0]
    np.testing.assert_allclose(kl_categorical(p, q), expected, rtol=1e-13, atol=1e-16)
    np.testing.assert_allclose(kl_categorical(p.T, q[:, None], axis=0), expected,
                               rtol=1e-13, atol=1e-16)
    one_hot = np.array([0, 1])                            # integers are read as float64
    assert float(kl_categorical(one_hot, np.array([0.25, 0.75]))) == pytest.approx(math.log(4 / 3))


@pytest.mark.parametrize("p,q,match", [
    ([0.5, 0.6], [0.5, 0.5], r"^p must sum to 1 along axis -1 \(within 1e-06\); the worst sum is 1\.1"),
    ([0.5, 0.5], [0.2, 0.2], r"^q must sum to 1 .* the worst sum is 0\.4"),
    ([1.2, -0.2], [0.5, 0.5], r"^p must be a probability vector; it has a negative entry"),
    ([0.5, 0.5], [np.nan, 1.0], r"^q must be a probability vector; it contains NaN"),
    ([[0.5, 0.5], [0.3, 0.3]], [0.5, 0.5], r"worst sum is 0\.6"),
])
def test_categorical_rejects_what_is_not_a_distribution(p, q, match):
    with pytest.raises(ValueError, match=match):
        kl_categorical(np.array(p), np.array(q))


def test_categorical_tolerance_is_stated_and_adjustable():
    p, q = np.array([0.5, 0.5 + 1e-7]), np.array([0.5, 0.5])
    kl_categorical(p, q)                                     # within the default 1e-6
    with pytest.raises(ValueError, match="within 1e-08"):
        kl_categorical(p, q, atol=1e-8)


# --------------------------------------------------------------------------
# Full covariance: validation
# --------------------------------------------------------------------------

def test_kl_mvn_rejects_a_non_symmetric_covariance_by_name():
    m = np.zeros(2)
    bad = np.array([[1.0, 0.5], [0.0, 1.0]])
    with pytest.raises(ValueError, match=r"^cov1 must be symmetric"):
        kl_mvn(m, bad, m, np.eye(2))
    with pytest.raises(ValueError, match=r"^cov2 must be symmetric"):
        kl_mvn(m, np.eye(2), m, bad)


@pytest.mark.parametrize("bad", [np.array([[1.0, 2.0], [2.0, 1.0]]),      # indefinite
                                 np.array([[1.0, 1.0], [1.0, 1.0]]),      # singular
                                 -np.eye(2)])
def test_kl_mvn_rejects_a_covariance_that_is_not_positive_definite(bad):
    m = np.zeros(2)
    with pytest.raises(ValueError, match=r"^cov2 must be positive definite.*smallest eigenvalue"):
        kl_mvn(m, np.eye(2), m, bad)
    with pytest.raises(ValueError, match=r"^cov1 must be positive definite"):
        kl_mvn(m, np.stack([np.eye(2), bad]), m, np.eye(2))     # one bad matrix in a batch


def test_kl_mvn_rejects_nan_and_wrong_shapes():
    m = np.zeros(2)
    with pytest.raises(ValueError, match="cov1 .* NaN"):
        kl_mvn(m, np.array([[np.nan, 0], [0, 1]]), m, np.eye(2))
    with pytest.raises(ValueError, match=r"cov2 must have shape \(\.\.\., 2, 2\)"):
        kl_mvn(m, np.eye(2), m, np.eye(3))
    with pytest.raises(ValueError, match="mu2 must have last axis 2"):
        kl_mvn(m, np.eye(2), np.zeros(3), np.eye(2))
    with pytest.raises(ValueError, match="do not broadcast"):
        kl_mvn(np.zeros((3, 2)), np.eye(2), np.zeros((4, 2)), np.eye(2))


def test_kl_mvn_tril_checks_its_factors():
    m = np.zeros(2)
    with pytest.raises(ValueError, match=r"^C1 must be lower triangular"):
        kl_mvn_tril(m, np.array([[1.0, 0.3], [0.0, 1.0]]), m, np.eye(2))
    with pytest.raises(ValueError, match=r"^C2 has a zero on its diagonal"):
        kl_mvn_tril(m, np.eye(2), m, np.array([[1.0, 0.0], [0.5, 0.0]]))


def test_kl_mvn_tril_depends_on_L_only_through_L_Lt():
    """Flipping the sign of a column of L leaves L Lᵀ, and so the KL, unchanged."""
    rng = np.random.default_rng(2)
    S1, S2 = spd(rng, d=3), spd(rng, d=3)
    L1, L2 = np.linalg.cholesky(S1), np.linalg.cholesky(S2)
    m1, m2 = rng.standard_normal(3), rng.standard_normal(3)
    flipped = L1 * np.array([1.0, -1.0, 1.0])
    assert float(kl_mvn_tril(m1, flipped, m2, L2)) == pytest.approx(float(kl_mvn(m1, S1, m2, S2)),
                                                                    rel=1e-12)


# --------------------------------------------------------------------------
# Batching and broadcasting
# --------------------------------------------------------------------------

def test_one_prior_broadcasts_against_a_batch_of_posteriors():
    rng = np.random.default_rng(3)
    mu, S = rng.standard_normal((2, 5, 3)), spd(rng, 2, 5, d=3)
    prior_mu, prior_S = rng.standard_normal(3), spd(rng, d=3)
    kl = kl_mvn(mu, S, prior_mu, prior_S)
    assert kl.shape == (2, 5)
    one_by_one = [[float(kl_mvn(mu[i, j], S[i, j], prior_mu, prior_S)) for j in range(5)]
                  for i in range(2)]
    np.testing.assert_allclose(kl, one_by_one, rtol=1e-12)
    L, Lp = np.linalg.cholesky(S), np.linalg.cholesky(prior_S)
    grads = kl_mvn_tril_grad(mu, L, prior_mu, Lp)
    assert [g.shape for g in grads] == [(2, 5, 3), (2, 5, 3, 3), (2, 5, 3), (2, 5, 3, 3)]
    lv = S[..., 0]
    assert kl_normal_diag(mu, lv, np.zeros(3), np.zeros(())).shape == (2, 5)
    assert [g.shape for g in kl_normal_diag_grad(mu, lv, np.zeros(3), np.zeros(()))] == [(2, 5, 3)] * 4


def test_gradients_vanish_where_the_two_distributions_are_equal():
    rng = np.random.default_rng(4)
    m, L = rng.standard_normal(4), np.linalg.cholesky(spd(rng, d=4))
    for g in kl_mvn_tril_grad(m, L, m, L):
        np.testing.assert_allclose(g, 0, atol=1e-12)
    lv = rng.standard_normal(4)
    for g in kl_normal_diag_grad(m, lv, m, lv):
        np.testing.assert_allclose(g, 0, atol=1e-15)


def test_float32_inputs_stay_float32():
    rng = np.random.default_rng(5)
    m, S = rng.standard_normal(3).astype(np.float32), spd(rng, d=3).astype(np.float32)
    out = kl_mvn(m, S, np.zeros(3, np.float32), np.eye(3, dtype=np.float32))
    assert out.dtype == np.float32
    assert float(out) == pytest.approx(float(kl_mvn(m.astype(float), S.astype(float),
                                                    np.zeros(3), np.eye(3))), rel=1e-4)


# --------------------------------------------------------------------------
# Backends: the same numbers on CuPy (skips without a GPU)
# --------------------------------------------------------------------------

def test_every_kl_agrees_with_numpy_on_this_backend(backend_name):
    be = get_backend(backend_name, dtype="float64")
    dev = be.to_device
    rng = np.random.default_rng(6)
    m1, m2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    S1, S2 = spd(rng, 4, d=3), spd(rng, 4, d=3)
    L1, L2 = np.linalg.cholesky(S1), np.linalg.cholesky(S2)
    lv1, lv2 = rng.standard_normal((4, 3)), rng.standard_normal((4, 3))
    p, q = rng.dirichlet(np.ones(5), 4), rng.dirichlet(np.ones(5), 4)
    p[0, 1] = 0.0
    p[0] /= p[0].sum()
    q[1, 2] = 0.0
    q[1] /= q[1].sum()

    def same(got, want):
        got = got if isinstance(got, tuple) else (got,)
        want = want if isinstance(want, tuple) else (want,)
        for g, w in zip(got, want):
            assert type(g).__module__.split(".")[0] == backend_name
            np.testing.assert_allclose(to_np(g), w, rtol=1e-12, atol=1e-14)

    same(kl_categorical(dev(p), dev(q)), kl_categorical(p, q))
    same(kl_normal_std(dev(m1), dev(lv1)), kl_normal_std(m1, lv1))
    same(kl_normal_diag(dev(m1), dev(lv1), dev(m2), dev(lv2)), kl_normal_diag(m1, lv1, m2, lv2))
    same(kl_normal_diag_grad(dev(m1), dev(lv1), dev(m2), dev(lv2)),
         kl_normal_diag_grad(m1, lv1, m2, lv2))
    same(kl_mvn(dev(m1), dev(S1), dev(m2), dev(S2)), kl_mvn(m1, S1, m2, S2))
    same(kl_mvn_tril(dev(m1), dev(L1), dev(m2), dev(L2)), kl_mvn_tril(m1, L1, m2, L2))
    same(kl_mvn_tril_grad(dev(m1), dev(L1), dev(m2), dev(L2)), kl_mvn_tril_grad(m1, L1, m2, L2))
    with pytest.raises(ValueError, match="cov2 must be positive definite"):
        kl_mvn(dev(m1), dev(S1), dev(m2), dev(-S2))
