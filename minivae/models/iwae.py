r"""The importance-weighted bound (IWAE, Burda et al. 2016) of a VAE, forward and backward by hand.

For one example x, k draws z_i = μ + σ ⊙ ε_i, ε_i ~ N(0, I), from q(z|x) give the
weights w_i = p(x|z_i) p(z_i) / q(z_i|x) and the bound::

    L_k(x) = log (1/k) Σ_i w_i,       E[L_k(x)] ≤ log p(x)     (Jensen, as for the ELBO)

The bound holds for the expectation over the draws, not for every draw: one
draw of L_k can exceed log p(x) (on a 2-D model, 45–50 % of single draws do),
since E[(1/k) Σ_i w_i] = p(x) and the log of a mean is at least the mean of
the logs.  E[L_1] is the ELBO (with the KL estimated from the one z), E[L_k]
does not decrease in k and tends to log p(x).  Training maximizes it: the loss of a batch of B
examples is −(1/B) Σ_b L_k(x_b).  The model is the same VAE; only the
objective differs, so everything that evaluates a VAE evaluates it.

The log-weights, with logvar = log σ² and (z_i − μ)/σ = ε_i::

    log w_i = log p(x|z_i) + log N(z_i; 0, I) − log N(z_i; μ, σ²)
            = log p(x|z_i) − ½ Σ_j z_ij²  + ½ Σ_j (logvar_j + ε_ij²)

(the two log 2π cancel).

Backward.  L_k = logsumexp_i(log w_i) − log k, so with the normalized weights
w̃_i = w_i / Σ_l w_l = softmax_i(log w_i),  ∂L_k/∂ log w_i = w̃_i, and for the
batch loss ∂L/∂ log w_bi = −w̃_bi / B.  Each log w_i depends on the parameters
through z_i = μ + σ ⊙ ε_i (ε held fixed) and on logvar directly::

    ∂ log w_i/∂out_i    = ∂ log p(x|z_i)/∂out_i                    (likelihood.backward)
    ∂ log w_i/∂z_i      = decoder backward of it  −  z_i            (the prior's −½‖z‖²)
    ∂ log w_i/∂μ        = ∂ log w_i/∂z_i                             (∂z/∂μ = 1; −log q of
                                                                     z = μ + σε is free of μ)
    ∂ log w_i/∂logvar   = ∂ log w_i/∂z_i ⊙ ½ σ ⊙ ε_i  +  ½          (∂z/∂logvar = ½σε; the
                                                                     −log q term gives ½)

so, summing over the k draws that share one μ and logvar::

    ∂L/∂z_bi      = −(w̃_bi/B) [ decoder backward of ∂log p/∂out  −  z_bi ]
    ∂L/∂μ_b       = Σ_i ∂L/∂z_bi
    ∂L/∂logvar_b  = Σ_i ∂L/∂z_bi ⊙ ½ σ_b ⊙ ε_bi  −  ½/B        (Σ_i w̃_bi = 1)

and from μ and logvar on as in the VAE.  With a full-covariance q, z = μ + C ε
and log|det C| = ½ Σ logvar still, so log w is the same expression and T gets
∂L/∂T_rc = Σ_i ∂L/∂z_bi,r ε_bi,c (:mod:`minivae.models.posterior`).  In code the factor −w̃_bi/B enters
once, as ∂L/∂ log p of row (b, i) given to the likelihood; the prior's term is
added to the decoder's ∂L/∂z as (w̃_bi/B) z_bi.  With k = 1, w̃ = 1 and this is
the gradient of the single-sample ELBO whose KL is estimated at z
(∂/∂μ gets z/B where the VAE's analytic KL gives μ/B): the same in expectation.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..numerics import log_sum_exp, softmax
from ..validation import positive_int


@dataclass
class IWAEOutput:
    """One batch through the bound: per example ``bound`` = L_k(x) (nats), and the (B, k) ``log_w``."""

    bound: object
    log_w: object


class IWAEObjective:
    """The k-sample importance-weighted bound of ``model`` (a VAE), with its gradient.

    ``forward(x)`` scores a batch and caches what ``backward`` needs;
    ``backward()`` adds the gradient of −mean_b L_k(x_b) into ``model.grads``
    (or writes it, under the model's ``write_grads``: :mod:`minivae.layers`).  ``loss(x, eps)`` is that batch loss as a float, for
    gradient checks with ε held fixed (``eps`` of shape (B, k, latent_dim)).
    """

    def __init__(self, model, k: int = 5):
        self.model, self.k = model, positive_int("k", k)
        self._cache = None

    def forward(self, x, eps=None) -> IWAEOutput:
        m, k = self.model, self.k
        xp = m.backend.xp
        x = m.check_input(x)
        B, d = x.shape[0], m.latent_dim
        q = m._posterior(x)
        if eps is None:
            eps = m.backend.standard_normal((B, k, d))
        elif eps.shape != (B, k, d):
            raise ValueError(f"eps must have shape {(B, k, d)}, got {eps.shape}")
        z = q.sample(eps).reshape(B * k, d)                    # row b·k + i: z = μ + C ε_i
        out = m.decoder.forward(z)
        log_px_z = m.likelihood.log_prob(xp.repeat(x, k, axis=0), out).reshape(B, k)
        log_w = (log_px_z - 0.5 * (z * z).sum(axis=1).reshape(B, k)
                 + 0.5 * (q.logvar[:, None, :] + eps * eps).sum(axis=2))
        bound = log_sum_exp(log_w, axis=1) - np.log(k)          # log (1/k) Σ_i w_i
        self._cache = (q, eps, z, softmax(log_w, axis=1))       # w̃_i = w_i / Σ_l w_l
        return IWAEOutput(bound=bound, log_w=log_w)

    def backward(self) -> None:
        """∂/∂θ of −(1/B) Σ_b L_k(x_b) into ``model.grads`` (see the module docstring)."""
        if self._cache is None:
            raise RuntimeError("IWAEObjective.backward called before forward")
        m, k = self.model, self.k
        q, eps, z, w_tilde = self._cache
        rows = q.mu.shape[0]
        B = rows if m.batch_total is None else m.batch_total   # (see VAE.backward)
        dlogp = (-w_tilde / B).reshape(-1)                          # ∂L/∂log p(x|z_bi)
        dout = m.likelihood.backward(dlogp)
        dz = m.decoder.backward(dout)               # through the decoder
        dz += (-dlogp)[:, None] * z                                 # the prior: −(w̃/B)(−z)
        dmu, dlogvar, dtril = q.sample_backward(dz.reshape(rows, k, -1), eps)   # Σ over the k
        dlogvar -= 0.5 / B                                          # −log q's ½ per logvar
        m.encoder_backward(dmu, dlogvar, dtril)

    def loss(self, x, eps=None) -> float:
        """Forward, and −mean_b L_k(x_b) as a Python float."""
        return float(-self.forward(x, eps=eps).bound.mean())
