"""The VAE: the whole negative ELBO's gradient w.r.t. every parameter, and the conventions."""

import numpy as np
import pytest

from conftest import to_np
from minivae.backend import get_backend
from minivae.gradcheck import check_model
from minivae.kl import kl_normal_std
from minivae.likelihoods import Gaussian
from minivae.models.vae import VAE

TOL = 1e-6


def _binary(be, n=7, d=6):
    return (be.uniform((n, d)) < 0.5).astype(be.dtype)


@pytest.mark.parametrize("hidden,activation,likelihood,beta", [
    ((5,), "relu", "bernoulli", 1.0),
    ((5, 4), "tanh", "bernoulli", 1.0),
    ((4,), "softplus", "bernoulli", 0.3),
    ((5,), "leaky_relu", "gaussian", 1.0),
    ((5, 3), "sigmoid", "gaussian-learned", 2.0),
])
def test_whole_neg_elbo_gradient_matches_central_differences(be64, hidden, activation,
                                                              likelihood, beta):
    lik = Gaussian(logvar=-1.0, learn_logvar=True, backend=be64) \
        if likelihood == "gaussian-learned" else likelihood
    model = VAE(6, hidden, 3, activation, lik, backend=be64)
    x = _binary(be64) if likelihood == "bernoulli" else be64.uniform((7, 6))
    eps = be64.standard_normal((7, 3))
    errors = check_model(model, x, eps, beta=beta)
    assert len(errors) == len(model.params)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("likelihood", ["bernoulli", "gaussian-learned"])
def test_backward_writing_grads_equals_zero_grad_then_backward(be64, likelihood):
    """The training step writes the gradients (write_grads) instead of zeroing and adding."""
    lik = Gaussian(logvar=-1.0, learn_logvar=True, backend=be64) \
        if likelihood == "gaussian-learned" else likelihood
    model = VAE(6, (5, 4), 3, "relu", lik, backend=be64)
    x, eps = _binary(be64), be64.standard_normal((7, 3))
    model.forward(x, eps=eps)
    model.zero_grad()
    model.backward(beta=0.7)
    ref = {k: to_np(g).copy() for k, g in model.grads.items()}
    for g in model.grads.values():
        g.fill(float("nan"))
    model.for_training(check_values=True)
    assert model.likelihood.write_grads and model.encoder.layers[0].write_grads
    model.backward(beta=0.7)
    assert set(ref) == set(model.grads)
    for k, g in model.grads.items():
        np.testing.assert_allclose(to_np(g), ref[k], rtol=1e-13, atol=1e-300, err_msg=k)


def test_backward_uses_the_eps_drawn_in_forward(be64):
    """forward draws ε itself; backward must differentiate the loss at that very ε."""
    model = VAE(6, (5,), 3, "tanh", backend=be64)
    x = _binary(be64)
    model.zero_grad()
    o = model.forward(x)  # ε drawn inside
    model.backward()
    analytic = {k: g.copy() for k, g in model.grads.items()}
    eps_used = (o.z - o.mu) / be64.xp.exp(0.5 * o.logvar)
    errors = check_model(model, x, eps_used)
    assert max(errors.values()) <= TOL
    for k in analytic:
        np.testing.assert_allclose(to_np(analytic[k]), to_np(model.grads[k]), rtol=1e-10, atol=1e-12)


def test_a_second_eps_in_backward_is_caught(be64):
    """The gradient check fails if backward were to draw a fresh ε (a known bug in the field)."""
    model = VAE(6, (5,), 3, "tanh", backend=be64)
    x, eps = _binary(be64), be64.standard_normal((7, 3))
    forward = model.forward

    def forward_then_redraw(x, eps=None):
        out = forward(x, eps=eps)
        q, _ = model._cache
        model._cache = (q, be64.standard_normal(q.mu.shape))
        return out

    model.forward = forward_then_redraw
    errors = check_model(model, x, eps)
    assert errors["encoder.0.W"] > 1e-3 and errors["logvar_head.W"] > 1e-3


def test_fan_out_overwrite_instead_of_sum_is_caught(be64):
    """h feeds μ and logvar; dropping one head's gradient must fail the check."""
    model = VAE(6, (5,), 3, "tanh", backend=be64)
    logvar_backward = model.logvar_head.backward
    model.logvar_head.backward = lambda dy, **kw: 0 * logvar_backward(dy, **kw)
    errors = check_model(model, _binary(be64), be64.standard_normal((7, 3)))
    assert errors["encoder.0.W"] > 1e-3
    assert errors["decoder.0.W"] <= TOL


def test_terms_are_per_example_sums_and_the_loss_is_their_mean(be64):
    model = VAE(6, (5,), 3, "relu", backend=be64)
    x, eps = _binary(be64), be64.standard_normal((7, 3))
    o = model.forward(x, eps=eps)
    assert o.recon.shape == o.kl.shape == (7,)
    np.testing.assert_allclose(to_np(o.kl), to_np(kl_normal_std(o.mu, o.logvar)))
    assert model.loss(x, eps=eps) == pytest.approx(float(to_np(o.recon + o.kl).mean()), rel=1e-14)


def test_loss_and_gradients_do_not_depend_on_batch_size(be64):
    """Duplicating a batch leaves the mean loss and its gradient unchanged: the KL and the
    reconstruction are normalized by the same count (pytorch/examples #290 got this wrong)."""
    model = VAE(6, (5,), 3, "relu", backend=be64)
    x, eps = _binary(be64), be64.standard_normal((7, 3))
    xp = be64.xp
    grads = []
    for xb, eb in ((x, eps), (xp.concatenate([x, x]), xp.concatenate([eps, eps]))):
        model.zero_grad()
        model.forward(xb, eps=eb)
        model.backward()
        grads.append({k: to_np(g).copy() for k, g in model.grads.items()})
    for k in grads[0]:
        np.testing.assert_allclose(grads[1][k], grads[0][k], rtol=1e-10, atol=1e-13)


def test_z_has_mean_mu_and_variance_exp_logvar(be64):
    """z = μ + σ ε with σ = exp(½ logvar): the sample variance is exp(logvar), not exp(logvar)²
    (using exp(logvar) as σ is a known bug, keras #3283)."""
    model = VAE(6, (5,), 2, "tanh", backend=be64)
    model.logvar_head.params["b"][...] = be64.to_device([1.0, -1.0])  # σ² far from 1
    n = 40000
    o = model.forward(be64.xp.repeat(_binary(be64, n=1), n, axis=0))
    z, mu, var = to_np(o.z), to_np(o.mu[0]), np.exp(to_np(o.logvar[0]))
    se_mean = np.sqrt(var / n)
    se_var = var * np.sqrt(2 / (n - 1))
    assert np.all(np.abs(z.mean(axis=0) - mu) < 5 * se_mean)
    assert np.all(np.abs(z.var(axis=0, ddof=1) - var) < 5 * se_var)


def test_float32_end_to_end(be32):
    model = VAE(6, (5,), 3, backend=be32)
    o = model.forward(_binary(be32))
    model.backward()
    assert o.recon.dtype == o.kl.dtype == np.float32
    assert all(g.dtype == np.float32 for g in model.grads.values())


def test_sample_reconstruct_encode(be32):
    model = VAE(784, 16, 4, backend=be32)
    s = to_np(model.sample(5))
    assert s.shape == (5, 784) and s.min() >= 0 and s.max() <= 1
    x = (be32.uniform((3, 784)) < 0.3).astype(be32.dtype)
    assert to_np(model.reconstruct(x)).shape == (3, 784)
    assert to_np(model.reconstruct(x, sample_z=True)).shape == (3, 784)
    mu, logvar = model.encode(x)
    assert mu.shape == logvar.shape == (3, 4)
    assert model.reconstruct(to_np(x)).shape == (3, 784)  # host input is moved to the device


def test_bad_input_is_rejected_with_a_clear_message(be32):
    model = VAE(784, 16, 4, backend=be32)
    with pytest.raises(ValueError, match="x has 783 features per example, the model expects 784"):
        model.forward(np.zeros((2, 783)))
    with pytest.raises(ValueError, match="must be 2-D"):
        model.forward(np.zeros(784))
    bad = np.full((2, 784), 0.5)
    bad[0, 3] = np.nan
    with pytest.raises(ValueError, match="1 NaN and 0 Inf"):
        model.forward(bad)
    bad[0, 3] = np.inf
    with pytest.raises(ValueError, match="0 NaN and 1 Inf"):
        model.encode(bad)
    with pytest.raises(ValueError, match=r"Bernoulli likelihood needs pixels in \[0, 1\]"):
        model.forward(np.full((2, 784), 255.0))
    with pytest.raises(ValueError, match="eps must have shape"):
        model.forward(np.zeros((2, 784)), eps=be32.zeros((2, 5)))
    with pytest.raises(ValueError, match="latent_dim must be a positive integer"):
        VAE(784, 16, 0, backend=be32)
    with pytest.raises(ValueError, match="hidden width must be a positive integer"):
        VAE(784, (16, -1), 4, backend=be32)
    with pytest.raises(RuntimeError, match="before forward"):
        VAE(784, 16, 4, backend=be32).backward()


def test_gaussian_vae_accepts_data_outside_unit_interval(be32):
    model = VAE(5, 4, 2, likelihood="gaussian", backend=be32)
    assert np.isfinite(model.loss(3 * np.ones((2, 5))))


@pytest.mark.parametrize("hidden, d, posterior", [((5,), 3, "diagonal"), ((7, 4), 5, "full"),
                                                  (6, 2, "full")])
def test_dense_shapes_are_the_layers_the_constructor_builds(hidden, d, posterior):
    """What a run sizes itself by before it allocates is the model it then builds."""
    from minivae.layers import Dense
    from minivae.models.autoencoder import Autoencoder

    model = VAE(11, hidden, d, backend=get_backend("numpy"), posterior=posterior)
    built = [(l.n_in, l.n_out) for m in model.modules().values()
             for l in getattr(m, "layers", [m]) if isinstance(l, Dense)]
    assert VAE.dense_shapes(11, hidden, d, posterior) == built
    assert sum(i * o + o for i, o in built) == model.num_params()
    ae = Autoencoder(11, hidden, d, backend=get_backend("numpy"))
    assert sum(i * o + o for i, o in Autoencoder.dense_shapes(11, hidden, d)) == ae.num_params()
