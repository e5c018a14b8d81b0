r"""The variational autoencoder, forward and backward by hand.

The lecture's loss for one example x, the negative evidence lower bound::

    L(θ, φ; x) = −E_{z ~ q_φ(z|x)} [ log p_θ(x|z) ] + KL( q_φ(z|x) ‖ p(z) )

* encoder:  h = MLP_φ(x);  μ = h W_μ + b_μ;  logvar = h W_v + b_v   (logvar = log σ²)
* q_φ(z|x) = N(μ, diag σ²),  p(z) = N(0, I)   (``posterior="full"``: N(μ, C Cᵀ),
  derived in :mod:`minivae.models.posterior`; the IWAE bound: :mod:`minivae.models.iwae`)
* reparameterization:  z = μ + σ ⊙ ε,  σ = exp(½ logvar),  ε ~ N(0, I)
* decoder:  out = MLP_θ(z);  the likelihood scores x under p_θ(x | out)

The expectation is estimated with one draw of ε per example; the KL term is
exact (:func:`minivae.kl.kl_normal_std`).  Per-example values are sums over
pixels and latent dimensions; the batch loss is their mean over the B examples,
in nats per example.

Backward, for the batch loss  L = (1/B) Σ_b [ −log p(x_b|z_b) + β KL_b ]
(β = 1 is the ELBO), with ε held at the values drawn in forward::

    ∂L/∂out    = −(1/B) ∂log p/∂out                          (likelihood.backward)
    ∂L/∂z      = decoder backward of ∂L/∂out
    ∂L/∂μ      = ∂L/∂z · ∂z/∂μ      + (β/B) ∂KL/∂μ       = ∂L/∂z + (β/B) μ
    ∂L/∂logvar = ∂L/∂z · ∂z/∂logvar + (β/B) ∂KL/∂logvar
               = ∂L/∂z ⊙ ½ σ ⊙ ε    + (β/B) ½ (σ² − 1)
    ∂L/∂h      = ∂L/∂μ W_μᵀ + ∂L/∂logvar W_vᵀ      (h feeds both heads: the sum)

using ∂z/∂μ = 1 and ∂z/∂logvar = ε · ∂σ/∂logvar = ε · ½ exp(½ logvar) = ½ σ ε.
The ε used here is the one stored by ``forward``: drawing a fresh one would
differentiate a different sample than the one that was scored.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..backend import Backend, get_backend
from ..data import as_model_input
from ..layers import MLP, Dense, Module
from ..likelihoods import Likelihood, make_likelihood
from .posterior import POSTERIORS, TRIL_SCALE, Posterior, tril_size
from ..validation import positive_int as _positive_int


@dataclass
class VAEOutput:
    """What :meth:`VAE.forward` returns: per-example terms, each of shape (B,).

    ``recon`` is −log p(x|z) with z sampled, ``kl`` is KL(q(z|x) ‖ p(z)),
    ``neg_elbo = recon + kl``.  ``mu``, ``logvar``, ``z`` are (B, latent_dim);
    ``out`` is the decoder output (logits for Bernoulli, means for Gaussian).
    """

    recon: object
    kl: object
    mu: object
    logvar: object
    z: object
    out: object

    @property
    def neg_elbo(self):
        return self.recon + self.kl


#: The initializations a VAE offers (see :class:`VAE`).
INITS = ("he", "torch")


class VAE(Module):
    """A VAE with MLP encoder and decoder.

    Parameters
    ----------
    input_dim : int
        D, pixels per example (784 for 28×28 digits).
    hidden : int or sequence of int
        Widths of the encoder's hidden layers; the decoder mirrors them.
        ``400`` or ``(400,)`` gives the classic 784-400-20 model.
    latent_dim : int
        Dimension of z.
    activation : str
        Hidden nonlinearity: relu, leaky_relu, tanh, sigmoid, softplus.
    likelihood : str or Likelihood
        ``"bernoulli"`` (decoder outputs logits) or ``"gaussian"``.
    backend : Backend
        Holds the array module, dtype and the seeded generator that draws the
        initial weights and every ε.
    init : str
        The initial weights (:data:`INITS`).  ``"torch"`` (the default): every
        Dense layer as PyTorch's ``nn.Linear`` draws it, W and b ~
        U(−1/√fan_in, 1/√fan_in).  ``"he"``: He uniform for the layers after x
        and after ReLU-like activations, Glorot uniform after other
        activations and for the μ and log σ² heads, zero biases.  The default
        was chosen by measurement (``benchmarks/results/init_parity.md``): it
        learns as well as PyTorch's defaults at 10, 30 and 100 epochs, where
        ``"he"`` is ahead at 10 epochs and 1.4 nats behind at 100.
    posterior : str
        q(z|x): ``"diagonal"`` (N(μ, diag σ²)) or ``"full"`` (N(μ, C Cᵀ) with
        C = diag(σ) + T, T strictly lower triangular from a third encoder head
        ``tril_head``, which starts at zero and is scaled by ``TRIL_SCALE``); see
        :mod:`minivae.models.posterior`.
    """

    def __init__(self, input_dim: int = 784, hidden=(400,), latent_dim: int = 20,
                 activation: str = "relu", likelihood="bernoulli",
                 backend: Backend | None = None, init: str = "torch",
                 posterior: str = "diagonal"):
        super().__init__()
        self.backend = backend = backend or get_backend("numpy")
        self.input_dim = _positive_int("input_dim", input_dim)
        self.latent_dim = _positive_int("latent_dim", latent_dim)
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        if not hidden:
            raise ValueError("hidden must name at least one hidden layer width")
        self.hidden = tuple(_positive_int("hidden width", h) for h in hidden)
        self.activation = activation
        self.likelihood: Likelihood = (make_likelihood(likelihood, backend)
                                       if isinstance(likelihood, str) else likelihood)

        if init not in INITS:
            raise ValueError(f"init must be one of {INITS}, got {init!r}")
        if posterior not in POSTERIORS:
            raise ValueError(f"posterior must be one of {POSTERIORS}, got {posterior!r}")
        if posterior == "full" and self.latent_dim < 2:
            raise ValueError("posterior='full' needs latent_dim ≥ 2 (with one latent "
                             "dimension every Gaussian is diagonal)")
        self.init, self.posterior_family = init, posterior
        mlp_init, head_init = (None, "glorot") if init == "he" else ("torch", "torch")
        self.encoder = MLP([self.input_dim, *self.hidden], activation, backend,
                           final_activation=activation, init=mlp_init)
        self.mu_head = Dense(self.hidden[-1], self.latent_dim, backend, init=head_init)
        self.logvar_head = Dense(self.hidden[-1], self.latent_dim, backend, init=head_init)
        self.decoder = MLP([self.latent_dim, *reversed(self.hidden), self.input_dim],
                           activation, backend, init=mlp_init)
        # T starts at zero: q begins as the diagonal posterior and learns to lean from there
        # (with T drawn like the other heads, 30-epoch runs ended ~4 nats worse)
        self.tril_head = Dense(self.hidden[-1], tril_size(self.latent_dim), backend,
                               init="zeros") if posterior == "full" else None
        for prefix, module in self.modules().items():
            for k in module.params:
                self.params[f"{prefix}.{k}"] = module.params[k]
                self.grads[f"{prefix}.{k}"] = module.grads[k]
        self.pack_parameters()            # θ in one flat array, ∂L/∂θ in another
        self._cache = None
        #: B of the batch mean in :meth:`backward`; None: the rows of the last forward
        self.batch_total = None

    @staticmethod
    def dense_shapes(input_dim: int, hidden, latent_dim: int, posterior: str = "diagonal"):
        """(n_in, n_out) of every Dense layer the constructor builds, in data-flow order.

        Worked out without building anything, so that a run can size itself
        before it allocates (:mod:`minivae.training.resources`); a test holds it
        to the layers of a built VAE.
        """
        hidden = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
        chain = [input_dim, *hidden]
        heads = [latent_dim, latent_dim] + ([tril_size(latent_dim)] if posterior == "full" else [])
        back = [latent_dim, *reversed(hidden), input_dim]
        return ([*zip(chain[:-1], chain[1:])] + [(hidden[-1], n) for n in heads]
                + [*zip(back[:-1], back[1:])])

    def modules(self) -> dict:
        """The sub-modules by name, in the order data flows through them."""
        heads = {"mu_head": self.mu_head, "logvar_head": self.logvar_head}
        if self.tril_head is not None:
            heads["tril_head"] = self.tril_head
        return {"encoder": self.encoder, **heads, "decoder": self.decoder,
                "likelihood": self.likelihood}

    def config(self) -> dict:
        """The constructor arguments, JSON-serializable (stored in checkpoints)."""
        cfg = {"input_dim": self.input_dim, "hidden": list(self.hidden),
               "latent_dim": self.latent_dim, "activation": self.activation,
               "likelihood": self.likelihood.name, "init": self.init,
               "posterior": self.posterior_family}
        if self.likelihood.name == "gaussian":
            cfg["likelihood_options"] = {"learn_logvar": self.likelihood.learn_logvar,
                                         "logvar": float(self.backend.to_numpy(self.likelihood.logvar)[0])}
        return cfg

    @classmethod
    def from_config(cls, config: dict, backend: Backend | None = None) -> "VAE":
        """A fresh VAE of the architecture ``config()`` describes, its likelihood included."""
        config = dict(config)
        options = config.pop("likelihood_options", {})
        if config.get("likelihood") == "gaussian":
            config["likelihood"] = make_likelihood("gaussian", backend, **options)
        return cls(**config, backend=backend)

    # -- input checks ----------------------------------------------------
    def check_input(self, x):
        """Bring ``x`` onto the backend and check it; return the device array.

        Always checks the shape (B, input_dim).  While ``check_values`` is on
        (:mod:`minivae.layers`) also NaN/Inf and the likelihood's support (pixels
        in [0, 1] for Bernoulli); a trainer checks the whole data set once instead.
        """
        x = as_model_input(x, self.backend, self.input_dim, values=self.check_values)
        if self.check_values:
            self.likelihood.check_data(x)
        return x

    # -- the model -------------------------------------------------------
    def encode(self, x):
        """q(z|x)'s ``(mu, logvar)``, each (B, d); logvar = log σ².

        For the full posterior, σ_j² is C_jj², the square of the Cholesky
        factor's diagonal, not q's marginal variance; :meth:`posterior` returns
        the whole q.
        """
        return self.posterior(x).mu_logvar()

    def posterior(self, x) -> Posterior:
        """q(z|x) for the rows of x: a :class:`~minivae.models.posterior.Posterior`."""
        return self._posterior(self.check_input(x))

    def _posterior(self, x) -> Posterior:
        """:meth:`posterior` of an ``x`` already checked."""
        h = self.encoder.forward(x)
        tril = TRIL_SCALE * self.tril_head.forward(h) if self.tril_head is not None else None
        return Posterior(self.mu_head.forward(h), self.logvar_head.forward(h), tril)

    def decode(self, z):
        """The decoder output for latent codes z (B, d) (logits for Bernoulli)."""
        z = as_model_input(z, self.backend, self.latent_dim, values=self.check_values, name="z")
        return self.decoder.forward(z)

    def forward(self, x, eps=None) -> VAEOutput:
        """Score a batch: encode, sample z = μ + σ ⊙ ε, decode, evaluate the terms.

        ``eps`` (B, d) may be given to hold the noise fixed (gradient checks
        do); otherwise it is drawn from the backend's generator.  It is stored
        for :meth:`backward`.
        """
        x = self.check_input(x)
        q = self._posterior(x)
        if eps is None:
            eps = self.backend.standard_normal(q.mu.shape)
        elif eps.shape != q.mu.shape:
            raise ValueError(f"eps must have shape {q.mu.shape}, got {eps.shape}")
        z = q.sample(eps)                          # μ + σ ⊙ ε (+ T ε for the full q)
        out = self.decoder.forward(z)
        recon = -self.likelihood.log_prob(x, out)
        kl = q.kl()                                # unchecked: no host sync in the step
        self._cache = (q, eps)
        return VAEOutput(recon=recon, kl=kl, mu=q.mu, logvar=q.logvar, z=z, out=out)

    def backward(self, beta: float = 1.0) -> None:
        """Add ∂L/∂θ for L = mean_b(recon_b + β·kl_b) of the last forward into ``grads``.

        The derivation is in the module docstring; each line below is one line of it.
        B, the count of the mean, is the rows of the last forward, or
        ``batch_total`` where a trainer has set it: the split-batch step
        (:mod:`minivae.training.parallel`) gives each piece of a batch the whole
        batch's size, so the pieces' gradients add up to the whole's.
        """
        if self._cache is None:
            raise RuntimeError("VAE.backward called before forward")
        q, eps = self._cache
        rows = q.mu.shape[0]
        B = rows if self.batch_total is None else self.batch_total
        dlogp = self.backend.xp.full((rows,), -1.0 / B, dtype=q.mu.dtype)  # ∂L/∂log p_b
        dout = self.likelihood.backward(dlogp)                        # ∂L/∂out
        dz = self.decoder.backward(dout)                              # ∂L/∂z
        # through z = μ + σ ⊙ ε (+ T ε): ∂z/∂μ = 1, ∂z/∂logvar = ½σε, ∂z_i/∂T_ij = ε_j
        dmu, dlogvar, dtril = q.sample_backward(dz, eps)
        dkl_dmu, dkl_dlogvar, dkl_dtril = q.kl_grad()                 # μ, ½(σ² − 1) (, T)
        dmu = dmu + (beta / B) * dkl_dmu                              # + (β/B) ∂KL/∂μ
        dlogvar = dlogvar + (beta / B) * dkl_dlogvar                  # + (β/B) ∂KL/∂logvar
        if dtril is not None:
            dtril = dtril + (beta / B) * dkl_dtril                    # + (β/B) ∂KL/∂T
        self.encoder_backward(dmu, dlogvar, dtril)

    def encoder_backward(self, dmu, dlogvar, dtril=None) -> None:
        """From ∂L/∂μ, ∂L/∂logvar (and ∂L/∂tril) through the heads and the encoder MLP.

        h feeds every head, so ∂L/∂h is the sum of what each head passes back.
        """
        dh = (self.mu_head.backward(dmu)                              # fan-out: the sum
              + self.logvar_head.backward(dlogvar))
        if dtril is not None:                                         # tril = c · head output
            dh += self.tril_head.backward(TRIL_SCALE * dtril)
        self.encoder.backward(dh, need_dx=False)                      # ∂L/∂x is of no use

    def loss(self, x, beta: float = 1.0, eps=None) -> float:
        """Forward, and the batch mean of recon + β·kl as a Python float."""
        o = self.forward(x, eps=eps)
        return float((o.recon + beta * o.kl).mean())

    # -- using a trained model -------------------------------------------
    def sample(self, n: int, mean: bool = True):
        """Decode n draws z ~ p(z) = N(0, I).

        Returns E[x|z] (pixel probabilities for Bernoulli) when ``mean``, else
        the raw decoder output.  Device arrays of shape (n, input_dim).
        """
        n = _positive_int("n", n)
        z = self.backend.standard_normal((n, self.latent_dim))
        out = self.decoder.forward(z)
        return self.likelihood.mean(out) if mean else out

    def reconstruct(self, x, sample_z: bool = False):
        """E[x | z] for z = μ(x) (or z sampled from q(z|x) when ``sample_z``)."""
        q = self.posterior(x)
        z = q.sample(self.backend.standard_normal(q.mu.shape)) if sample_z else q.mu
        return self.likelihood.mean(self.decoder.forward(z))
