r"""Evaluating a trained VAE on held-out data, in nats per example.

The test negative ELBO is estimated exactly as in training, with z *sampled*
from q(z|x) (one ε per example per pass, ``n_samples`` passes averaged):

    −ELBO(x) = E_{q(z|x)}[ −log p(x|z) ] + KL(q(z|x) ‖ p(z))  ≈  −log p(x|z_s) + KL

Plugging in z = μ instead would score the decoder at the posterior mean, which
is not a bound on −log p(x) and flatters the model; it is not done here.
"""

from __future__ import annotations

import numpy as np


def evaluate_elbo(model, x, batch_size: int = 500, n_samples: int = 1, check: bool = True) -> dict:
    """Mean ``neg_elbo``, ``recon`` (−log p(x|z)) and ``kl`` over the rows of ``x``.

    ``x`` is host or device data of shape (N, input_dim); it is processed in
    batches of ``batch_size`` and each example is scored ``n_samples`` times
    with fresh ε (averaged).  Returns Python floats in nats per example.
    """
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ValueError(f"batch_size must be a positive integer, got {batch_size!r}")
    if isinstance(n_samples, bool) or not isinstance(n_samples, (int, np.integer)) or n_samples < 1:
        raise ValueError(f"n_samples must be a positive integer, got {n_samples!r}")
    x = model.check_input(x, full=check)
    recon_sum = kl_sum = 0.0
    for start in range(0, x.shape[0], batch_size):
        xb = x[start:start + batch_size]
        for _ in range(n_samples):
            o = model.forward(xb, check=False)
            recon_sum += float(o.recon.sum())
            kl_sum += float(o.kl.sum())
    n = x.shape[0] * n_samples
    return {"neg_elbo": (recon_sum + kl_sum) / n, "recon": recon_sum / n, "kl": kl_sum / n}
