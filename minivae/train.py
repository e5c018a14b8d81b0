"""The fit loop for the VAE: epochs of minibatch steps, evaluation, and what a run writes.

One training step, the whole of the algorithm::

    model.zero_grad()              # grads ← 0
    o = model.forward(x_batch)     # ε drawn, z = μ + σ ε, terms per example
    model.backward(beta)           # grads ← ∂ mean(recon + β kl) / ∂θ
    optimizer.step()               # θ ← update(θ, grads)

:func:`train_vae` wraps it with data loading, per-epoch evaluation on the test
digits (z sampled), a progress bar, a guard against NaN, and the outputs in
``config.out``: ``metrics.json``, ``checkpoint.npz``, ``reconstructions.png``,
``samples.png`` and ``loss.png``.

:func:`train_autoencoder` is the same loop for the autoencoder and the
denoising autoencoder (``model.backward()`` takes no β; the denoising model
draws a fresh x̃ ~ χ(x̃|x) inside each ``forward``), evaluated by the squared
error on the clean test digits and, for the denoising model, on one fixed
corruption of them.  It writes ``metrics.json``, ``checkpoint.npz``,
``reconstructions.png`` and ``loss.png``.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .backend import BACKENDS, DTYPES, get_backend
from .checkpoint import atomic_write, save_checkpoint
from .corruption import CORRUPTIONS, corrupt_fixed, make_corruption
from .data import BINARIZE, DATASETS, Minibatches, binarize_fixed, check_images, load_dataset
from .evaluate import evaluate_elbo
from .layers import ACTIVATIONS
from .likelihoods import LIKELIHOODS
from .models.autoencoder import OUTPUTS as AE_OUTPUTS
from .models.autoencoder import Autoencoder, evaluate_reconstruction
from .models.denoising import DenoisingAutoencoder
from .models.vae import VAE
from .optim import OPTIMIZERS, make_optimizer


#: Seed of the one fixed corruption of the test digits (the same for every run).
CORRUPTED_TEST_SEED = 20261125


class TrainingDiverged(FloatingPointError):
    """The loss became NaN or infinite."""


@dataclass
class TrainConfig:
    """Every setting of a VAE training run; the defaults are the classic model.

    784-400-20 with ReLU, a Bernoulli likelihood on dynamically binarized
    digits, Adam at 1e-3, batches of 128, float32 on NumPy.
    ``binarize=None`` means "dynamic" for Bernoulli and "none" for Gaussian.
    ``out=None`` trains without writing files.
    """

    backend: str = "numpy"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    epochs: int = 100
    batch_size: int = 128
    hidden: tuple = (400,)
    latent_dim: int = 20
    activation: str = "relu"
    likelihood: str = "bernoulli"
    binarize: str | None = None
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    beta: float = 1.0
    seed: int = 0
    dtype: str = "float32"
    out: str | None = "runs/vae"
    progress: bool = True
    eval_samples: int = 1

    def resolved_binarize(self) -> str:
        if self.binarize is not None:
            return self.binarize
        return "dynamic" if self.likelihood == "bernoulli" else "none"

    def validate(self) -> "TrainConfig":
        """Raise ValueError naming the first bad setting; return self."""
        for name, options in (("backend", BACKENDS), ("dataset", DATASETS),
                              ("activation", ACTIVATIONS), ("likelihood", LIKELIHOODS),
                              ("optimizer", OPTIMIZERS), ("dtype", DTYPES)):
            _check_choice(self, name, options)
        if self.binarize is not None:
            _check_choice(self, "binarize", BINARIZE)
        _check_positive_ints(self, "epochs", "batch_size", "latent_dim", "eval_samples")
        self.hidden = _checked_hidden(self.hidden)
        _check_positive_numbers(self, "lr", "beta")
        return self

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["binarize"] = self.resolved_binarize()
        return d


# -- pieces shared by the training functions -----------------------------------

def _check_choice(config, name, options) -> None:
    v = getattr(config, name)
    if v not in options:
        raise ValueError(f"unknown {name} {v!r}; expected one of {tuple(options)}")


def _check_positive_ints(config, *names) -> None:
    for name in names:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer, got {v!r}")


def _check_positive_numbers(config, *names) -> None:
    for name in names:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
            raise ValueError(f"{name} must be a positive finite number, got {v!r}")


def _checked_hidden(hidden) -> tuple:
    """``400`` or ``(512, 256)`` as a tuple of positive ints, or ValueError."""
    widths = (hidden,) if isinstance(hidden, (int, np.integer)) else tuple(hidden)
    if not widths or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                         for h in widths):
        raise ValueError(f"hidden must be one or more positive integers, got {hidden!r}")
    return tuple(int(h) for h in widths)


def _load_checked_data(config, dataset, unit_interval: bool):
    """``dataset``, or the one ``config.dataset`` names, with its images checked."""
    data = dataset if dataset is not None else load_dataset(
        config.dataset, config.data_dir, download=config.download)
    check_images(data.x_train, name="x_train", unit_interval=unit_interval)
    check_images(data.x_test, name="x_test", width=data.x_train.shape[1],
                 unit_interval=unit_interval)
    return data


def _optimizer_for(config, model):
    """The optimizer ``config`` names, over ``model.params`` and ``model.grads``."""
    opt_kwargs = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    return make_optimizer(config.optimizer, model.params, model.grads, config.lr, **opt_kwargs)


def _output_dir(config):
    """``config.out`` as a Path, created; None when the run writes no files."""
    out = Path(config.out) if config.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
    return out


def _save_model_and_metrics(out: Path, model, metrics: dict) -> None:
    """checkpoint.npz (with the run's config) and metrics.json, each written atomically."""
    save_checkpoint(out / "checkpoint.npz", model, extra={"train_config": metrics["config"]})
    atomic_write(out / "metrics.json",
                 lambda f: f.write((json.dumps(metrics, indent=2) + "\n").encode()))


def train_vae(config: TrainConfig | None = None, dataset=None, return_model: bool = False):
    """Train a VAE as ``config`` says; return the metrics dict (also saved as metrics.json).

    With ``return_model`` the result is ``(metrics, model)``.

    ``dataset`` may be a :class:`minivae.data.Dataset` to train on instead of
    loading ``config.dataset``.  The returned dict holds ``"config"``,
    ``"history"`` (one entry per epoch: train and test negative ELBO, recon
    and KL in nats per example, seconds) and ``"test"`` (the final test terms,
    z sampled).
    """
    config = (config or TrainConfig()).validate()
    backend = get_backend(config.backend, dtype=config.dtype, seed=config.seed)
    data = _load_checked_data(config, dataset, unit_interval=config.likelihood == "bernoulli")

    model = VAE(input_dim=data.x_train.shape[1], hidden=config.hidden, latent_dim=config.latent_dim,
                activation=config.activation, likelihood=config.likelihood, backend=backend)
    optimizer = _optimizer_for(config, model)
    binarize = config.resolved_binarize()
    batches = Minibatches(data.x_train, backend, config.batch_size, shuffle=True,
                          binarize=binarize, seed=config.seed)
    # The test digits are binarized once with a fixed seed, so every run (and
    # every implementation) is scored on the same binary images.
    x_test_host = binarize_fixed(data.x_test) if binarize != "none" else data.x_test
    x_test = backend.to_device(x_test_host)

    out = _output_dir(config)
    history = []
    use_bar = config.progress and sys.stderr is not None
    print(f"minivae: {model.num_params():,} parameters, {len(data.x_train)} training and "
          f"{len(data.x_test)} test examples of {config.dataset}, {backend}", flush=True)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        bar = _progress_bar(len(batches), epoch, config.epochs) if use_bar else None
        recon_sum = backend.xp.zeros((), dtype=backend.dtype)
        kl_sum = backend.xp.zeros((), dtype=backend.dtype)
        n_seen = 0
        for xb in batches:
            model.zero_grad()
            o = model.forward(xb, check=False)
            model.backward(beta=config.beta)
            optimizer.step()
            recon_sum += o.recon.sum()
            kl_sum += o.kl.sum()
            n_seen += xb.shape[0]
            if bar is not None:
                bar.update(1)
                if bar.n % 10 == 0:
                    bar.set_postfix(neg_elbo=f"{float(recon_sum + kl_sum) / n_seen:.2f}")
        train_recon, train_kl = float(recon_sum) / n_seen, float(kl_sum) / n_seen
        if bar is not None:
            bar.close()
        if not math.isfinite(train_recon + train_kl):
            raise TrainingDiverged(
                f"the training loss became {train_recon + train_kl} in epoch {epoch}; "
                f"try a smaller learning rate than {config.lr} or dtype float64")
        test = evaluate_elbo(model, x_test, n_samples=config.eval_samples, check=False)
        seconds = time.perf_counter() - t0
        history.append({"epoch": epoch, "train_neg_elbo": train_recon + train_kl,
                        "train_recon": train_recon, "train_kl": train_kl,
                        "test_neg_elbo": test["neg_elbo"], "test_recon": test["recon"],
                        "test_kl": test["kl"], "seconds": seconds})
        print(f"epoch {epoch:3d}/{config.epochs}  train -ELBO {train_recon + train_kl:8.3f}  "
              f"test -ELBO {test['neg_elbo']:8.3f}  (recon {test['recon']:.3f}, "
              f"KL {test['kl']:.3f})  {seconds:.1f}s", flush=True)

    final = evaluate_elbo(model, x_test, n_samples=max(10, config.eval_samples), check=False)
    metrics = {"config": config.to_json(), "history": history,
               "test": {**final, "n_examples": int(x_test.shape[0]),
                        "z": "sampled", "eval_samples_per_example": max(10, config.eval_samples),
                        "units": "nats per example"}}
    if out is not None:
        write_outputs(out, model, metrics, x_test_host, data.image_shape)
    return (metrics, model) if return_model else metrics


def _progress_bar(total, epoch, epochs):
    from tqdm import tqdm

    return tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False, unit="batch",
                file=sys.stderr, dynamic_ncols=True)


def write_outputs(out: Path, model, metrics: dict, x_test_host, image_shape) -> None:
    """Write metrics.json, checkpoint.npz and the three figures into ``out``."""
    from . import plots

    backend = model.backend
    _save_model_and_metrics(out, model, metrics)
    x = x_test_host[:10]
    rec = backend.to_numpy(model.reconstruct(x))
    plots.plot_reconstructions(x, rec, out / "reconstructions.png", image_shape)
    plots.plot_samples(backend.to_numpy(model.sample(64)), out / "samples.png", image_shape)
    plots.plot_curves(metrics["history"], ["train_neg_elbo", "test_neg_elbo"], out / "loss.png",
                      title="negative ELBO (z sampled)")


# -- the autoencoder and the denoising autoencoder -----------------------------

@dataclass
class AETrainConfig:
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

    backend: str = "numpy"
    dataset: str = "mnist5k"
    data_dir: str | None = None
    download: bool = False
    epochs: int = 30
    batch_size: int = 128
    hidden: tuple = (256,)
    bottleneck: int = 64
    activation: str = "relu"
    output: str = "sigmoid"
    corruption: str | None = None
    noise_level: float | None = None
    clip: bool = True
    optimizer: str = "adam"
    lr: float = 1e-3
    momentum: float = 0.9
    seed: int = 0
    dtype: str = "float32"
    out: str | None = "runs/autoencoder"
    progress: bool = True

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
        for name, options in (("backend", BACKENDS), ("dataset", DATASETS),
                              ("activation", ACTIVATIONS), ("output", AE_OUTPUTS),
                              ("optimizer", OPTIMIZERS), ("dtype", DTYPES)):
            _check_choice(self, name, options)
        _check_positive_ints(self, "epochs", "batch_size", "bottleneck")
        self.hidden = _checked_hidden(self.hidden)
        _check_positive_numbers(self, "lr")
        self.make_corruption()  # checks the corruption's name and level
        return self

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
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
    backend = get_backend(config.backend, dtype=config.dtype, seed=config.seed)
    corruption = config.make_corruption()
    data = _load_checked_data(config, dataset,
                              unit_interval=config.output == "sigmoid" or corruption is not None)

    architecture = dict(input_dim=data.x_train.shape[1], hidden=config.hidden,
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

    out = _output_dir(config)
    history = []
    use_bar = config.progress and sys.stderr is not None
    kind = "autoencoder" if corruption is None else \
        f"denoising autoencoder ({corruption.describe()})"
    print(f"minivae: {kind}, {model.num_params():,} parameters, {len(data.x_train)} training "
          f"and {len(data.x_test)} test examples of {config.dataset}, {backend}", flush=True)
    for epoch in range(1, config.epochs + 1):
        t0 = time.perf_counter()
        bar = _progress_bar(len(batches), epoch, config.epochs) if use_bar else None
        sse_sum = backend.xp.zeros((), dtype=backend.dtype)
        n_seen = 0
        for xb in batches:
            model.zero_grad()
            o = model.forward(xb, check=False)   # the denoising model draws x̃ ~ χ(x̃|x) here
            model.backward()
            optimizer.step()
            sse_sum += o.sse.sum()
            n_seen += xb.shape[0]
            if bar is not None:
                bar.update(1)
                if bar.n % 10 == 0:
                    bar.set_postfix(sse=f"{float(sse_sum) / n_seen:.2f}")
        train_sse = float(sse_sum) / n_seen
        if bar is not None:
            bar.close()
        if not math.isfinite(train_sse):
            raise TrainingDiverged(
                f"the training loss became {train_sse} in epoch {epoch}; "
                f"try a smaller learning rate than {config.lr} or dtype float64")
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
        history.append(entry)
        print(f"{line}  {seconds:.1f}s", flush=True)

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
    metrics = {"config": config.to_json(), "history": history, "test": test_metrics}
    if out is not None:
        write_autoencoder_outputs(out, model, metrics, x_test_host, x_test_tilde_host,
                                  data.image_shape)
    return (metrics, model) if return_model else metrics


def write_autoencoder_outputs(out: Path, model, metrics: dict, x_test_host, x_test_tilde_host,
                              image_shape) -> None:
    """Write metrics.json, checkpoint.npz, reconstructions.png and loss.png into ``out``.

    reconstructions.png shows 10 test digits: clean above their reconstructions
    for the autoencoder; clean, corrupted (x̃) and the reconstruction of x̃ for
    the denoising one.
    """
    from . import plots

    backend = model.backend
    _save_model_and_metrics(out, model, metrics)
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
