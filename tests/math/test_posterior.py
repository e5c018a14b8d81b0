"""The full-covariance posterior q(z|x) = N(μ, L Lᵀ): its KL, its sampling and its gradients."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from conftest import to_np
from minivae.training.checkpoint import load_model, save_checkpoint
from minivae.gradcheck import check_gradients, check_model, check_objective
from minivae.kl import kl_mvn_tril, kl_mvn_tril_std, kl_mvn_tril_std_grad, kl_normal_std
from minivae.likelihoods import Gaussian
from minivae.models.iwae import IWAEObjective
from minivae.models.posterior import TRIL_SCALE, Posterior
from minivae.models.vae import VAE
from minivae.training.train import VAEConfig, train_vae

TOL = 1e-6


def _full(be, likelihood="bernoulli", latent=3):
    lik = Gaussian(logvar=-0.5, learn_logvar=True, backend=be) if likelihood == "gaussian" \
        else likelihood
    model = VAE(6, (5,), latent, "tanh", likelihood=lik, backend=be, posterior="full")
    for name in ("tril_head.W", "tril_head.b"):       # it starts at zero: give T some lean
        p = model.params[name]
        p[...] = 0.5 / TRIL_SCALE * be.standard_normal(p.shape)
    return model


def _binary(be, n=7):
    return (be.uniform((n, 6)) < 0.5).astype(be.dtype)


@given(st.integers(1, 5), st.integers(0, 2 ** 31 - 1))
def test_kl_to_the_standard_normal_is_kl_mvn_tril_with_the_identity(d, seed):
    rng = np.random.default_rng(seed)
    mu = rng.normal(size=(3, d))
    L = np.tril(rng.normal(size=(3, d, d)))
    L[:, np.arange(d), np.arange(d)] = np.exp(rng.normal(size=(3, d)))
    np.testing.assert_allclose(kl_mvn_tril_std(mu, L), kl_mvn_tril(mu, L, np.zeros(d), np.eye(d)),
                               rtol=1e-10, atol=1e-12)
    dmu, dL = kl_mvn_tril_std_grad(mu, L)
    errors = check_gradients(lambda: float(kl_mvn_tril_std(mu, L).sum()), {"mu": mu, "L": L},
                             {"mu": dmu, "L": dL})
    assert max(errors.values()) < TOL, errors
    # with no entries below the diagonal it is the diagonal Gaussian's KL
    D = np.triu(np.tril(L))
    logvar = 2 * np.log(np.abs(D[:, np.arange(d), np.arange(d)]))
    np.testing.assert_allclose(kl_mvn_tril_std(mu, D), kl_normal_std(mu, logvar), rtol=1e-12)


def test_samples_have_covariance_L_Lt_and_the_stated_density(be64):
    rng = np.random.default_rng(1)
    mu, logvar, tril = rng.normal(size=(1, 3)), rng.normal(size=(1, 3)), rng.normal(size=(1, 3))
    q = Posterior(*(be64.to_device(a) for a in (mu, logvar, tril)))
    L = to_np(q.scale_tril())[0]
    assert np.allclose(L, np.tril(L)) and np.allclose(np.diag(L), np.exp(0.5 * logvar[0]))
    eps = be64.standard_normal((1, 200000, 3))
    z = to_np(q.sample(eps))[0]
    cov = L @ L.T
    np.testing.assert_allclose(np.cov(z.T), cov, atol=0.03 * np.abs(cov).max())
    np.testing.assert_allclose(z.mean(axis=0), mu[0], atol=0.02 * np.sqrt(cov.diagonal().max()))
    ref = stats.multivariate_normal(mu[0], cov).logpdf(z[:50])
    np.testing.assert_allclose(to_np(q.log_prob_of_eps(eps))[0, :50], ref, rtol=1e-10)
    # one draw per example (2-D ε) is the same map
    np.testing.assert_allclose(to_np(q.sample(eps[:, 0]))[0], z[0], rtol=1e-14)


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
@pytest.mark.parametrize("beta", [1.0, 0.3])
def test_full_posterior_vae_gradient_matches_central_differences(be64, likelihood, beta):
    model = _full(be64, likelihood)
    assert "tril_head.W" in model.params and model.params["tril_head.W"].shape == (5, 3)
    errors = check_model(model, _binary(be64), be64.standard_normal((7, 3)), beta=beta)
    assert max(errors.values()) < TOL, errors


def test_leaving_out_T_eps_from_the_sample_is_caught(be64, monkeypatch):
    """The check has teeth: z = μ + σε (dropping Tε) while backward keeps ∂z/∂T."""
    model = _full(be64)
    monkeypatch.setattr(Posterior, "sample", lambda self, eps: self.mu + self.std * eps)
    errors = check_model(model, _binary(be64), be64.standard_normal((7, 3)))
    assert errors["tril_head.W"] > 1e-3


@pytest.mark.parametrize("k", [1, 3])
def test_iwae_gradient_with_a_full_posterior(be64, k):
    model = _full(be64)
    x, eps = _binary(be64), be64.standard_normal((7, k, 3))
    errors = check_objective(IWAEObjective(model, k), x, eps)
    assert max(errors.values()) < TOL, errors


def test_a_full_posterior_with_T_zero_is_the_diagonal_vae(be64):
    """Zero the T head and the full model scores exactly what its diagonal twin scores."""
    full = _full(be64)
    diag = VAE(6, (5,), 3, "tanh", backend=be64)
    for k in diag.params:
        diag.params[k][...] = full.params[k]
    full.params["tril_head.W"][...] = 0
    full.params["tril_head.b"][...] = 0
    x, eps = _binary(be64), be64.standard_normal((7, 3))
    a, b = full.forward(x, eps=eps), diag.forward(x, eps=eps)
    np.testing.assert_allclose(to_np(a.recon), to_np(b.recon), rtol=1e-14)
    np.testing.assert_allclose(to_np(a.kl), to_np(b.kl), rtol=1e-12)


def test_the_full_posterior_starts_as_the_diagonal_one(be64):
    model = VAE(6, (5,), 3, backend=be64, posterior="full")
    assert all(float(abs(to_np(p)).max()) == 0 for k, p in model.params.items()
               if k.startswith("tril_head"))
    # and it draws nothing for it: the other weights are those of the diagonal model
    diag = VAE(6, (5,), 3, backend=type(be64)(be64.name, "float64", seed=1234))
    for k in diag.params:
        np.testing.assert_array_equal(to_np(model.params[k]), to_np(diag.params[k]))


def test_full_posterior_checks_and_round_trip(tmp_path, be64):
    with pytest.raises(ValueError, match="latent_dim ≥ 2"):
        VAE(6, (5,), 1, backend=be64, posterior="full")
    with pytest.raises(ValueError, match="posterior must be one of"):
        VAE(6, (5,), 2, backend=be64, posterior="tilted")
    model = _full(be64)
    save_checkpoint(tmp_path / "full.npz", model)
    again = load_model(tmp_path / "full.npz", backend=be64)
    assert again.posterior_family == "full"
    x, eps = _binary(be64), be64.standard_normal((7, 3))
    np.testing.assert_array_equal(to_np(again.forward(x, eps=eps).kl),
                                  to_np(model.forward(x, eps=eps).kl))


def test_training_with_a_full_posterior(small_digits):
    m, model = train_vae(VAEConfig(epochs=3, hidden=(64,), latent_dim=4, posterior="full",
                                     progress=False, out=None, iw_samples=20),
                         dataset=small_digits, return_model=True)
    h = m["history"]
    assert h[-1]["train_neg_elbo"] < h[0]["train_neg_elbo"] - 20
    assert np.isfinite(m["test"]["iw_nll"]) and m["test"]["iw_nll"] < m["test"]["neg_elbo"]
    assert float(np.abs(to_np(model.params["tril_head.W"])).max()) > 0


@pytest.mark.parametrize("mu,L,message", [
    (np.zeros(3), np.eye(2), "same d"),
    (np.zeros((2, 3)), np.eye(3)[None, :, :2], "same d"),
    (np.zeros(2), np.diag([1.0, 0.0]), "zero on its diagonal"),
    (np.zeros(2), np.array([[1.0, 0.0], [np.nan, 1.0]]), "finite"),
    (np.zeros(2, dtype=complex), np.eye(2), "real numbers"),
])
def test_kl_to_the_standard_normal_rejects_bad_factors(mu, L, message):
    for f in (kl_mvn_tril_std, kl_mvn_tril_std_grad):
        with pytest.raises(ValueError, match=message):
            f(mu, L)
