"""The fit loop for the VAE: epochs of minibatch steps, evaluation, and what a run writes.

One training step, the whole of the algorithm::

    o = model.forward(x_batch)     # ε drawn, z = μ + σ ε, terms per example
    model.backward(beta, accumulate=False)  # grads ← ∂ mean(recon + β kl) / ∂θ
    optimizer.step()               # θ ← update(θ, grads)

(``accumulate=False`` writes the gradients; the default adds to them, after
a ``model.zero_grad()``, with the same result.)

:func:`train_vae` wraps it with data loading, per-epoch evaluation on the test
digits (z sampled), a progress bar, a guard against NaN, KL warm-up, periodic
checkpoints, resuming, a clean stop on Ctrl-C, the final evaluation (test
ELBO, active units, and with ``iw_samples`` the importance-weighted log p(x)),
and the outputs in ``config.out``: ``metrics.json``, ``checkpoint.npz`` (a
training checkpoint: weights, optimizer state, epoch, history, random
generator states), ``reconstructions.png``, ``samples.png``, ``loss.png``,
``loss_terms.png``, ``latent_scatter.png`` and, for a 2-D latent,
``manifold.png``.

Resuming (``train_vae(config, resume=path)``) restores everything the next
epoch depends on: the weights, the optimizer's moments and step count, the
epoch reached, the history, and the states of both random generators (the
backend's, which draws every ε and every dynamic binarization, and the
minibatch shuffler's).  On NumPy a run of 4 epochs and a run of 2 epochs
resumed to 4 therefore end with bit-identical weights.  CuPy's generators
cannot be serialized: resuming under CuPy (or across backends) re-seeds the
backend's generator from (seed, epoch), a statistically equivalent
continuation that is not bit-identical to an uninterrupted run.

:func:`train_autoencoder` is the same loop for the autoencoder and the
denoising autoencoder (``model.backward()`` takes no β; the denoising model
draws a fresh x̃ ~ χ(x̃|x) inside each ``forward``), evaluated by the squared
error on the clean test digits and, for the denoising model, on one fixed
corruption of them.  It writes ``metrics.json``, ``checkpoint.npz`` (weights
only), ``reconstructions.png`` and ``loss.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import BACKENDS, DTYPES, get_backend
from .checkpoint import (CheckpointError, load_optimizer_state, load_params,
                         read_training_checkpoint, save_checkpoint)
from .corruption import CORRUPTIONS, corrupt_fixed, make_corruption
from .data import (BINARIZE, DATASETS, DataError, Minibatches, binarize_fixed, check_images,
                   load_dataset)
from .evaluate import active_units, evaluate_elbo, iw_log_likelihood
from .files import atomic_write, check_output_path, prepare_output_dir
from .interrupts import interrupts_deferred, signal_name
from .layers import ACTIVATIONS
from .likelihoods import LIKELIHOODS
from .models.autoencoder import OUTPUTS as AE_OUTPUTS
from .models.autoencoder import Autoencoder, evaluate_reconstruction
from .models.denoising import DenoisingAutoencoder
from .models.vae import INITS as VAE_INITS
from .models.vae import VAE
from .optim import OPTIMIZERS, make_optimizer
from .parallel import MAX_THREADS
from .validation import first_nonfinite, positive_int, positive_number


#: Seed of the one fixed corruption of the test digits (the same for every run).
CORRUPTED_TEST_SEED = 20261125

#: The file a training run keeps its (resumable) checkpoint in, inside ``config.out``.
CHECKPOINT_NAME = "checkpoint.npz"

#: Burda et al.'s threshold: unit j is active when Var_x(E_q[z_j|x]) ≥ 0.01.
ACTIVE_UNIT_THRESHOLD = 0.01


class TrainingDiverged(FloatingPointError):
    """The loss, the parameters or the optimizer's state became NaN or infinite.

    ``epoch`` is the epoch in which it happened.  When the run writes files,
    the last finite state was saved first: ``path`` is that checkpoint and
    ``saved_epoch`` the epochs it holds (``path`` is None when nothing could be
    written, and ``save_error`` then says why).
    """

    def __init__(self, message: str, epoch: int | None = None, path=None,
                 saved_epoch: int | None = None, save_error: str | None = None):
        super().__init__(message)
        self.epoch, self.saved_epoch, self.save_error = epoch, saved_epoch, save_error
        self.path = None if path is None else Path(path)

    def after_save(self, path, saved_epoch: int, save_error: str | None) -> "TrainingDiverged":
        """The same error, its message saying what was saved."""
        if path is not None:
            note = (f"; the state after epoch {saved_epoch}, the last finite one, is saved in "
                    f"{path}")
        else:
            note = f"; the last finite state could not be saved ({save_error})"
        return TrainingDiverged(f"{self}{note}", self.epoch, path, saved_epoch, save_error)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training; the state after the last completed epoch was saved.

    ``path`` is the checkpoint written, ``epoch`` the number of epochs it holds;
    ``train_vae(config, resume=path)`` continues from there.  ``signal`` is
    ``"SIGINT"`` or ``"SIGTERM"``.  When the save itself failed (a full disk),
    ``path`` is None and ``save_error`` says why.
    """

    def __init__(self, path, epoch: int, signal: str = "SIGINT", save_error: str | None = None):
        what = (f"the state after epoch {epoch} is saved in {path}" if path is not None
                else f"the state after epoch {epoch} could not be saved ({save_error})")
        super().__init__(f"training interrupted ({signal}); {what}")
        self.path = None if path is None else Path(path)
        self.epoch, self.signal, self.save_error = int(epoch), signal, save_error


@dataclass
class RunConfig:
    """The settings every training run shares: backend, data, network, optimizer, output.

    :class:`TrainConfig` (the VAE) and :class:`AETrainConfig` (the autoencoders)
    add their own; each overrides the defaults that differ (epochs, widths, out).
    """

    backend: str = "numpy"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    epochs: int = 100
    batch_size: int = 128
    hidden: tuple = (400,)
    activation: str = "relu"
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    seed: int = 0
    dtype: str = "float32"
    out: str | None = "runs/vae"
    progress: bool = True

    def _validate_shared(self) -> None:
        for name, options in (("backend", BACKENDS), ("dataset", DATASETS),
                              ("activation", ACTIVATIONS), ("optimizer", OPTIMIZERS),
                              ("dtype", DTYPES)):
            _check_choice(self, name, options)
        _check_positive_ints(self, "epochs", "batch_size")
        _check_non_negative_ints(self, "seed")
        self.hidden = _checked_hidden(self.hidden)
        _check_positive_numbers(self, "lr")
        check_output_path("out", self.out)

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        return d


@dataclass
class TrainConfig(RunConfig):
    """Every setting of a VAE training run; the defaults are the classic model.

    784-400-20 with ReLU, a Bernoulli likelihood on dynamically binarized
    digits, Adam at 1e-3, batches of 128, float32 on NumPy.
    ``binarize=None`` means "dynamic" for Bernoulli and "none" for Gaussian.
    ``out=None`` trains without writing files.

    ``beta`` weighs the KL term of the training loss; ``kl_warmup_epochs``
    W > 0 ramps that weight linearly, step by step, over the first W epochs
    (see :func:`kl_weight`); 0 is no warm-up.  The reported metrics are the
    true −ELBO (β = 1) whatever the training weight, so runs compare.
    ``save_every`` N > 0 writes the training checkpoint every N epochs (the
    final one is always written); ``iw_samples`` K > 0 adds the
    importance-weighted estimate of −log p(x) with K samples to the final test
    metrics (0 skips it).
    ``threads`` T > 1 splits every batch into T row blocks that run forward
    and backward on T threads (:mod:`minivae.parallel`; NumPy only); 1 is the
    plain serial step; ``None`` picks 2 on NumPy for batches of
    ≥ SPLIT_BATCH_MIN rows on a machine with 2 cores or more, else 1.
    """

    latent_dim: int = 20
    likelihood: str = "bernoulli"
    init: str = "he"
    binarize: str | None = None
    beta: float = 1.0
    kl_warmup_epochs: int = 0
    eval_samples: int = 1
    save_every: int = 0
    iw_samples: int = 0
    threads: int | None = None

    def resolved_binarize(self) -> str:
        if self.binarize is not None:
            return self.binarize
        return "dynamic" if self.likelihood == "bernoulli" else "none"

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad setting; return self."""
        self._validate_shared()
        _check_choice(self, "likelihood", LIKELIHOODS)
        _check_choice(self, "init", VAE_INITS)
        if self.binarize is not None:
            _check_choice(self, "binarize", BINARIZE)
        _check_positive_ints(self, "latent_dim", "eval_samples")
        _check_non_negative_ints(self, "kl_warmup_epochs", "save_every", "iw_samples")
        if self.threads is not None:
            _check_positive_ints(self, "threads")
            if self.threads > MAX_THREADS:
                raise ValueError(f"threads must be at most {MAX_THREADS}, got {self.threads}")
        _check_positive_numbers(self, "beta")
        return self

    def to_json(self) -> dict:
        return {**super().to_json(), "binarize": self.resolved_binarize()}

    @classmethod
    def from_json(cls, d: dict) -> "TrainConfig":
        """The config :meth:`to_json` wrote (keys it does not know are ignored), validated."""
        names = {f.name for f in dataclasses.fields(cls)}
        kwargs = {k: v for k, v in d.items() if k in names}
        if isinstance(kwargs.get("hidden"), list):
            kwargs["hidden"] = tuple(kwargs["hidden"])
        return cls(**kwargs).validate()


#: The settings a resumed run may change: how far to go, where to write, how to
#: show progress, what to evaluate at the end, where the data and the arrays
#: live.  Every other setting of TrainConfig defines the run and must match the
#: checkpoint's; ``threads`` among them, since the split step rounds its
#: gradient sums differently from the serial one (a resumed run with
#: ``threads=None`` takes the stored count).
RESUME_MAY_CHANGE = ("epochs", "out", "progress", "save_every", "iw_samples", "backend",
                     "data_dir", "download")


def kl_weight(beta: float, warmup_epochs: int, step: int, steps_per_epoch: int) -> float:
    r"""The KL weight β_eff of optimizer step ``step`` (1, 2, … counted over the whole run).

    A linear warm-up over W = ``warmup_epochs`` epochs of S = ``steps_per_epoch``
    steps, advanced every step::

        β_eff(step) = β · min(1, step / (W · S))

    so the first step uses β/(W·S), the last step of epoch e ≤ W uses β·e/W,
    and from the end of epoch W on the weight is β.  W = 0: β throughout.
    """
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, step / (warmup_epochs * steps_per_epoch))


# -- pieces shared by the training functions -----------------------------------

def _check_choice(config, name, options) -> None:
    v = getattr(config, name)
    if v not in options:
        raise ValueError(f"unknown {name} {v!r}; expected one of {tuple(options)}")


def _check_positive_ints(config, *names) -> None:
    for name in names:
        positive_int(name, getattr(config, name))


def _check_non_negative_ints(config, *names) -> None:
    for name in names:
        positive_int(name, getattr(config, name), minimum=0)


def _check_positive_numbers(config, *names) -> None:
    for name in names:
        positive_number(name, getattr(config, name))


def _checked_hidden(hidden) -> tuple:
    """``400`` or ``(512, 256)`` as a tuple of positive ints, or ValueError."""
    widths = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if not widths or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                         for h in widths):
        raise ValueError(f"hidden must be one or more positive integers, got {hidden!r}")
    return tuple(int(h) for h in widths)


def _load_checked_data(config, dataset, unit_interval: bool):
    """``dataset``, or the one ``config.dataset`` names, with its images checked.

    Both splits must hold at least one example: a run cannot train on nothing,
    and a mean over no test digits is not a number.
    """
    data = dataset if dataset is not None else load_dataset(
        config.dataset, config.data_dir, download=config.download)
    check_images(data.x_train, name="x_train", unit_interval=unit_interval)
    check_images(data.x_test, name="x_test", width=data.x_train.shape[1],
                 unit_interval=unit_interval)
    for name in ("x_train", "x_test"):
        if getattr(data, name).shape[0] == 0:
            raise DataError(f"{name} of {data.name!r} has no examples; a run needs at least "
                            f"one training and one test example")
    return data


def dense_parameter_count(widths) -> int:
    """Weights and biases of a chain of Dense layers widths[0] → widths[1] → …: Σ (a·b + b)."""
    widths = list(widths)
    return sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))


#: The activations a training step keeps per row and per unit of width, in
#: arrays of the run's dtype: a layer's input, its pre-activation, and the
#: gradients flowing back through both (an estimate, for the memory check).
ACTIVATION_COPIES = 4


def _memory_of_device(backend):
    """Bytes of memory the backend's arrays live in (the GPU's, or the machine's RAM), or None."""
    if backend.name == "cupy":
        return int(backend.xp.cuda.Device().mem_info[1])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def check_fits_in_memory(config, backend, what: str, n_params: int, widths, n_rows: int,
                         threads: int = 1) -> None:
    """Raise ValueError when a run would need more memory than the device has, before allocating.

    The estimate, in bytes of ``config.dtype``::

        n_params · (2 + s + (T − 1))           θ and ∇θ; s = 2 Adam moments (1 for SGD);
                                               each extra split-step block's ∇θ
      + B · Σ widths · ACTIVATION_COPIES       the activations of a batch of B rows
      + N · D                                  the training data, on the device

    It is an estimate on the low side (it leaves out temporaries and the
    evaluation batches), compared with all of the device's memory, so only a
    run that cannot fit is refused.  It exists so that a mistyped
    ``--hidden 4000000`` is an error message, not a machine swapping itself to
    a halt or a visit from the OOM killer.
    """
    limit = _memory_of_device(backend)
    if limit is None:
        return
    itemsize = np.dtype(config.dtype).itemsize
    state = 2 + (2 if config.optimizer == "adam" else 1) + (threads - 1)
    batch = min(config.batch_size, n_rows)
    need = itemsize * (n_params * state + batch * sum(widths) * ACTIVATION_COPIES
                       + n_rows * widths[0])
    if need > limit:
        raise ValueError(
            f"the {what} has {n_params:,} parameters and needs at least {need / 2**30:,.1f} GiB "
            f"to train in {config.dtype} (parameters, gradients and optimizer state, a batch of "
            f"{batch}, the data), more than the {limit / 2**30:,.1f} GiB of memory on this "
            f"{'GPU' if backend.name == 'cupy' else 'machine'}; choose smaller widths or batch size")


def _optimizer_for(config, model):
    """The optimizer ``config`` names, over ``model.params`` and ``model.grads``."""
    opt_kwargs = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    return make_optimizer(config.optimizer, model.params, model.grads, config.lr, **opt_kwargs)


class _LastGood:
    """The last state of a run known to be good, saved when the run stops early.

    Used as ``with _LastGood(out, save, epoch, snapshot) as last:`` around a fit
    loop, which calls ``last.keep(epoch, snapshot)`` after every epoch that
    passed the checks.  When the block raises TrainingDiverged or
    KeyboardInterrupt and the run writes files, ``save(snapshot)`` writes the
    kept state, with Ctrl-C and SIGTERM held back (a second Ctrl-C must not cut
    this save short), and the error is raised again saying what was saved: a
    TrainingDiverged naming the file, or a :class:`TrainingInterrupted`.  An
    OSError of that save (a full disk) goes into the message instead of hiding
    why the run stopped.
    """

    def __init__(self, out, save, epoch: int, snapshot):
        self.out, self.save = out, save
        self.keep(epoch, snapshot)

    def keep(self, epoch: int, snapshot) -> None:
        self.epoch, self.snapshot = epoch, snapshot

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if self.out is None or not isinstance(exc, (TrainingDiverged, KeyboardInterrupt)):
            return False
        with interrupts_deferred(deliver=False):
            try:
                path, error = self.save(self.snapshot), None
            except OSError as save_error:
                path, error = None, str(save_error)
        if isinstance(exc, TrainingDiverged):
            raise exc.after_save(path, self.epoch, error) from None
        raise TrainingInterrupted(path, self.epoch, signal_name(exc), error) from None


def _check_finite_loss(loss: float, epoch: int, hint: str) -> None:
    """Raise TrainingDiverged when an epoch's mean training loss is NaN or infinite."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the training loss became {loss} in epoch {epoch}; {hint}",
                               epoch=epoch)


def _check_finite_state(epoch: int, arrays: dict, what: str, hint: str) -> None:
    """Raise TrainingDiverged naming the first entry of ``arrays`` that holds NaN or Inf."""
    bad = first_nonfinite(arrays)
    if bad is not None:
        raise TrainingDiverged(
            f"after epoch {epoch} the {what} {bad[0]} holds {bad[1]} NaN or Inf values although "
            f"the training loss was finite (an update overflowed); {hint}", epoch=epoch)


def memory_use(backend) -> dict:
    """The run's memory, for metrics.json: the process's peak resident set (MiB).

    ``peak_rss_mib`` is None where the OS does not report it (Windows); on CuPy
    ``gpu_pool_mib`` adds what CuPy's memory pool holds on the device.  The
    pool keeps freed blocks for reuse, so that is about the peak of the device
    arrays alive at once (not measured on a GPU yet).
    """
    use = {"peak_rss_mib": None}
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        resource = None
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB; bytes on macOS
        use["peak_rss_mib"] = round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)
    if backend.name == "cupy":
        use["gpu_pool_mib"] = round(backend.xp.get_default_memory_pool().total_bytes() / 2 ** 20, 1)
    return use


def _write_metrics(out: Path, metrics: dict) -> None:
    atomic_write(out / "metrics.json",
                 lambda f: f.write((json.dumps(metrics, indent=2) + "\n").encode()))


# -- the state a VAE run resumes from -------------------------------------------

def _is_number(v) -> bool:
    return isinstance(v, (bool, int, float, np.number))


def _host_copy(backend, a) -> np.ndarray:
    """A host array that later updates of the device array ``a`` cannot change."""
    return np.array(backend.to_numpy(a), copy=True)


def _generator_state(rng):
    """A NumPy Generator's state (a JSON-able dict of ints); None for CuPy's (not serializable)."""
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


@dataclass
class _Snapshot:
    """Host copies of everything the next epoch depends on, taken at the end of an epoch.

    Checkpoints are written from a snapshot, never from the live model, so
    Ctrl-C in the middle of an epoch still saves a consistent state: the one
    after the last completed epoch.
    """

    epoch: int
    params: dict
    optimizer_state: dict
    history: list
    rng: dict


def _take_snapshot(model, optimizer, batches, epoch: int, history: list) -> _Snapshot:
    be = model.backend
    return _Snapshot(
        epoch=epoch,
        params={k: _host_copy(be, v) for k, v in model.params.items()},
        optimizer_state={k: v if _is_number(v) else _host_copy(be, v)
                         for k, v in optimizer.state_dict().items()},
        history=list(history),
        # backend.rng draws every ε, dynamic binarization and evaluation sample;
        # the Minibatches generator draws each epoch's order.
        rng={"backend": be.name, "backend_rng": _generator_state(be.rng),
             "shuffle": batches.shuffle_state})


def _save_training_checkpoint(path: Path, model, config, snap: _Snapshot, data_sizes) -> Path:
    training = {"epoch": snap.epoch, "history": snap.history,
                "optimizer": {"name": config.optimizer},
                "rng": snap.rng, "data": {"n_train": data_sizes[0], "n_test": data_sizes[1]}}
    return save_checkpoint(path, model, extra={"train_config": config.to_json()},
                           params=snap.params, optimizer_state=snap.optimizer_state,
                           training=training)


def _check_resumable(config, ckpt, source: str) -> None:
    """Raise CheckpointError when ``config`` asks for another run than the one stored."""
    if ckpt.meta.get("model") != "VAE":
        raise CheckpointError(f"{source} holds a {ckpt.meta.get('model')!r}, not a VAE")
    try:
        stored = TrainConfig.from_json(ckpt.train_config).to_json()
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the stored training config is not valid "
                              f"({exc})") from None
    asked = config.to_json()
    differ = [f"{k} (stored {stored[k]!r}, asked {asked[k]!r})" for k in stored
              if k not in RESUME_MAY_CHANGE and stored[k] != asked[k]]
    if differ:
        raise CheckpointError(
            f"{source} was trained with other settings: {', '.join(differ)}. A resumed run "
            f"keeps the stored settings (only {', '.join(RESUME_MAY_CHANGE)} may change); "
            f"drop the conflicting settings or start a new run")
    done = ckpt.training["epoch"]
    if config.epochs < done:
        raise ValueError(f"epochs must be at least the {done} epochs {source} has already "
                         f"trained (epochs counts the total), got {config.epochs}")


def _restore(model, optimizer, batches, ckpt, config, n_train: int, source: str):
    """Load weights, optimizer state and generator states; return (epoch, history)."""
    t = ckpt.training
    stored_n = t.get("data", {}).get("n_train", n_train)
    if stored_n != n_train:
        raise CheckpointError(f"{source} was trained on {stored_n} training examples; this "
                              f"run has {n_train}")
    load_params(model, ckpt.params, source=source)
    load_optimizer_state(optimizer, ckpt.optimizer_state, model.backend, source=source)
    be, rng = model.backend, t["rng"]
    try:
        batches.shuffle_state = rng["shuffle"]
        state = rng.get("backend_rng")
        exact = (state is not None and isinstance(be.rng, np.random.Generator)
                 and state.get("bit_generator") == type(be.rng.bit_generator).__name__)
        if exact:
            be.rng.bit_generator.state = state
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise CheckpointError(f"{source}: the stored random generator state is not valid "
                              f"({exc})") from None
    if not exact:
        be.rng = be.xp.random.default_rng([config.seed, t["epoch"]])
        print(f"note: the {rng.get('backend')} run's generator state cannot be restored on "
              f"{be.name} (CuPy's generators cannot be saved); re-seeded from (seed, epoch): "
              f"the continuation is statistically equivalent, not bit-identical",
              file=sys.stderr, flush=True)
    return int(t["epoch"]), list(t["history"])


# -- training --------------------------------------------------------------------

def train_vae(config: TrainConfig | None = None, dataset=None, return_model: bool = False,
              resume=None):
    """Train a VAE as ``config`` says; return the metrics dict (also saved as metrics.json).

    With ``return_model`` the result is ``(metrics, model)``.

    ``dataset`` may be a :class:`minivae.data.Dataset` to train on instead of
    loading ``config.dataset``.  The returned dict holds ``"config"``,
    ``"history"`` (one entry per epoch: train and test negative ELBO, recon
    and KL in nats per example, the KL weight ``beta`` of the epoch's last step
    and its mean ``beta_mean`` over the epoch, seconds) and ``"test"`` (the
    final test terms with z sampled, ``active_units``, and with
    ``config.iw_samples`` = K > 0 ``iw_nll`` = −mean_x log p̂(x), the
    importance-weighted estimate with K samples, and ``iw_samples``).

    ``resume`` is the path of a training checkpoint (the ``checkpoint.npz``
    of an earlier run): training continues from the epoch stored there up to
    ``config.epochs`` epochs in total.  ``config`` must agree with the stored
    config except in :data:`RESUME_MAY_CHANGE`, else :class:`CheckpointError`.

    Nothing is lost when a run stops early.  ``config.out`` is checked (created,
    written to) before any work.  After every epoch the parameters and the
    optimizer's state are checked to be finite, and only a finite state is
    ever saved.  When the loss or that state becomes NaN or Inf, the state
    after the last finite epoch is saved and :class:`TrainingDiverged` says
    where.  Ctrl-C (KeyboardInterrupt; SIGTERM too under
    :func:`minivae.interrupts.sigterm_as_interrupt`, as the command line runs)
    while training or evaluating saves the state after the last completed
    epoch and raises :class:`TrainingInterrupted`, a KeyboardInterrupt that
    names the file; a second Ctrl-C during that save is held back until it is
    written.  The final checkpoint is written before the final evaluation, so
    a run killed while evaluating (a large ``iw_samples``) keeps its weights.

    ``config.threads=None`` resolves to a thread count (see
    :func:`resolve_threads`) that is stored in the config the run writes, and
    a resumed run with ``threads=None`` takes the stored count, so it
    continues exactly as the straight run would have.
    """
    config = (config or TrainConfig()).validate()
    out = prepare_output_dir(config.out, [CHECKPOINT_NAME, "metrics.json",
                                          *figure_names(config.latent_dim)])
    ckpt = source = None
    if resume is not None:
        source = repr(str(resume))
        ckpt = read_training_checkpoint(resume)
        config = _with_stored_threads(config, ckpt)
        _check_resumable(config, ckpt, source)
    backend = get_backend(config.backend, dtype=config.dtype, seed=config.seed)
    data = _load_checked_data(config, dataset, unit_interval=config.likelihood == "bernoulli")
    D, widths = data.x_train.shape[1], config.hidden
    check_fits_in_memory(
        config, backend, f"{D}-{'-'.join(map(str, widths))}-{config.latent_dim} VAE",
        dense_parameter_count([D, *widths]) + 2 * dense_parameter_count([widths[-1],
                                                                         config.latent_dim])
        + dense_parameter_count([config.latent_dim, *reversed(widths), D]),
        [D, *widths, 2 * config.latent_dim, *reversed(widths), D], len(data.x_train),
        threads=config.threads or 1)

    model = VAE(input_dim=D, hidden=config.hidden, latent_dim=config.latent_dim,
                activation=config.activation, likelihood=config.likelihood, backend=backend,
                init=config.init)
    config = dataclasses.replace(config, threads=resolve_threads(config, model))
    optimizer = _optimizer_for(config, model)
    splitter = _splitter_for(config, model)
    binarize = config.resolved_binarize()
    batches = Minibatches(data.x_train, backend, config.batch_size, shuffle=True,
                          binarize=binarize, seed=config.seed)
    # The test digits are binarized once with a fixed seed, so every run (and
    # every implementation) is scored on the same binary images.
    x_test_host = binarize_fixed(data.x_test) if binarize != "none" else data.x_test
    x_test = backend.to_device(x_test_host)
    sizes = (len(data.x_train), len(data.x_test))

    start, history = 0, []
    if ckpt is not None:
        start, history = _restore(model, optimizer, batches, ckpt, config, sizes[0], source)
    print(f"minivae: {model.num_params():,} parameters, {sizes[0]} training and "
          f"{sizes[1]} test examples of {config.dataset}, {backend}", flush=True)
    if ckpt is not None:
        print(f"resuming {source} after epoch {start} of {config.epochs}", flush=True)

    def save(snapshot):
        with interrupts_deferred():      # a Ctrl-C arriving now takes effect once it is written
            return _save_training_checkpoint(out / CHECKPOINT_NAME, model, config, snapshot,
                                             sizes)

    hint = (f"try a smaller learning rate than {config.lr}"
            + (f" or beta than {config.beta}" if config.beta != 1 else "") + " or dtype float64")
    with _LastGood(out, save, start,
                   _take_snapshot(model, optimizer, batches, start, history)) as last:
        for epoch in range(start + 1, config.epochs + 1):
            history.append(_vae_epoch(model, optimizer, batches, x_test, config, epoch,
                                      splitter, hint))
            snap = _take_snapshot(model, optimizer, batches, epoch, history)
            _check_finite_state(epoch, snap.params, "parameter", hint)
            _check_finite_state(epoch, snap.optimizer_state, "optimizer state", hint)
            last.keep(epoch, snap)
            # printed once the epoch is safe in the snapshot: a Ctrl-C after this
            # line is seen saves this epoch
            print(_epoch_line(history[-1], config), flush=True)
            if out is not None and config.save_every and epoch % config.save_every == 0 \
                    and epoch < config.epochs:
                save(snap)
        if out is not None:
            save(last.snapshot)          # before the final evaluation, which may be long
        metrics = {"config": config.to_json(), "history": history,
                   "test": final_test_metrics(model, x_test, config),
                   "memory": memory_use(backend)}
        if ckpt is not None:
            metrics["resumed_from"] = {"checkpoint": str(resume), "epoch": start}
        if out is not None:
            _write_metrics(out, metrics)
            write_figures(out, model, history, x_test_host, data.y_test, data.image_shape)
    return (metrics, model) if return_model else metrics


#: From this many rows on, a split step is the faster one on 2 cores.  Measured
#: here (784-400-20, float32, samples/s of the split step over the serial one,
#: alternating in one process), with OpenBLAS's SkylakeX / Haswell kernels:
#: batch 64 0.97 / 1.02, 128 1.05 / 1.03, 256 1.04 / 1.06, 512 1.09 / 1.07,
#: 1024 1.47 / 1.24, 2048 1.34 / 1.17.  Pass threads=1 to opt out.
SPLIT_BATCH_MIN = 128


def resolve_threads(config, model) -> int:
    """The number of row blocks T the training step splits each batch into.

    ``config.threads`` when given; for None the automatic choice: 2 on NumPy
    for batches of ≥ SPLIT_BATCH_MIN rows on a machine with 2 cores or more
    (and a likelihood without parameters), else 1.  Only NumPy splits: on CuPy
    one kernel already uses the whole device, so any T there is 1 (with a
    note when more was asked for).

    T changes the numbers in the last bits, not their meaning: the split step
    adds T blocks' gradient sums where the serial step takes one sum over the
    batch, and float addition is not associative.  Same seed and same T give
    bit-identical runs.  Another T gives a run that starts out the same and
    drifts apart as training amplifies those rounding differences (measured on
    the default run, T = 1 against 2 over 10 epochs: train −ELBO curves within
    1e-4 relative, final test −ELBO 0.04 nats apart).  That is why a resumed
    run keeps the stored T.
    """
    if model.backend.name != "numpy":
        if config.threads not in (None, 1):
            print(f"note: threads={config.threads} is ignored on {model.backend.name}: the "
                  f"split-batch step is for NumPy on CPU cores", file=sys.stderr, flush=True)
        return 1
    if config.threads is not None:
        return config.threads
    auto = (config.batch_size >= SPLIT_BATCH_MIN and (os.cpu_count() or 1) >= 2
            and not model.likelihood.params)
    return 2 if auto else 1


def _with_stored_threads(config, ckpt):
    """``config`` with ``threads=None`` replaced by the thread count the checkpoint's run used."""
    stored = ckpt.train_config.get("threads")
    if config.threads is not None or isinstance(stored, bool) or not isinstance(stored, int):
        return config        # (a stored value that is not a count is refused by _check_resumable)
    return dataclasses.replace(config, threads=stored)


def _splitter_for(config, model):
    """A :class:`~minivae.parallel.SplitBatchStep` when the resolved thread count is above 1."""
    threads = resolve_threads(config, model)
    if threads == 1:
        return None
    from .parallel import SplitBatchStep
    return SplitBatchStep(model, threads)


def _vae_epoch(model, optimizer, batches, x_test, config, epoch: int, splitter,
               hint: str) -> dict:
    """One pass over the training batches, then the test ELBO; returns the history entry."""
    t0 = time.perf_counter()
    xp, dtype = model.backend.xp, model.backend.dtype
    steps = len(batches)
    bar = _progress_bar(steps, epoch, config.epochs) \
        if config.progress and sys.stderr is not None else None
    recon_sum, kl_sum = xp.zeros((), dtype=dtype), xp.zeros((), dtype=dtype)
    n_seen, beta_sum, beta = 0, 0.0, config.beta
    try:
        for i, xb in enumerate(batches, start=1):
            beta = kl_weight(config.beta, config.kl_warmup_epochs, (epoch - 1) * steps + i, steps)
            if splitter is None:
                o = model.forward(xb, check=False)
                model.backward(beta=beta, accumulate=False)   # grads ← ∂L/∂θ
                recon, kl = o.recon, o.kl
            else:                                  # the same step, in row blocks on threads
                recon, kl = splitter.step(xb, beta)
            optimizer.step()
            recon_sum += recon.sum()
            kl_sum += kl.sum()
            n_seen += xb.shape[0]
            beta_sum += beta
            if bar is not None:
                bar.update(1)
                if bar.n % 10 == 0:
                    bar.set_postfix(neg_elbo=f"{float(recon_sum + kl_sum) / n_seen:.2f}")
    finally:
        if bar is not None:
            bar.close()
    train_recon, train_kl = float(recon_sum) / n_seen, float(kl_sum) / n_seen
    _check_finite_loss(train_recon + train_kl, epoch, hint)
    test = evaluate_elbo(model, x_test, n_samples=config.eval_samples, check=False)
    seconds = time.perf_counter() - t0
    return {"epoch": epoch, "train_neg_elbo": train_recon + train_kl,
            "train_recon": train_recon, "train_kl": train_kl,
            "test_neg_elbo": test["neg_elbo"], "test_recon": test["recon"],
            "test_kl": test["kl"], "beta": beta, "beta_mean": beta_sum / steps,
            "seconds": seconds}


def _epoch_line(h: dict, config) -> str:
    """The one line printed per epoch."""
    warm = f"  β {h['beta']:.3f}" if config.kl_warmup_epochs else ""
    return (f"epoch {h['epoch']:3d}/{config.epochs}  train -ELBO {h['train_neg_elbo']:8.3f}  "
            f"test -ELBO {h['test_neg_elbo']:8.3f}  (recon {h['test_recon']:.3f}, "
            f"KL {h['test_kl']:.3f}){warm}  {h['seconds']:.1f}s")


def final_test_metrics(model, x_test, config) -> dict:
    """The final ``"test"`` object: −ELBO terms (z sampled), active units, and IW −log p(x)."""
    n_eval = max(10, config.eval_samples)
    test = evaluate_elbo(model, x_test, n_samples=n_eval, check=False)
    count, _ = active_units(model, x_test, threshold=ACTIVE_UNIT_THRESHOLD)
    test.update({"n_examples": int(x_test.shape[0]), "z": "sampled",
                 "eval_samples_per_example": n_eval, "active_units": count,
                 "active_units_threshold": ACTIVE_UNIT_THRESHOLD})
    if config.iw_samples:
        log_px = iw_log_likelihood(model, x_test, k=config.iw_samples, check=False)
        test.update({"iw_nll": float(-log_px.mean()), "iw_samples": config.iw_samples})
    test["units"] = "nats per example"
    return test


def _progress_bar(total, epoch, epochs):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, unit="batch",
                file=sys.stderr, dynamic_ncols=True)


def figure_names(latent_dim: int) -> list:
    """The figures :func:`write_figures` writes for a VAE with this latent dimension."""
    names = ["reconstructions.png", "samples.png", "loss.png", "loss_terms.png",
             "latent_scatter.png"]
    return names + (["manifold.png"] if latent_dim == 2 else [])


def write_figures(out: Path, model, history: list, x_test_host, y_test, image_shape) -> list:
    """Write the VAE's figures into ``out`` (see :func:`figure_names`); return their names.

    reconstructions.png: 10 test digits above their reconstructions E[x|z=μ(x)];
    samples.png: 64 decoded draws z ~ N(0, I); loss.png: train and test −ELBO
    per epoch; loss_terms.png: −ELBO, reconstruction and KL per epoch (and the
    KL weight β when it is not 1); latent_scatter.png: μ(x) of the test digits
    coloured by label (PCA when latent_dim > 2); manifold.png (latent_dim 2):
    the decoded grid of z at normal quantiles.
    """
    from . import plots

    be = model.backend
    x = x_test_host[:10]
    plots.plot_reconstructions(x, be.to_numpy(model.reconstruct(x)), out / "reconstructions.png",
                               image_shape)
    plots.plot_samples(be.to_numpy(model.sample(64)), out / "samples.png", image_shape)
    plots.plot_curves(history, ["train_neg_elbo", "test_neg_elbo"], out / "loss.png",
                      title="negative ELBO (z sampled)")
    plots.plot_loss_terms(history, out / "loss_terms.png")
    mu = np.concatenate([be.to_numpy(model.encode(x_test_host[s:s + 1000])[0])
                         for s in range(0, len(x_test_host), 1000)])
    plots.plot_latent_scatter(mu, y_test, out / "latent_scatter.png")
    if model.latent_dim == 2:
        plots.plot_manifold(model, out / "manifold.png", n=20, image_shape=image_shape)
    return figure_names(model.latent_dim)


# -- the autoencoder and the denoising autoencoder -----------------------------

@dataclass
class AETrainConfig(RunConfig):
    """Every setting of an autoencoder or denoising-autoencoder run.

    The defaults: 784-256-64-256-784 (a code of 64) with ReLU and a sigmoid
    output, Adam at 1e-3, batches of 128, 30 epochs, float32 on NumPy.
    ``corruption=None`` trains the plain autoencoder; a name (``"gaussian"``,
    ``"masking"``, ``"salt-pepper"``) trains the denoising one with that
    χ(x̃|x) at ``noise_level`` (``None``: the corruption's default level);
    ``clip`` (x̃ clipped to [0, 1]) concerns the Gaussian noise only.  With a
    sigmoid output or a corruption the pixels must lie in [0, 1].
    ``out=None`` trains without writing files.
    """

    epochs: int = 30
    hidden: tuple = (256,)
    out: str | None = "runs/autoencoder"
    bottleneck: int = 64
    output: str = "sigmoid"
    corruption: str | None = None
    noise_level: float | None = None
    clip: bool = True

    def make_corruption(self):
        """The :class:`~minivae.corruption.Corruption` of this run, or None for the plain AE."""
        if self.corruption is None:
            if self.noise_level is not None:
                raise ValueError(f"noise_level={self.noise_level!r} needs a corruption; expected "
                                 f"corruption to be one of {tuple(CORRUPTIONS)}, got None")
            return None
        options = {"clip": self.clip} if self.corruption == "gaussian" else {}
        return make_corruption(self.corruption, self.noise_level, **options)

    def validate(self) -> "AETrainConfig":
        """Raise ValueError naming the first bad setting; return self."""
        self._validate_shared()
        _check_choice(self, "output", AE_OUTPUTS)
        _check_positive_ints(self, "bottleneck")
        self.make_corruption()  # checks the corruption's name and level
        return self

    def to_json(self) -> dict:
        d = super().to_json()
        corruption = self.make_corruption()
        d["noise_level"] = None if corruption is None else corruption.level
        return d


def _squared_errors(model, x_test, x_test_tilde) -> dict:
    """Test squared errors: on clean digits, and (denoising) on the fixed corrupted ones."""
    result = {"clean": evaluate_reconstruction(model, x_test)}
    if x_test_tilde is not None:
        result["corrupted"] = evaluate_reconstruction(model, x_test, x_input=x_test_tilde)
    return result


def train_autoencoder(config: AETrainConfig | None = None, dataset=None,
                      return_model: bool = False):
    """Train an autoencoder (or, with ``config.corruption``, a denoising one); return the metrics.

    With ``return_model`` the result is ``(metrics, model)``.  ``dataset`` may
    be a :class:`minivae.data.Dataset` to train on instead of loading
    ``config.dataset``.  The pixels are used as they are (no binarization).

    The cost is L = 1/n Σ_i ‖x_i − f(g(x̃_i))‖² per batch (x̃ = x for the plain
    autoencoder; for the denoising one a fresh x̃ ~ χ(x̃|x) is drawn for every
    batch inside ``model.forward``).  Every squared error is reported two ways:
    ``sse_per_example`` (the cost: summed over the D pixels, averaged over the
    examples) and ``mse_per_pixel`` = sse_per_example / D; ``mse`` is an alias
    of ``mse_per_pixel``.

    The returned dict holds ``"config"``, ``"history"`` (per epoch:
    ``train_sse_per_example``, on the inputs the model trained on, so on x̃
    for the denoising model; ``test_sse_per_example`` and
    ``test_mse_per_pixel`` on the clean test digits; for the denoising model
    ``test_corrupted_sse_per_example`` and ``test_corrupted_mse_per_pixel``,
    reconstructions of the corrupted test digits scored against the clean
    ones; ``seconds``) and ``"test"``: the final clean-digit errors and, for
    the denoising model, a ``"corrupted"`` object with the same keys plus
    ``input_mse_per_pixel``, the error of x̃ itself (what copying the input
    would score).  The corrupted test digits are drawn once, with a fixed
    seed (:func:`minivae.corruption.corrupt_fixed`), so every run and every
    model is scored on the same x̃.
    """
    config = (config or AETrainConfig()).validate()
    out = prepare_output_dir(config.out, AE_OUTPUT_FILES)
    backend = get_backend(config.backend, dtype=config.dtype, seed=config.seed)
    corruption = config.make_corruption()
    data = _load_checked_data(config, dataset,
                              unit_interval=config.output == "sigmoid" or corruption is not None)
    D, widths = data.x_train.shape[1], [*config.hidden, config.bottleneck]
    check_fits_in_memory(config, backend, f"{D}-{'-'.join(map(str, widths))} autoencoder",
                         dense_parameter_count([D, *widths])
                         + dense_parameter_count([*reversed(widths), D]),
                         [D, *widths, *reversed(widths[:-1]), D], len(data.x_train))

    architecture = dict(input_dim=D, hidden=config.hidden,
                        bottleneck=config.bottleneck, activation=config.activation,
                        output=config.output, backend=backend)
    model = Autoencoder(**architecture) if corruption is None else \
        DenoisingAutoencoder(**architecture, corruption=corruption)
    optimizer = _optimizer_for(config, model)
    batches = Minibatches(data.x_train, backend, config.batch_size, shuffle=True,
                          seed=config.seed)
    x_test_host = data.x_test
    x_test = backend.to_device(x_test_host)
    x_test_tilde_host = x_test_tilde = None
    if corruption is not None:
        x_test_tilde_host = corrupt_fixed(corruption, x_test_host, seed=CORRUPTED_TEST_SEED)
        x_test_tilde = backend.to_device(x_test_tilde_host)

    history = []
    kind = "autoencoder" if corruption is None else \
        f"denoising autoencoder ({corruption.describe()})"
    print(f"minivae: {kind}, {model.num_params():,} parameters, {len(data.x_train)} training "
          f"and {len(data.x_test)} test examples of {config.dataset}, {backend}", flush=True)

    def save(epoch_params):     # the checkpoint of an autoencoder run holds its weights only
        with interrupts_deferred():
            return save_checkpoint(out / CHECKPOINT_NAME, model, params=epoch_params,
                                   extra={"train_config": config.to_json()})

    hint = f"try a smaller learning rate than {config.lr} or dtype float64"

    def weights():
        return {k: _host_copy(backend, v) for k, v in model.params.items()}

    with _LastGood(out, save, 0, weights()) as last:
        for epoch in range(1, config.epochs + 1):
            entry, line = _ae_epoch(model, optimizer, batches, x_test, x_test_tilde, config,
                                    epoch, hint)
            snap = weights()
            _check_finite_state(epoch, snap, "parameter", hint)
            _check_finite_state(epoch, optimizer.state_dict(), "optimizer state", hint)
            history.append(entry)
            last.keep(epoch, snap)
            print(line, flush=True)
        if out is not None:
            save(last.snapshot)          # before the final evaluation
        metrics = {"config": config.to_json(), "history": history,
                   "test": _final_squared_errors(model, x_test, x_test_tilde, corruption),
                   "memory": memory_use(model.backend)}
        if out is not None:
            write_autoencoder_outputs(out, model, metrics, x_test_host, x_test_tilde_host,
                                      data.image_shape)
    return (metrics, model) if return_model else metrics


def _ae_epoch(model, optimizer, batches, x_test, x_test_tilde, config, epoch: int, hint: str):
    """One pass over the training batches, then the test errors; return (history entry, line)."""
    backend = model.backend
    t0 = time.perf_counter()
    bar = _progress_bar(len(batches), epoch, config.epochs) \
        if config.progress and sys.stderr is not None else None
    sse_sum = backend.xp.zeros((), dtype=backend.dtype)
    n_seen = 0
    try:
        for xb in batches:
            o = model.forward(xb, check=False)   # the denoising model draws x̃ ~ χ(x̃|x) here
            model.backward(accumulate=False)     # grads ← ∂L/∂θ
            optimizer.step()
            sse_sum += o.sse.sum()
            n_seen += xb.shape[0]
            if bar is not None:
                bar.update(1)
                if bar.n % 10 == 0:
                    bar.set_postfix(sse=f"{float(sse_sum) / n_seen:.2f}")
    finally:
        if bar is not None:
            bar.close()
    train_sse = float(sse_sum) / n_seen
    _check_finite_loss(train_sse, epoch, hint)
    test = _squared_errors(model, x_test, x_test_tilde)
    seconds = time.perf_counter() - t0
    entry = {"epoch": epoch, "train_sse_per_example": train_sse,
             "train_mse_per_pixel": train_sse / model.input_dim,
             "test_sse_per_example": test["clean"]["sse_per_example"],
             "test_mse_per_pixel": test["clean"]["mse_per_pixel"]}
    line = (f"epoch {epoch:3d}/{config.epochs}  train SSE {train_sse:8.3f}  "
            f"test SSE {test['clean']['sse_per_example']:8.3f} "
            f"(MSE {test['clean']['mse_per_pixel']:.5f})")
    if "corrupted" in test:
        entry["test_corrupted_sse_per_example"] = test["corrupted"]["sse_per_example"]
        entry["test_corrupted_mse_per_pixel"] = test["corrupted"]["mse_per_pixel"]
        line += (f"  corrupted test SSE {test['corrupted']['sse_per_example']:8.3f} "
                 f"(MSE {test['corrupted']['mse_per_pixel']:.5f})")
    entry["seconds"] = seconds
    return entry, f"{line}  {seconds:.1f}s"


def _final_squared_errors(model, x_test, x_test_tilde, corruption) -> dict:
    """The final ``"test"`` object of an autoencoder run (see :func:`train_autoencoder`)."""
    final = _squared_errors(model, x_test, x_test_tilde)
    units = {"n_examples": int(x_test.shape[0]), "pixels_per_example": model.input_dim,
             "units": "sse_per_example: squared error summed over the pixels, mean over the "
                      "examples (the training cost); mse_per_pixel = sse_per_example / "
                      "pixels_per_example; mse is mse_per_pixel"}
    test_metrics = {**final["clean"], **units}
    if corruption is not None:
        r = x_test_tilde - x_test
        test_metrics["corrupted"] = {
            **final["corrupted"], "corruption": corruption.config(), "seed": CORRUPTED_TEST_SEED,
            "input_mse_per_pixel": float((r * r).mean()),
            "what": "reconstructions of the corrupted test digits x̃, scored against the clean "
                    "digits; input_mse_per_pixel scores x̃ itself"}
    return test_metrics


#: The files an autoencoder run writes into ``config.out``.
AE_OUTPUT_FILES = (CHECKPOINT_NAME, "metrics.json", "reconstructions.png", "loss.png")


def write_autoencoder_outputs(out: Path, model, metrics: dict, x_test_host, x_test_tilde_host,
                              image_shape) -> None:
    """Write metrics.json, reconstructions.png and loss.png into ``out``.

    (checkpoint.npz is written by :func:`train_autoencoder` before the final
    evaluation.)

    reconstructions.png shows 10 test digits: clean above their reconstructions
    for the autoencoder; clean, corrupted (x̃) and the reconstruction of x̃ for
    the denoising one.
    """
    from . import plots

    backend = model.backend
    _write_metrics(out, metrics)
    x = x_test_host[:10]
    if x_test_tilde_host is None:
        rows = [x, backend.to_numpy(model.reconstruct(x))]
        labels = ["data", "recon."]
        title = "test digits x (top) and their reconstructions f(g(x)) (bottom)"
        keys = ["train_sse_per_example", "test_sse_per_example"]
    else:
        x_tilde = x_test_tilde_host[:10]
        rows = [x, x_tilde, backend.to_numpy(model.reconstruct(x_tilde))]
        labels = ["clean x", "corrupted x̃", "f(g(x̃))"]
        title = f"denoising, {model.corruption.describe()}"
        keys = ["train_sse_per_example", "test_sse_per_example", "test_corrupted_sse_per_example"]
    plots.plot_image_rows(rows, labels, out / "reconstructions.png", image_shape, title=title)
    plots.plot_curves(metrics["history"], keys, out / "loss.png",
                      ylabel=f"squared error per example (sum over {model.input_dim} pixels)",
                      title="the cost L = mean over examples of ‖x − x̂‖²")
