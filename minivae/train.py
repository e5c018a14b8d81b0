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
from .data import BINARIZE, DATASETS, Minibatches, binarize_fixed, check_images, load_dataset
from .evaluate import evaluate_elbo
from .layers import ACTIVATIONS
from .likelihoods import LIKELIHOODS
from .models.vae import VAE
from .optim import OPTIMIZERS, make_optimizer


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
        def positive_int(name):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise ValueError(f"{name} must be a positive integer, got {v!r}")

        def choice(name, options):
            v = getattr(self, name)
            if v not in options:
                raise ValueError(f"unknown {name} {v!r}; expected one of {tuple(options)}")

        choice("backend", BACKENDS)
        choice("dataset", DATASETS)
        choice("activation", ACTIVATIONS)
        choice("likelihood", LIKELIHOODS)
        choice("optimizer", OPTIMIZERS)
        choice("dtype", DTYPES)
        if self.binarize is not None:
            choice("binarize", BINARIZE)
        for name in ("epochs", "batch_size", "latent_dim", "eval_samples"):
            positive_int(name)
        hidden = (self.hidden,) if isinstance(self.hidden, (int, np.integer)) else tuple(self.hidden)
        if not hidden or any(isinstance(h, bool) or not isinstance(h, (int, np.integer)) or h < 1
                             for h in hidden):
            raise ValueError(f"hidden must be one or more positive integers, got {self.hidden!r}")
        self.hidden = tuple(int(h) for h in hidden)
        for name in ("lr", "beta"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0:
                raise ValueError(f"{name} must be a positive finite number, got {v!r}")
        return self

    def to_json(self) -> dict:
        d = dataclasses.asdict(self)
        d["hidden"] = list(self.hidden)
        d["binarize"] = self.resolved_binarize()
        return d


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
    data = dataset if dataset is not None else load_dataset(
        config.dataset, config.data_dir, download=config.download)
    bernoulli = config.likelihood == "bernoulli"
    check_images(data.x_train, name="x_train", unit_interval=bernoulli)
    check_images(data.x_test, name="x_test", width=data.x_train.shape[1], unit_interval=bernoulli)

    model = VAE(input_dim=data.x_train.shape[1], hidden=config.hidden, latent_dim=config.latent_dim,
                activation=config.activation, likelihood=config.likelihood, backend=backend)
    opt_kwargs = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    optimizer = make_optimizer(config.optimizer, model.params, model.grads, config.lr, **opt_kwargs)
    binarize = config.resolved_binarize()
    batches = Minibatches(data.x_train, backend, config.batch_size, shuffle=True,
                          binarize=binarize, seed=config.seed)
    # The test digits are binarized once with a fixed seed, so every run (and
    # every implementation) is scored on the same binary images.
    x_test_host = binarize_fixed(data.x_test) if binarize != "none" else data.x_test
    x_test = backend.to_device(x_test_host)

    out = Path(config.out) if config.out else None
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
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
    save_checkpoint(out / "checkpoint.npz", model, extra={"train_config": metrics["config"]})
    atomic_write(out / "metrics.json",
                 lambda f: f.write((json.dumps(metrics, indent=2) + "\n").encode()))
    x = x_test_host[:10]
    rec = backend.to_numpy(model.reconstruct(x))
    plots.plot_reconstructions(x, rec, out / "reconstructions.png", image_shape)
    plots.plot_samples(backend.to_numpy(model.sample(64)), out / "samples.png", image_shape)
    plots.plot_curves(metrics["history"], ["train_neg_elbo", "test_neg_elbo"], out / "loss.png",
                      title="negative ELBO (z sampled)")
