r"""The KL family against numerical integration, and the lecture's properties, by hypothesis (float64).

Every closed form in minivae/kl.py and minivae/kl_mvn.py is compared with a reference computed along an
independent path: explicit sums for probability vectors, ``scipy.integrate.quad``
(1-D) and ``dblquad`` (2-D) of p·log(p/q) with densities written from the textbook
formula (explicit inverse and ``slogdet``, the reference may use them), and Monte
Carlo with ``scipy.stats.multivariate_normal`` for d = 3 … 6.

Tolerances, and where each comes from:

* quad / dblquad: the integrals are requested to 1e-10 (absolute and relative);
  the test allows 10 × the integrator's own error estimate + 1e-8·max(1, |KL|).
  A wrong closed form is off by O(1) (a dropped −d shifts KL by d/2).
* Monte Carlo: KL = E_p[log p − log q] estimated from N = 20,000 draws; the
  test allows 5 standard errors (sample std / √N).  log p − log q is a quadratic
  form in a Gaussian vector (all moments finite), so the CLT applies and a
  correct formula fails with probability ≈ 6e-7 per example.
* Identities between closed forms (additivity, invariance, special cases):
  float64 rounding, relative 1e-9 (1e-7 after an affine map, whose condition
  number enters squared).

The number of examples follows the hypothesis profile (conftest.py): 40 by default,
500 with MINIVAE_HYPOTHESIS_PROFILE=thorough.  The dblquad test runs a quarter of
them (each example is a few tenths of a second).
"""

import math

import numpy as np
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from scipy import integrate, stats

from minivae.gradcheck import numerical_gradient
from minivae.kl import (kl_categorical, kl_mvn, kl_mvn_tril, kl_mvn_tril_grad, kl_normal_diag,
                        kl_normal_diag_grad, kl_normal_std)

F64 = np.float64
FINITE = dict(allow_nan=False, allow_infinity=False, allow_subnormal=False)
EXAMPLES = settings().max_examples            # the loaded profile's count

# --------------------------------------------------------------------------
# Strategies
# --------------------------------------------------------------------------

batch_shapes = st.sampled_from([(), (1,), (3,), (2, 2)])


def vectors(shape, lo=-3.0, hi=3.0):
    return arrays(F64, shape, elements=st.floats(lo, hi, **FINITE))


@st.composite
def spd_matrices(draw, d, batch=()):
    r"""Σ = s·(A Aᵀ + δ I): A is d×r with r ≤ d (rank-deficient A leans on δ), δ ∈ [0.01, 1],
    scale s ∈ [0.1, 10]: eigenvalues from 0.001 to ~1500, condition numbers up to ~1e4."""
    r = draw(st.integers(1, d))
    A = draw(vectors(batch + (d, r), -2.0, 2.0))
    delta = 10.0 ** draw(st.floats(-2, 0))
    scale = 10.0 ** draw(st.floats(-1, 1))
    S = scale * (A @ np.swapaxes(A, -1, -2) + delta * np.eye(d))
    return 0.5 * (S + np.swapaxes(S, -1, -2))


@st.composite
def gaussian_pairs(draw, dims=st.integers(1, 6), batch=batch_shapes):
    """(mu1, cov1, mu2, cov2) of one dimension d and one batch shape."""
    d, b = draw(dims), draw(batch)
    return (draw(vectors(b + (d,))), draw(spd_matrices(d, b)),
            draw(vectors(b + (d,))), draw(spd_matrices(d, b)))


logvars = st.floats(-4, 3, **FINITE)
diag_params = st.integers(1, 6).flatmap(lambda d: st.tuples(
    vectors((d,)), arrays(F64, (d,), elements=logvars),
    vectors((d,)), arrays(F64, (d,), elements=logvars)))


@st.composite
def probability_pairs(draw, max_n=8):
    """(p, q), p with exact zeros allowed, q > 0 wherever p > 0 (finite KL) and zero
    in some places where p is zero."""
    n = draw(st.integers(1, max_n))
    w = draw(arrays(F64, n, elements=st.floats(0, 1, **FINITE)))   # shrinks towards exact 0
    if w.sum() == 0:
        w[draw(st.integers(0, n - 1))] = 1.0
    p = w / w.sum()
    v = draw(arrays(F64, n, elements=st.floats(1e-3, 1, **FINITE)))
    v[draw(arrays(bool, n)) & (p == 0)] = 0.0
    return p, v / v.sum()


def seeds():
    return st.integers(0, 2**32 - 1)


def random_gaussian(rng, d):
    """A generic (almost surely non-degenerate, non-special) normal: mean and SPD covariance."""
    A = rng.standard_normal((d, d))
    return rng.standard_normal(d), A @ A.T + 0.1 * np.eye(d)


# --------------------------------------------------------------------------
# References on an independent path
# --------------------------------------------------------------------------

def categorical_by_sum(p, q):
    """Σ_x p log(p/q) term by term in Python floats, with 0·log(0/q) = 0 and p·log(p/0) = ∞."""
    terms = []
    for pi, qi in zip(p.tolist(), q.tolist()):
        if pi > 0:
            terms.append(math.inf if qi == 0 else pi * math.log(pi / qi))
    return math.fsum(terms)


def normal_1d_by_quad(m1, v1, m2, v2):
    """∫ p log(p/q) for p = N(m1, v1), q = N(m2, v2) by adaptive quadrature over ±40 sd of p."""
    s1 = math.sqrt(v1)

    def f(x):
        lp = -0.5 * (math.log(2 * math.pi * v1) + (x - m1) ** 2 / v1)
        lq = -0.5 * (math.log(2 * math.pi * v2) + (x - m2) ** 2 / v2)
        return math.exp(lp) * (lp - lq)

    return integrate.quad(f, m1 - 40 * s1, m1 + 40 * s1, points=[m1], limit=200,
                          epsabs=1e-10, epsrel=1e-10)


def textbook_logpdf(m, S):
    """log N(x; m, S) from the lecture's density with an explicit inverse (reference only)."""
    d = len(m)
    P = np.linalg.inv(S)
    c = -0.5 * (d * math.log(2 * math.pi) + np.linalg.slogdet(S)[1])
    return lambda x: c - 0.5 * float((x - m) @ P @ (x - m))


def normal_2d_by_dblquad(m1, S1, m2, S2):
    r"""∫∫ p log(p/q) for 2-D normals, by ``dblquad``.

    Substituting x = m1 + C u with C Cᵀ = S1 (dx = |C| du, p(x)|C| = φ(u), the standard
    normal density) turns p's elongated ridge into a round bump, so a square
    u ∈ [−10, 10]² holds all but ~1e-23 of the mass.
    """
    C = np.linalg.cholesky(S1)
    log_p, log_q = textbook_logpdf(m1, S1), textbook_logpdf(m2, S2)

    def f(u2, u1):
        x = m1 + C @ np.array([u1, u2])
        return math.exp(-0.5 * (u1 * u1 + u2 * u2)) / (2 * math.pi) * (log_p(x) - log_q(x))

    return integrate.dblquad(f, -10, 10, -10, 10, epsabs=1e-10, epsrel=1e-10)


def close_to_integral(closed, value, err):
    return abs(closed - value) <= 10 * err + 1e-8 * max(1.0, abs(value))


# --------------------------------------------------------------------------
# Closed form = numerical integration
# --------------------------------------------------------------------------

@given(probability_pairs(), batch_shapes)
def test_categorical_equals_the_explicit_sum(pq, batch):
    p, q = pq
    P, Q = np.broadcast_to(p, batch + p.shape), np.broadcast_to(q, batch + q.shape)
    got = kl_categorical(P, Q)
    assert got.shape == batch
    np.testing.assert_allclose(got, categorical_by_sum(p, q), rtol=1e-12, atol=1e-15)


@given(probability_pairs(), st.data())
def test_categorical_is_infinite_where_q_misses_the_support_of_p(pq, data):
    p, q = pq
    assume(len(p) > 1)                      # with one outcome, q cannot miss it
    i = data.draw(st.sampled_from(np.flatnonzero(p > 0).tolist()))
    q = q.copy()
    q[i] = 0.0
    if q.sum() == 0:
        q[(i + 1) % len(q)] = 1.0          # keep q a distribution
    q /= q.sum()
    assert kl_categorical(p, q) == math.inf == categorical_by_sum(p, q)


@given(st.floats(-3, 3), logvars, st.floats(-3, 3), logvars)
def test_normal_1d_equals_quad(m1, lv1, m2, lv2):
    value, err = normal_1d_by_quad(m1, math.exp(lv1), m2, math.exp(lv2))
    diag = float(kl_normal_diag(np.array([m1]), np.array([lv1]), np.array([m2]), np.array([lv2])))
    full = float(kl_mvn(np.array([m1]), np.array([[math.exp(lv1)]]),
                        np.array([m2]), np.array([[math.exp(lv2)]])))
    assert close_to_integral(diag, value, err), (diag, value, err)
    assert close_to_integral(full, value, err), (full, value, err)


@settings(max_examples=max(5, EXAMPLES // 4))
@given(gaussian_pairs(dims=st.just(2), batch=st.just(())))
def test_mvn_2d_full_covariance_equals_dblquad(pair):
    m1, S1, m2, S2 = pair
    value, err = normal_2d_by_dblquad(m1, S1, m2, S2)
    closed = float(kl_mvn(m1, S1, m2, S2))
    assert close_to_integral(closed, value, err), (closed, value, err)


@given(gaussian_pairs(dims=st.integers(3, 6), batch=st.just(())), seeds())
def test_mvn_d3_to_6_equals_monte_carlo_within_5_standard_errors(pair, seed):
    m1, S1, m2, S2 = pair
    n = 20_000
    x = np.random.default_rng(seed).multivariate_normal(m1, S1, size=n, method="cholesky")
    log_ratio = (stats.multivariate_normal(m1, S1).logpdf(x)
                 - stats.multivariate_normal(m2, S2).logpdf(x))
    estimate, se = log_ratio.mean(), log_ratio.std(ddof=1) / math.sqrt(n)
    closed = float(kl_mvn(m1, S1, m2, S2))
    assert abs(closed - estimate) <= 5 * se + 1e-9 * max(1.0, abs(closed)), (closed, estimate, se)


# --------------------------------------------------------------------------
# Properties
# --------------------------------------------------------------------------

@given(probability_pairs())
def test_categorical_nonnegative_and_zero_on_itself(pq):
    p, q = pq
    assert kl_categorical(p, q) >= -1e-15
    assert kl_categorical(q, q) == 0 and kl_categorical(p, p) == 0


@given(diag_params)
def test_normal_diag_nonnegative_and_zero_on_itself(params):
    m1, lv1, m2, lv2 = params
    assert kl_normal_diag(m1, lv1, m2, lv2) >= -1e-12
    assert kl_normal_diag(m1, lv1, m1, lv1) == 0


@given(gaussian_pairs())
def test_mvn_nonnegative_and_zero_on_itself(pair):
    m1, S1, m2, S2 = pair
    assert np.all(kl_mvn(m1, S1, m2, S2) >= -1e-12)
    np.testing.assert_allclose(kl_mvn(m1, S1, m1, S1), 0, atol=1e-12)
    np.testing.assert_allclose(kl_mvn(m2, S2, m2, S2), 0, atol=1e-12)


@given(seeds(), st.integers(1, 6))
def test_generic_pairs_are_asymmetric(seed, d):
    """For pairs drawn from a continuous distribution, KL(p‖q) ≠ KL(q‖p) almost surely.

    (Special pairs are symmetric: equal covariances give ½ δᵀΣ⁻¹δ both ways.  The
    explicit asymmetric pairs are in test_kl_family.py.)
    """
    rng = np.random.default_rng(seed)
    (m1, S1), (m2, S2) = random_gaussian(rng, d), random_gaussian(rng, d)
    forward, backward = float(kl_mvn(m1, S1, m2, S2)), float(kl_mvn(m2, S2, m1, S1))
    assert abs(forward - backward) > 1e-9 * (forward + backward)
    p, q = rng.dirichlet(np.ones(d + 1)), rng.dirichlet(np.ones(d + 1))
    assert kl_categorical(p, q) != kl_categorical(q, p)


@given(diag_params)
def test_diagonal_kl_is_the_sum_of_one_dimensional_terms(params):
    m1, lv1, m2, lv2 = params
    one_d = [float(kl_mvn(m1[j:j + 1], np.exp(lv1[j:j + 1])[:, None],
                          m2[j:j + 1], np.exp(lv2[j:j + 1])[:, None])) for j in range(len(m1))]
    assert float(kl_normal_diag(m1, lv1, m2, lv2)) == pytest.approx(math.fsum(one_d), rel=1e-9,
                                                                      abs=1e-12)


@given(gaussian_pairs(dims=st.integers(1, 3), batch=st.just(())),
       gaussian_pairs(dims=st.integers(1, 3), batch=st.just(())))
def test_block_diagonal_kl_is_the_sum_of_the_blocks(a, b):
    (ma1, Sa1, ma2, Sa2), (mb1, Sb1, mb2, Sb2) = a, b

    def block(X, Y):
        Z = np.zeros((len(X) + len(Y),) * 2)
        Z[:len(X), :len(X)], Z[len(X):, len(X):] = X, Y
        return Z

    joint = float(kl_mvn(np.r_[ma1, mb1], block(Sa1, Sb1), np.r_[ma2, mb2], block(Sa2, Sb2)))
    parts = float(kl_mvn(ma1, Sa1, ma2, Sa2)) + float(kl_mvn(mb1, Sb1, mb2, Sb2))
    assert joint == pytest.approx(parts, rel=1e-9, abs=1e-12)


@given(probability_pairs(max_n=5), probability_pairs(max_n=5))
def test_categorical_of_independent_pairs_is_the_sum(a, b):
    """P(x, y) = P₁(x) P₂(y), Q likewise: KL(P ‖ Q) = KL(P₁ ‖ Q₁) + KL(P₂ ‖ Q₂)."""
    (p1, q1), (p2, q2) = a, b
    joint = float(kl_categorical(np.outer(p1, p2).ravel(), np.outer(q1, q2).ravel()))
    assert joint == pytest.approx(float(kl_categorical(p1, q1) + kl_categorical(p2, q2)),
                                  rel=1e-9, abs=1e-14)


@given(gaussian_pairs(batch=st.just(())), st.data())
def test_invariant_under_the_same_invertible_affine_map(pair, data):
    r"""y = A x + b maps N(μ, Σ) to N(Aμ + b, AΣAᵀ) and leaves KL unchanged.

    A = U + (‖U‖₂ + ½) I has every singular value ≥ ½, so cond(A) ≤ 4‖U‖₂ + 2.
    """
    m1, S1, m2, S2 = pair
    d = len(m1)
    U = data.draw(vectors((d, d), -2.0, 2.0))
    A = U + (np.linalg.norm(U, 2) + 0.5) * np.eye(d)
    b = data.draw(vectors((d,)))
    T1, T2 = A @ S1 @ A.T, A @ S2 @ A.T
    mapped = kl_mvn(A @ m1 + b, 0.5 * (T1 + T1.T), A @ m2 + b, 0.5 * (T2 + T2.T))
    np.testing.assert_allclose(mapped, kl_mvn(m1, S1, m2, S2), rtol=1e-7, atol=1e-9)


@given(probability_pairs(), st.randoms(use_true_random=False))
def test_categorical_invariant_under_relabelling_outcomes(pq, rnd):
    """The discrete counterpart of an invertible map: a permutation of the outcomes."""
    p, q = pq
    perm = list(range(len(p)))
    rnd.shuffle(perm)
    assert float(kl_categorical(p[perm], q[perm])) == pytest.approx(float(kl_categorical(p, q)),
                                                                    rel=1e-12, abs=1e-15)


@given(diag_params, batch_shapes)
def test_mvn_with_diagonal_covariances_is_kl_normal_diag(params, batch):
    m1, lv1, m2, lv2 = (np.broadcast_to(a, batch + a.shape) for a in params)
    full = kl_mvn(m1, np.exp(lv1)[..., None] * np.eye(m1.shape[-1]),
                  m2, np.exp(lv2)[..., None] * np.eye(m1.shape[-1]))
    np.testing.assert_allclose(full, kl_normal_diag(m1, lv1, m2, lv2), rtol=1e-10, atol=1e-12)


@given(diag_params)
def test_against_the_standard_normal_it_is_kl_normal_std(params):
    mu, lv, _, _ = params
    d = len(mu)
    expected = float(kl_normal_std(mu, lv))
    assert float(kl_normal_diag(mu, lv, np.zeros(d), np.zeros(d))) == pytest.approx(
        expected, rel=1e-12, abs=1e-14)
    assert float(kl_mvn(mu, np.diag(np.exp(lv)), np.zeros(d), np.eye(d))) == pytest.approx(
        expected, rel=1e-10, abs=1e-12)


@given(gaussian_pairs())
def test_kl_mvn_tril_on_cholesky_factors_is_kl_mvn(pair):
    m1, S1, m2, S2 = pair
    np.testing.assert_allclose(kl_mvn_tril(m1, np.linalg.cholesky(S1), m2, np.linalg.cholesky(S2)),
                               kl_mvn(m1, S1, m2, S2), rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------
# Gradients against central differences
# --------------------------------------------------------------------------

H = 1e-6                          # the central-difference step
ROUNDINGS = 8                     # roundings per term of the KL sum (see below)


def assert_gradient_close(analytic, f, x, scale, name):
    r"""``analytic`` against central differences of the scalar ``f()`` in ``x``, within their error.

    The central difference D_h = [f(x + h) − f(x − h)] / 2h errs, per entry, by::

        D_h − f' = h² f‴/6 + O(h⁴)            truncation
                 + (δ₊ − δ₋) / 2h             rounding, |δ±| ≤ δ (the error in evaluating f)

    A fixed allowance fails on correct code at both ends.  Truncation: at
    cov [[0.001]] (L = 0.0316), −log L alone has f‴ = −2/L³, so h² f‴/6 =
    1.05e-8 where the true gradient is 0 (p = q).  Rounding: at |f| ≈ 130 one
    ulp of f over 2h is 1.4e-8.  So both are estimated.  Truncation by step
    doubling (Richardson): D_2h − D_h = 3 h² f‴/6 + O(h⁴) + rounding of at most
    δ/h + δ/2h, which gives, to O(h⁴),::

        |D_h − f'| ≤ |D_2h − D_h| / 3 + 1.5 δ / h

    Rounding: f is a sum of terms (log-determinants, d, the trace, the
    quadratic form) whose magnitudes add up to at most ``scale`` =
    Σ_examples (|KL| + d + |log|Σ₁|| + |log|Σ₂||) (the trace and the quadratic
    form sum to 2 KL + d + log|Σ₁| − log|Σ₂|), each computed with a handful of
    roundings (n ≈ 2d ≤ 8 for d ≤ 4), so δ = 8 ε · scale.  A wrong gradient is
    off by the size of the gradient itself, far above this bound.
    """
    numeric = numerical_gradient(f, x, H)
    doubled = numerical_gradient(f, x, 2 * H)
    bound = np.abs(doubled - numeric) / 3 + 1.5 * ROUNDINGS * np.finfo(F64).eps * scale / H
    excess = np.abs(analytic - numeric) - bound
    assert np.all(excess <= 0), (name, float(np.abs(analytic - numeric).max()),
                                 float(bound.ravel()[np.argmax(excess)]))


def kl_term_scale(kl, d, logdet1, logdet2):
    """Σ over examples of |KL| + d + |log|Σ₁|| + |log|Σ₂||: a bound on the KL sum's terms."""
    return float((np.abs(kl) + d + np.abs(logdet1) + np.abs(logdet2)).sum())


@given(diag_params)
def test_kl_normal_diag_gradients_match_central_differences(params):
    args = [a.copy() for a in params]
    grads = kl_normal_diag_grad(*args)
    f = lambda: float(kl_normal_diag(*args).sum())  # noqa: E731
    scale = kl_term_scale(kl_normal_diag(*args), args[0].shape[-1], args[1].sum(-1),
                          args[3].sum(-1))
    for name, x, g in zip(("mu1", "logvar1", "mu2", "logvar2"), args, grads):
        assert_gradient_close(g, f, x, scale, name)


def kl_of_lower_triangle(args, k):
    """``(f, theta)``: the summed KL as a function of the lower triangle θ of ``args[k]`` (an L)."""
    rows, cols = np.tril_indices(args[k].shape[-1])
    theta = args[k][..., rows, cols].copy()

    def f():
        L = np.zeros_like(args[k])
        L[..., rows, cols] = theta
        return float(kl_mvn_tril(*args[:k], L, *args[k + 1:]).sum())

    return f, theta, (rows, cols)


def mvn_term_scale(args):
    d = args[0].shape[-1]
    logdets = [2 * np.log(np.abs(np.diagonal(L, axis1=-2, axis2=-1))).sum(-1)
               for L in (args[1], args[3])]
    return kl_term_scale(kl_mvn_tril(*args), d, *logdets)


@given(gaussian_pairs(dims=st.integers(1, 4), batch=st.sampled_from([(), (2,)])))
def test_kl_mvn_tril_gradients_match_central_differences(pair):
    r"""∂KL/∂μ₁, ∂KL/∂L₁, ∂KL/∂μ₂, ∂KL/∂L₂ against central differences, the L's
    perturbed only in their lower triangles (the free parameters of a Cholesky factor)."""
    m1, S1, m2, S2 = pair
    args = [m1.copy(), np.linalg.cholesky(S1), m2.copy(), np.linalg.cholesky(S2)]
    grads = kl_mvn_tril_grad(*args)
    scale = mvn_term_scale(args)
    for k, name in enumerate(("mu1", "L1", "mu2", "L2")):
        if name.startswith("mu"):
            f = lambda: float(kl_mvn_tril(*args).sum())  # noqa: E731
            assert_gradient_close(grads[k], f, args[k], scale, name)
            continue
        f, theta, tril = kl_of_lower_triangle(args, k)
        assert_gradient_close(grads[k][(..., *tril)], f, theta, scale, name)
        assert np.all(np.triu(grads[k], 1) == 0), f"{name}: entries above the diagonal"


def test_the_gradient_bound_holds_where_the_fixed_allowance_failed():
    """The two counterexamples of the old fixed 1e-8 allowance, both with ∂KL/∂L₁ = 0:
    truncation at cov [[0.001]], rounding at |KL| ≈ 130 (found by the thorough profile)."""
    tiny = [np.zeros(1), np.array([[np.sqrt(0.001)]]), np.zeros(1), np.array([[np.sqrt(0.001)]])]
    c = np.full((4, 4), 12.64911064) + np.diag(np.full(4, 0.04531584))
    big = [np.zeros((2, 4)), np.linalg.cholesky(np.stack([c, c])),
           np.array([[-2.0, 2, -2, -2], [-2, -2, -2, -2]]), np.linalg.cholesky(np.stack([c, c]))]
    for args in (tiny, big):
        grad = kl_mvn_tril_grad(*args)[1]
        f, theta, tril = kl_of_lower_triangle(args, 1)
        analytic = grad[(..., *tril)]
        if args is tiny:   # truncation h²/(3L³) = 1.05e-8: the old check failed here everywhere
            assert np.abs(numerical_gradient(f, theta) - analytic).max() > 1e-8
        assert_gradient_close(analytic, f, theta, mvn_term_scale(args), "L1")
