"""The settings of a training run: one place for every default, choice and help text.

Each setting is a dataclass field made by :func:`setting`, which records with
the default its command-line help, its choices (the library's own tuples, the
same ones :meth:`validate` checks against) and the kind of value it takes.
:mod:`minivae.training.cli` generates its argument parsers from these fields, so the
library and the command line cannot disagree on a default: ``--epochs`` of
``train_autoencoder.py`` is :attr:`AEConfig.epochs`, and so on.

:class:`VAEConfig` is a VAE run, :class:`AEConfig` an autoencoder run,
:class:`DAEConfig` a denoising-autoencoder run; all three extend
:class:`RunConfig`, the settings every run shares.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np

from ..backend import BACKENDS, DTYPES
from ..corruption import CORRUPTIONS, DEFAULT_LEVELS, make_corruption
from ..data import BINARIZE, DATASETS
from .files import check_output_path
from ..layers import ACTIVATIONS
from ..likelihoods import LIKELIHOODS
from ..models.autoencoder import OUTPUTS as AE_OUTPUTS
from ..models.posterior import POSTERIORS
from ..models.vae import INITS as VAE_INITS
from ..optim import OPTIMIZERS
from .parallel import MAX_THREADS
from ..validation import positive_int, positive_number


def setting(default, help: str, *, choices=None, kind: str | None = None, flag: str | None = None,
            metavar: str | None = None, group: str = "training"):
    """A config field: its default plus what the command line needs to offer it.

    ``kind`` names how the command line parses the value (see
    :data:`minivae.training.cli.KINDS`): ``"count"`` (≥ 1), ``"count0"`` (≥ 0),
    ``"positive"``, ``"number"``, ``"widths"``, ``"dir"``, ``"threads"``,
    ``"text"``; ``"switch"`` is a flag without a value that sets ``not default``
    (its ``flag`` is then, e.g., ``--no-progress``).  ``group`` is the heading
    it is listed under in ``--help``.
    """
    return dataclasses.field(default=default, metadata=dict(
        help=help, choices=choices, kind=kind, flag=flag, metavar=metavar, group=group))


# -- validation helpers -------------------------------------------------------

def _check_choice(config, name, options) -> None:
    v = getattr(config, name)
    if v not in options:
        raise ValueError(f"unknown {name} {v!r}; expected one of {tuple(options)}")


def _check_counts(config, *names, minimum: int = 1) -> None:
    for name in names:
        positive_int(name, getattr(config, name), minimum=minimum)


def _checked_hidden(hidden) -> tuple:
    """``400`` or ``(512, 256)`` as a tuple of positive ints, or ValueError."""
    widths = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if not widths or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                         for h in widths):
        raise ValueError(f"hidden must be one or more positive integers, got {hidden!r}")
    return tuple(int(h) for h in widths)


#: What a VAE run may maximize: the ELBO, or the importance-weighted bound.
OBJECTIVES = ("elbo", "iwae")

_DATA = "backend and data"
_CORRUPTION_HELP = ("χ(x̃|x): gaussian (x + σ n, clipped to [0, 1]), masking (a fraction ν of "
                    "the pixels set to 0) or salt-pepper (a fraction ν set to 0 or 1)")
_MODEL = "model"
_EVAL = "evaluation and checkpoints"


@dataclass
class RunConfig:
    """The settings every training run shares: backend, data, network, optimizer, output.

    The subclasses add their own and override the defaults that differ
    (epochs, widths, out).
    """

    backend: str = setting("numpy", "array backend: numpy (CPU) or cupy (NVIDIA GPU); auto "
                           "picks cupy when it can run", choices=BACKENDS, group=_DATA)
    dataset: str = setting("mnist5k", "mnist5k: 5,000 real MNIST digits shipped inside minivae "
                           "(4,500 train / 500 test); mnist, fashion-mnist: the standard IDX "
                           "files from --data-dir, or --download", choices=DATASETS, group=_DATA)
    data_dir: str | None = setting(None, "directory with the four IDX .gz files of mnist / "
                                   "fashion-mnist", kind="text", group=_DATA)
    download: bool = setting(False, "download mnist / fashion-mnist (checksums verified) when "
                             "--data-dir is not given", kind="switch", group=_DATA)
    epochs: int = setting(100, "epochs in total", kind="count")
    batch_size: int = setting(128, "examples per minibatch", kind="count")
    hidden: tuple = setting((400,), "hidden widths of the encoder, comma-separated; the "
                            "decoder mirrors them", kind="widths", group=_MODEL)
    activation: str = setting("relu", "hidden nonlinearity", choices=tuple(ACTIVATIONS),
                              group=_MODEL)
    optimizer: str = setting("adam", "the optimizer", choices=OPTIMIZERS)
    lr: float = setting(1e-3, "learning rate", kind="positive")
    momentum: float = setting(0.9, "SGD momentum", kind="number")
    seed: int = setting(0, "seeds weights, noise and shuffling: same seed, same run",
                        kind="count0")
    dtype: str = setting("float32", "float type of parameters and activations",
                         choices=DTYPES, group=_DATA)
    out: str | None = setting("runs/vae", "output directory, checked before training starts",
                              kind="dir")
    progress: bool = setting(True, "no progress bar within epochs (there is none either when "
                             "stderr is not a terminal)", kind="switch", flag="--no-progress")
    overwrite: bool = setting(False, "replace the checkpoint an earlier run left in --out; "
                              "without it such a run stops before any work (--resume "
                              "continues that run instead)", kind="switch")

    def _validate_shared(self) -> None:
        for name, options in (("backend", BACKENDS), ("dataset", DATASETS),
                              ("activation", ACTIVATIONS), ("optimizer", OPTIMIZERS),
                              ("dtype", DTYPES)):
            _check_choice(self, name, options)
        _check_counts(self, "epochs", "batch_size")
        _check_counts(self, "seed", minimum=0)
        self.hidden = _checked_hidden(self.hidden)
        positive_number("lr", self.lr)
        check_output_path("out", self.out)
        if self.dataset == "mnist5k" and (self.data_dir is not None or self.download):
            raise ValueError(f"{'data_dir' if self.data_dir is not None else 'download'} is for "
                             f"mnist and fashion-mnist; mnist5k ships inside minivae and reads "
                             f"no directory (for full MNIST from a directory: dataset='mnist')")

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d

    @classmethod
    def from_json(cls, d: dict):
        """The config :meth:`to_json` wrote (keys it does not know are ignored), validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if isinstance(kwargs.get("hidden"), list):
            kwargs["hidden"] = tuple(kwargs["hidden"])
        return cls(**kwargs).validate()


@dataclass
class VAEConfig(RunConfig):
    """Every setting of a VAE training run; the defaults are the classic model.

    784-400-20 with ReLU, a Bernoulli likelihood on dynamically binarized
    digits, Adam at 1e-3, batches of 128, float32 on NumPy.
    ``binarize=None`` means "dynamic" for Bernoulli and "none" for Gaussian.
    ``out=None`` trains without writing files.

    ``beta`` weighs the KL term of the training loss; ``kl_warmup_epochs``
    W > 0 ramps that weight linearly, step by step, over the first W epochs
    (see :func:`minivae.training.steps.kl_weight`); 0 is no warm-up.  The reported
    metrics are the true −ELBO (β = 1) whatever the training weight, so runs
    compare.  ``save_every`` N > 0 writes the training checkpoint every N
    epochs (the final one is always written); ``iw_samples`` K > 0 adds the
    importance-weighted estimate of −log p(x) with K samples to the final test
    metrics (0 skips it).  ``posterior="full"`` gives q(z|x) a full covariance
    (:mod:`minivae.models.posterior`).  ``objective="iwae"`` trains on the importance-weighted
    bound with ``k`` samples per example (:mod:`minivae.models.iwae`) instead of
    the ELBO.  ``gaussian_logvar`` None learns the Gaussian
    likelihood's shared log σ² (see :meth:`likelihood_options`); a number
    fixes it there.
    ``threads`` T > 1 splits every batch into T row blocks that run forward
    and backward on T threads (:mod:`minivae.training.parallel`; NumPy only); 1 is the
    plain serial step; ``None`` picks 2 on NumPy for batches of
    ≥ SPLIT_BATCH_MIN rows on a machine with 2 cores or more, else 1.
    """

    latent_dim: int = setting(20, "dimension of z", kind="count", group=_MODEL)
    likelihood: str = setting("bernoulli", "p(x|z): bernoulli on logits, or gaussian with one "
                              "shared variance σ²", choices=LIKELIHOODS, group=_MODEL)
    gaussian_logvar: float | None = setting(
        None, "gaussian only: fix log σ² at this value (0 is σ² = 1); without it log σ² is "
        "learned, starting from the log of the data's variance about its mean image",
        kind="number", metavar="S", group=_MODEL)
    binarize: str | None = setting(None, "none, dynamic (resampled every batch) or static "
                                   "(once, seeded); default: dynamic for bernoulli, none for "
                                   "gaussian", choices=BINARIZE, group=_MODEL)
    init: str = setting("torch", "initial weights: torch (W, b ~ U(±1/√fan_in), PyTorch's "
                        "nn.Linear; chosen by measurement, see the README) or he (He uniform "
                        "after x and ReLU, Glorot uniform heads, zero biases)",
                        choices=VAE_INITS, group=_MODEL)
    posterior: str = setting("diagonal", "q(z|x): diagonal, N(μ, diag σ²), or full, N(μ, C Cᵀ) "
                             "with a lower-triangular L from a third encoder head",
                             choices=POSTERIORS, group=_MODEL)
    objective: str = setting("elbo", "what training maximizes: elbo, or iwae, the "
                             "importance-weighted bound L_k = log (1/k) Σ_i w_i (Burda et al.)",
                             choices=OBJECTIVES, group=_MODEL)
    k: int | None = setting(None, "iwae only: importance samples per example; default: 5",
                            kind="count", metavar="K", group=_MODEL)
    beta: float = setting(1.0, "weight of the KL term in the training loss; 1 is the ELBO",
                          kind="positive", group=_MODEL)
    kl_warmup_epochs: int = setting(0, "ramp the KL weight linearly, step by step, from 0 to "
                                    "--beta over this many epochs; 0 is no warm-up. Metrics "
                                    "always report the true -ELBO", kind="count0", group=_MODEL)
    eval_samples: int = setting(1, "z draws per test digit for the per-epoch test -ELBO (the "
                                "final one uses at least 10)", kind="count", group=_EVAL)
    save_every: int = setting(0, "also write the training checkpoint every N epochs; 0: only "
                              "the final one", kind="count0", metavar="N", group=_EVAL)
    iw_samples: int = setting(0, "at the end, estimate -log p(x) on the test set by "
                              "importance weighting with K samples per digit (the IWAE bound; "
                              "500 or 5000 in papers); 0 skips it", kind="count0", metavar="K",
                              group=_EVAL)
    threads: int | None = setting(
        None, "NumPy: split every batch into T row blocks run on T threads, so the "
        "elementwise work uses T cores too; ignored on CuPy. T changes results in the last "
        "bits only (see the README) and a resumed run keeps the stored T; default: 2 for "
        "batches of 128 or more on a multi-core machine, else 1", kind="threads",
        metavar="T", group=_EVAL)

    def resolved_k(self) -> int:
        """The importance samples per example of the iwae objective (5 when ``k`` is None)."""
        return 5 if self.k is None else self.k

    def resolved_binarize(self) -> str:
        if self.binarize is not None:
            return self.binarize
        return "dynamic" if self.likelihood == "bernoulli" else "none"

    def defining(self) -> dict:
        """The settings that define the run, defaults resolved: what two configs of one run share.

        ``k`` None and 5 are one iwae run (and k means nothing to the elbo
        objective); ``binarize`` None is the likelihood's default.
        """
        d = {k: v for k, v in self.to_json().items() if k not in RESUME_MAY_CHANGE}
        d["k"] = self.resolved_k() if self.objective == "iwae" else None
        d["binarize"] = self.resolved_binarize()
        return d

    def likelihood_options(self, x_train) -> dict:
        r"""The keyword arguments of the Gaussian likelihood (empty for Bernoulli).

        A learned log σ² starts at the log of the training pixels' mean squared
        deviation from the mean image, s = (1/(N D)) Σ_n Σ_d (x_nd − x̄_d)²: the
        σ² that maximizes the likelihood of a model that has learned nothing
        yet (every reconstruction the mean image).  From there Adam, whose
        steps move a parameter by about the learning rate, has only the
        distance the model's learning opens up to travel (from σ² = 1 it would
        need thousands of steps to reach the data's scale first).
        """
        if self.likelihood != "gaussian":
            return {}
        if self.gaussian_logvar is not None:
            return {"logvar": float(self.gaussian_logvar), "learn_logvar": False}
        x = np.asarray(x_train, dtype=np.float64)
        spread = float(((x - x.mean(axis=0)) ** 2).mean())
        return {"logvar": math.log(max(spread, 1e-12)), "learn_logvar": True}

    def validate(self) -> "VAEConfig":
        """Raise ValueError naming the first bad setting; return self."""
        self._validate_shared()
        _check_choice(self, "likelihood", LIKELIHOODS)
        _check_choice(self, "init", VAE_INITS)
        if self.binarize is not None:
            _check_choice(self, "binarize", BINARIZE)
        _check_counts(self, "latent_dim", "eval_samples")
        _check_counts(self, "kl_warmup_epochs", "save_every", "iw_samples", minimum=0)
        if self.threads is not None:
            _check_counts(self, "threads")
            if self.threads > MAX_THREADS:
                raise ValueError(f"threads must be at most {MAX_THREADS}, got {self.threads}")
        positive_number("beta", self.beta)
        _check_choice(self, "objective", OBJECTIVES)
        _check_choice(self, "posterior", POSTERIORS)
        if self.posterior == "full" and self.latent_dim < 2:
            raise ValueError("posterior='full' needs latent_dim ≥ 2")
        if self.objective == "iwae":
            if self.k is not None:
                _check_counts(self, "k")
            if self.beta != 1 or self.kl_warmup_epochs:
                raise ValueError("beta and kl_warmup_epochs weigh the ELBO's KL term; the "
                                 "iwae objective has none (keep beta=1, kl_warmup_epochs=0)")
            if self.threads not in (None, 1):
                raise ValueError(f"threads={self.threads}: the split-batch step computes the "
                                 f"ELBO's gradient; the iwae objective runs serially (threads=1)")
        elif self.k is not None:
            raise ValueError(f"k={self.k!r} goes with objective='iwae', not {self.objective!r}")
        if self.gaussian_logvar is not None:
            if self.likelihood != "gaussian":
                raise ValueError(f"gaussian_logvar={self.gaussian_logvar!r} goes with "
                                 f"likelihood='gaussian', not {self.likelihood!r}")
            if isinstance(self.gaussian_logvar, bool) or not np.isfinite(self.gaussian_logvar):
                raise ValueError(f"gaussian_logvar must be a finite number, got "
                                 f"{self.gaussian_logvar!r}")
            limit = float(np.log(np.finfo(self.dtype).max))   # e^s or e^−s would overflow
            if abs(self.gaussian_logvar) >= limit:
                raise ValueError(f"gaussian_logvar={self.gaussian_logvar:g} fixes σ² = "
                                 f"e^{self.gaussian_logvar:g}, and σ² or 1/σ² overflows "
                                 f"{self.dtype}: |log σ²| must stay below {limit:.1f}")
        return self

    def to_json(self) -> dict:
        return {**super().to_json(), "binarize": self.resolved_binarize()}

    @classmethod
    def from_json(cls, d: dict) -> "VAEConfig":
        """The stored config; settings added since it was written take the value that run used.

        (A config written before ``init`` existed was trained with ``"he"``, and
        one before ``gaussian_logvar`` with a Gaussian likelihood had σ² fixed at 1.)
        """
        d = dict(d)
        d.setdefault("init", "he")
        if d.get("likelihood") == "gaussian":
            d.setdefault("gaussian_logvar", 0.0)
        return super().from_json(d)


#: The settings a resumed run may change: how far to go, where to write, how to
#: show progress, what to evaluate at the end, where the data and the arrays
#: live.  Every other setting of VAEConfig defines the run and must match the
#: checkpoint's; ``threads`` among them, since the split step rounds its
#: gradient sums differently from the serial one (a resumed run with
#: ``threads=None`` takes the stored count).
RESUME_MAY_CHANGE = ("epochs", "out", "progress", "save_every", "iw_samples", "backend",
                     "data_dir", "download", "overwrite")


@dataclass
class AEConfig(RunConfig):
    """Every setting of an autoencoder or denoising-autoencoder run.

    The defaults: 784-256-64-256-784 (a code of 64) with ReLU and a sigmoid
    output, Adam at 1e-3, batches of 128, 50 epochs, float32 on NumPy.
    ``corruption=None`` trains the plain autoencoder; a name (``"gaussian"``,
    ``"masking"``, ``"salt-pepper"``) trains the denoising one with that
    χ(x̃|x) at ``noise_level`` (``None``: the corruption's default level);
    ``clip`` (x̃ clipped to [0, 1]) concerns the Gaussian noise only.  With a
    sigmoid output or a corruption the pixels must lie in [0, 1].
    ``out=None`` trains without writing files.
    """

    epochs: int = setting(50, "epochs in total", kind="count")
    hidden: tuple = setting((256,), "hidden widths of the encoder, comma-separated; the "
                            "decoder mirrors them", kind="widths", group=_MODEL)
    out: str | None = setting("runs/autoencoder", "output directory, checked before training "
                              "starts", kind="dir")
    bottleneck: int = setting(64, "size of the code c = g(x)", kind="count", group=_MODEL)
    output: str = setting("sigmoid", "the decoder's last layer: sigmoid keeps x̂ in (0, 1) like "
                          "the pixels", choices=AE_OUTPUTS, group=_MODEL)
    corruption: str | None = setting(None, _CORRUPTION_HELP, choices=tuple(CORRUPTIONS),
                                     group=_MODEL)
    noise_level: float | None = setting(
        None, "σ for gaussian (≥ 0), ν for masking and salt-pepper (in [0, 1]); default: "
        + ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LEVELS.items()), kind="number",
        group=_MODEL)
    clip: bool = setting(True, "gaussian only: do not clip x̃ to [0, 1]", kind="switch",
                         flag="--no-clip", group=_MODEL)

    def make_corruption(self):
        """The :class:`~minivae.corruption.Corruption` of this run, or None for the plain AE."""
        if self.corruption is None:
            if self.noise_level is not None:
                raise ValueError(f"noise_level={self.noise_level!r} needs a corruption; expected "
                                 f"corruption to be one of {tuple(CORRUPTIONS)}, got None")
            return None
        options = {"clip": self.clip} if self.corruption == "gaussian" else {}
        return make_corruption(self.corruption, self.noise_level, **options)

    def validate(self) -> "AEConfig":
        """Raise ValueError naming the first bad setting; return self."""
        self._validate_shared()
        _check_choice(self, "output", AE_OUTPUTS)
        _check_counts(self, "bottleneck")
        self.make_corruption()  # checks the corruption's name and level
        return self

    def to_json(self) -> dict:
        d = super().to_json()
        corruption = self.make_corruption()
        d["noise_level"] = None if corruption is None else corruption.level
        return d


@dataclass
class DAEConfig(AEConfig):
    """An :class:`AEConfig` whose defaults are the denoising run: Gaussian χ(x̃|x), σ 0.3."""

    out: str | None = setting("runs/denoising", "output directory, checked before training "
                              "starts", kind="dir")
    corruption: str | None = setting("gaussian", _CORRUPTION_HELP, choices=tuple(CORRUPTIONS),
                                     group=_MODEL)
