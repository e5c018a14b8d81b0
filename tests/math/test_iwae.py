"""The importance-weighted bound: its gradient against central differences, and what it bounds."""

import numpy as np
import pytest

from conftest import to_np
from minivae.evaluate import evaluate_elbo, iw_log_likelihood
from minivae.gradcheck import check_gradients, check_objective
from minivae.likelihoods import Gaussian
from minivae.models.iwae import IWAEObjective
from minivae.models.vae import VAE


def _model(be, likelihood="bernoulli"):
    lik = Gaussian(logvar=-0.7, learn_logvar=True, backend=be) if likelihood == "gaussian" \
        else likelihood
    return VAE(6, (5,), 3, "tanh", likelihood=lik, backend=be)


@pytest.mark.parametrize("k", [1, 4])
@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian"])
def test_iwae_gradient_matches_central_differences(be64, k, likelihood):
    model = _model(be64, likelihood)
    x = (be64.uniform((7, 6)) < 0.5).astype(be64.dtype)
    eps = be64.standard_normal((7, k, 3))
    objective = IWAEObjective(model, k)
    errors = check_objective(objective, x, eps)
    assert max(errors.values()) < 1e-6, errors
    analytic = {name: g.copy() for name, g in model.grads.items()}
    # and write_grads writes the same gradient
    model.for_training(check_values=True)
    objective.forward(x, eps=eps)
    objective.backward()
    for name, g in model.grads.items():
        np.testing.assert_allclose(to_np(g), to_np(analytic[name]), rtol=1e-12, atol=1e-14)


def test_a_gradient_without_the_prior_term_is_caught(be64, monkeypatch):
    """The gradient check has teeth: the prior's −z term left out fails it."""
    model = _model(be64)
    x = (be64.uniform((7, 6)) < 0.5).astype(be64.dtype)
    eps = be64.standard_normal((7, 3, 3))
    objective = IWAEObjective(model, 3)
    model.zero_grad()
    objective.forward(x, eps=eps)
    std, e, z, w = objective._cache
    objective._cache = (std, e, z * 0, w)            # as if the prior had no gradient
    objective.backward()
    analytic = {name: g.copy() for name, g in model.grads.items()}
    errors = check_gradients(lambda: objective.loss(x, eps=eps), model.params, analytic)
    assert max(errors.values()) > 1e-3


def test_the_bound_with_one_sample_is_the_elbo_on_average(be64):
    """L_1 = log p(x|z) + log p(z) − log q(z|x): its mean over ε is −(recon + analytic KL)."""
    model = _model(be64)
    x = (be64.uniform((4, 6)) < 0.5).astype(be64.dtype)
    draws = 20000
    xs = be64.xp.tile(x, (draws, 1))
    bound = to_np(IWAEObjective(model, 1).forward(xs).bound).reshape(draws, 4)
    elbo = -evaluate_elbo(model, xs)["neg_elbo"]
    se = bound.mean(axis=1).std() / np.sqrt(draws)
    assert abs(bound.mean() - elbo) < 5 * se + 1e-9, (bound.mean(), elbo, se)


def test_the_bound_rises_with_k_towards_log_p(be64):
    model = _model(be64)
    x = (be64.uniform((3, 6)) < 0.5).astype(be64.dtype)
    reps = 3000
    xs = be64.xp.tile(x, (reps, 1))
    means = [float(to_np(IWAEObjective(model, k).forward(xs).bound).mean()) for k in (1, 5, 50)]
    log_px = float(iw_log_likelihood(model, x, k=200000).mean())
    assert means[0] < means[1] < means[2] < log_px + 1e-3, (means, log_px)
    assert log_px - means[2] < 0.1 * (log_px - means[0])


def test_bad_k_and_eps_are_refused(be64):
    model = _model(be64)
    with pytest.raises(ValueError, match="k must be a positive integer"):
        IWAEObjective(model, 0)
    with pytest.raises(ValueError, match="eps must have shape"):
        IWAEObjective(model, 2).forward(be64.uniform((3, 6)), eps=be64.standard_normal((3, 3)))
    with pytest.raises(RuntimeError, match="before forward"):
        IWAEObjective(model, 2).backward()
