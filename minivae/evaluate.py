r"""Evaluating a trained VAE on held-out data, in nats per example.

The test negative ELBO is estimated exactly as in training, with z *sampled*
from q(z|x) (one ε per example per pass, ``n_samples`` passes averaged):

    −ELBO(x) = E_{q(z|x)}[ −log p(x|z) ] + KL(q(z|x) ‖ p(z))  ≈  −log p(x|z_s) + KL

Plugging in z = μ instead would score the decoder at the posterior mean, which
is not a bound on −log p(x) and flatters the model; it is not done here.
"""

from __future__ import annotations

import numpy as np

from .data import DataError
from .numerics import log_normal_std, log_sum_exp
from .validation import positive_int

def _checked_rows(model, x):
    """``x`` through ``model.check_input``, and at least one row: a mean over none is no number.

    The evaluators check their data here, once (unless the model's ``check_values``
    is off: a trainer checked it already), and score it batch by batch inside
    ``model.values_checked()``.
    """
    x = model.check_input(x)
    if x.shape[0] == 0:
        raise DataError("x has no rows; an evaluation needs at least one example")
    return x


def evaluate_elbo(model, x, batch_size: int = 500, n_samples: int = 1) -> dict:
    """Mean ``neg_elbo``, ``recon`` (−log p(x|z)) and ``kl`` over the rows of ``x``.

    ``x`` is host or device data of shape (N, input_dim); it is processed in
    batches of ``batch_size`` and each example is scored ``n_samples`` times
    with fresh ε (averaged).  Returns Python floats in nats per example.
    """
    batch_size = positive_int("batch_size", batch_size)
    n_samples = positive_int("n_samples", n_samples)
    x = _checked_rows(model, x)
    recon_sum = kl_sum = 0.0
    with model.values_checked():                      # checked above, once
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            for _ in range(n_samples):
                o = model.forward(xb)
                recon_sum += float(o.recon.sum())
                kl_sum += float(o.kl.sum())
    n = x.shape[0] * n_samples
    return {"neg_elbo": (recon_sum + kl_sum) / n, "recon": recon_sum / n, "kl": kl_sum / n}


def iw_log_likelihood(model, x, k: int = 500, batch_size: int = 100, chunk: int = 100):
    r"""The importance-weighted estimate of log p(x) per example (the IWAE bound).

    With z_1 … z_k drawn independently from q(z|x) = N(μ, C Cᵀ) (C = diag σ for
    the diagonal posterior)::

        log p(x) ≥ L_k(x) = E[ log (1/k) Σ_i w_i ],   w_i = p(x|z_i) p(z_i) / q(z_i|x)

        log w_i = log p(x|z_i) + log N(z_i; 0, I) − log q(z_i|x)
        log q(z_i|x) = −½ Σ_j ( ε_ij² + logvar_j + log 2π ),  z_i = μ + C ε_i

    (log|det C| = ½ Σ_j logvar_j for either posterior: :mod:`minivae.models.posterior`).

    L_1 is the ELBO; L_k rises with k towards log p(x) (Burda et al. 2016).
    The mean is taken in log space with log-sum-exp, log Σ_i w_i =
    m + log Σ_i exp(log w_i − m) with m = max_i log w_i, so no w_i is ever
    exponentiated on its own.  The k samples are drawn ``chunk`` at a time and
    the running log-sum-exp is updated with ``logaddexp``, so memory is
    O(batch_size · chunk · D) whatever k is.

    Returns a host NumPy array of shape (N,): one estimate of log p(x) per row
    (the negative log-likelihood reported in papers is ``-result.mean()``).
    """
    k, batch_size, chunk = (positive_int(name, v) for name, v in
                            (("k", k), ("batch_size", batch_size), ("chunk", chunk)))
    be = model.backend
    xp = be.xp
    x = _checked_rows(model, x)
    d = model.latent_dim
    result = []
    with model.values_checked():                      # checked above, once
        for start in range(0, x.shape[0], batch_size):
            xb = x[start:start + batch_size]
            B = xb.shape[0]
            q = model.posterior(xb)
            running = xp.full((B,), -xp.inf, dtype=be.dtype)
            for done in range(0, k, chunk):
                c = min(chunk, k - done)
                eps = be.standard_normal((B, c, d))
                z = q.sample(eps)                                 # (B, c, d): z = μ + C ε
                out = model.decode(z.reshape(B * c, d))
                log_px_z = model.likelihood.log_prob(xp.repeat(xb, c, axis=0), out).reshape(B, c)
                log_pz = log_normal_std(z)
                log_qz = q.log_prob_of_eps(eps)                   # −½ Σ (ε² + log 2π + logvar)
                log_w = log_px_z + log_pz - log_qz                                # (B, c)
                running = xp.logaddexp(running, log_sum_exp(log_w, axis=1))
            # log of the mean of the k weights (numerics.log_mean_exp, here chunk by chunk)
            result.append(be.to_numpy(running - np.log(k)))
    return np.concatenate(result).astype(np.float64)


def active_units(model, x, threshold: float = 0.01, batch_size: int = 500):
    r"""Count latent units whose posterior mean varies with x (Burda et al. 2016).

    Unit j is active when A_j = Var_x( E_{q(z|x)}[z_j] ) = Var_x( μ_j(x) ) ≥ threshold
    (0.01 in the paper), the variance taken over the rows of ``x``.  Returns
    ``(count, A)`` with A a host array of shape (latent_dim,).
    """
    x = _checked_rows(model, x)
    be = model.backend
    with model.values_checked():                      # checked above, once
        mus = [be.to_numpy(model.encode(x[s:s + batch_size])[0])
               for s in range(0, x.shape[0], batch_size)]
    A = np.concatenate(mus).astype(np.float64).var(axis=0)
    return int((A >= threshold).sum()), A
