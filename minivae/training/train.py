"""Training runs: a config in, a trained model and its metrics (and files) out.

:func:`train_vae` and :func:`train_autoencoder` put the pieces together, in
the order a run needs them::

    config   validated; the output directory checked before any work   (minivae.training.config)
    data     loaded and checked; the test digits fixed once             (minivae.data)
    model    built, checked to fit in memory; threads and optimizer     (minivae.training.resources)
    resume   the stored state restored (VAE)                            (minivae.training.resume)
    fit      epochs of steps; the last good state kept                  (minivae.training.fit, .steps)
    finish   final checkpoint, final test metrics, metrics and figures  (minivae.training.outputs)

Nothing is lost when a run stops early.  After every epoch the parameters and
the optimizer's state are checked to be finite, and only a finite state is
ever saved.  When the loss or that state becomes NaN or Inf, the state after
the last finite epoch is saved and :class:`TrainingDiverged` says where.
Ctrl-C (KeyboardInterrupt; SIGTERM too under
:func:`minivae.training.interrupts.sigterm_as_interrupt`, as the command line runs)
while training or evaluating saves the state after the last completed epoch
and raises :class:`TrainingInterrupted`, a KeyboardInterrupt that names the
file; a second Ctrl-C during that save is held back until it is written.  The
final checkpoint is written before the final evaluation, so a run killed
while evaluating (a large ``iw_samples``) keeps its weights.
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path

import numpy as np

from .checkpoint import TrainingCheckpoint, read_training_checkpoint
from .config import (RESUME_MAY_CHANGE, AEConfig, DAEConfig,
                     RunConfig, VAEConfig)
from ..corruption import corrupt_fixed
from ..data import DataError, Minibatches, binarize_fixed, check_images, load_dataset
from .files import OutputError, claimed_output_dir
from .fit import LastGood, TrainingDiverged, TrainingInterrupted, fit
from .interrupts import interrupts_deferred
from ..likelihoods import make_likelihood
from ..models.autoencoder import Autoencoder
from ..models.denoising import DenoisingAutoencoder
from ..models.vae import VAE
from ..numerics import FIXED_SEED
from .outputs import (AE_OUTPUT_FILES, CHECKPOINT_NAME, figure_names, memory_use,
                      write_autoencoder_figures, write_figures, write_metrics)
from .resources import (SPLIT_BATCH_MIN, backend_for, check_autoencoder_fits, check_vae_fits,
                        optimizer_for, resolve_threads, splitter_for)
from .resume import (restore, resumed_config, save_training_checkpoint, save_weights,
                     take_snapshot)
from .steps import ACTIVE_UNIT_THRESHOLD, AEStep, IWAEStep, VAEStep, kl_weight

#: What ``from minivae.training.train import …`` offers: the two training functions, their
#: configs and errors, and the names a caller of them may need.
__all__ = ["train_vae", "train_autoencoder", "RunConfig", "VAEConfig", "AEConfig",
           "DAEConfig", "RESUME_MAY_CHANGE", "TrainingDiverged", "TrainingInterrupted",
           "kl_weight", "SPLIT_BATCH_MIN", "ACTIVE_UNIT_THRESHOLD", "figure_names"]


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
    width, pixels = data.x_train.shape[1], int(np.prod(data.image_shape))
    if pixels != width:        # the figures reshape rows into images: know it before training
        raise DataError(f"{data.name!r} has {width} values per example, but its image_shape "
                        f"{tuple(data.image_shape)} holds {pixels}; give the Dataset the "
                        f"image_shape of its rows")
    return data


def _saver(out, write):
    """``save(snapshot)``: ``write(path, snapshot)`` into ``out``, with Ctrl-C held back."""
    def save(snapshot):
        with interrupts_deferred():      # a Ctrl-C arriving now takes effect once it is written
            return write(out / CHECKPOINT_NAME, snapshot)
    return save


def train_vae(config: VAEConfig | None = None, dataset=None, return_model: bool = False,
              resume=None):
    """Train a VAE as ``config`` says; return the metrics dict (also saved as metrics.json).

    With ``return_model`` the result is ``(metrics, model)``.  ``dataset`` may
    be a :class:`minivae.data.Dataset` to train on instead of loading
    ``config.dataset``.  The returned dict holds ``"config"``, ``"history"``
    (one entry per epoch: train and test negative ELBO, recon and KL in nats
    per example, the KL weight ``beta`` of the epoch's last step and its mean
    ``beta_mean`` over the epoch, seconds), ``"test"`` (the final test terms
    with z sampled, ``active_units``, and with ``config.iw_samples`` = K > 0
    ``iw_nll`` = −mean_x log p̂(x), the importance-weighted estimate with K
    samples) and ``"memory"``.

    It writes into ``config.out`` (unless None): ``metrics.json``,
    ``checkpoint.npz`` (weights, optimizer state, epoch, history, random
    generator states: see :mod:`minivae.training.resume`) and the figures of
    :func:`minivae.training.outputs.figure_names`.

    ``resume`` is the path of a training checkpoint (the ``checkpoint.npz``
    of an earlier run), or one already read
    (:func:`~minivae.training.checkpoint.read_training_checkpoint`): training
    continues from the epoch stored there up to ``config.epochs`` epochs in
    total.  ``config`` must agree with the stored config except in
    :data:`RESUME_MAY_CHANGE`, else CheckpointError
    (:func:`~minivae.training.resume.resumed_config`).
    ``config.threads=None`` resolves to a thread count
    (:func:`minivae.training.resources.resolve_threads`) stored in the config the run
    writes; a resumed run with ``threads=None`` takes the stored count.  With
    2 or more, BLAS is held at one thread for all of the epochs, their test
    metrics included (:meth:`~minivae.training.parallel.SplitBatchStep.one_blas_thread`
    says why); the final test metrics use BLAS's threads again.
    """
    config = (config or VAEConfig()).validate()
    ckpt = None
    if resume is not None:
        ckpt = resume if isinstance(resume, TrainingCheckpoint) else \
            read_training_checkpoint(resume)
        config = resumed_config(config, ckpt)
    names = [CHECKPOINT_NAME, "metrics.json", *figure_names(config.latent_dim)]
    with claimed_output_dir(config.out, names) as out:
        _keep_earlier_checkpoint(out, config, ckpt)
        return _train_vae(config, out, dataset, return_model, ckpt)


def _keep_earlier_checkpoint(out, config, ckpt=None) -> None:
    """Refuse to start a run that would replace the checkpoint an earlier run left in ``out``.

    Allowed: ``config.overwrite``, or resuming from that very file.  (A symbolic
    link of that name is replaced, not written through, so it loses nothing.)
    """
    target = None if out is None else out / CHECKPOINT_NAME
    if target is None or target.is_symlink() or not target.is_file() or config.overwrite:
        return
    if ckpt is not None and Path(ckpt.path).resolve() == target.resolve():
        return
    how = "continue that run with --resume {t}, replace it with --overwrite (overwrite=True)" \
        if isinstance(config, VAEConfig) else "replace it with --overwrite (overwrite=True)"
    raise OutputError(f"{str(target)!r} holds the checkpoint of an earlier run, which this run "
                      f"would replace; {how.format(t=target)}, or choose another --out")


def _train_vae(config, out, dataset, return_model, ckpt):
    """:func:`train_vae` in its claimed output directory ``out`` (None: no files)."""
    source = None if ckpt is None else repr(ckpt.path)
    backend = backend_for(config)
    data = _load_checked_data(config, dataset, unit_interval=config.likelihood == "bernoulli")
    check_vae_fits(config, backend, data.x_train.shape[1], len(data.x_train))

    model = VAE(input_dim=data.x_train.shape[1], hidden=config.hidden,
                latent_dim=config.latent_dim, activation=config.activation,
                likelihood=make_likelihood(config.likelihood, backend,
                                           **config.likelihood_options(data.x_train)),
                backend=backend, init=config.init, posterior=config.posterior)
    config = dataclasses.replace(config, threads=resolve_threads(config, model))
    # the ELBO's step in row blocks on threads (NumPy, threads > 1), else None: the serial step
    splitter = splitter_for(config, model) if config.objective == "elbo" else None
    optimizer = optimizer_for(config, model, split=splitter is not None)
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
        start, history = restore(model, optimizer, batches, ckpt, config, sizes[0], source)
    print(f"minivae: {model.num_params():,} parameters, {sizes[0]} training and "
          f"{sizes[1]} test examples of {data.name}, {backend}", flush=True)
    if ckpt is not None:
        print(f"resuming {source} after epoch {start} of {config.epochs}", flush=True)

    step = VAEStep(model, config, x_test, len(batches), splitter) \
        if config.objective == "elbo" else IWAEStep(model, config, x_test, len(batches))
    save = _saver(out, lambda path, snap: save_training_checkpoint(
        path, model, config, snap, data.name, sizes))

    snapshot = functools.partial(take_snapshot, model, optimizer, batches)   # (epoch, history)

    # with the split step, BLAS keeps to one thread for all of fit (the epochs' test −ELBO
    # too): its own threads would spin on the blocks' cores (SplitBatchStep.one_blas_thread)
    blas = splitter.one_blas_thread() if splitter is not None else contextlib.nullcontext()
    with LastGood(out, save, start, snapshot(start, history)) as last:
        with blas:
            history = fit(step, optimizer, batches, last, snapshot, epochs=config.epochs,
                          start=start, history=history, progress=config.progress,
                          save=save if out is not None else None, save_every=config.save_every)
        if out is not None:
            save(last.snapshot)          # before the final evaluation, which may be long
        metrics = {"config": config.to_json(), "dataset": data.name, "history": history,
                   "test": step.final_metrics()}
        if ckpt is not None:
            metrics["resumed_from"] = {"checkpoint": ckpt.path, "epoch": start}
        if out is not None:
            write_figures(out, model, history, x_test_host, data.y_test, data.image_shape)
        metrics["memory"] = memory_use(backend)       # after the figures: the run's peak
        if out is not None:
            write_metrics(out, metrics)
    return (metrics, model) if return_model else metrics


def train_autoencoder(config: AEConfig | None = None, dataset=None,
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
    model is scored on the same x̃.  It writes :data:`AE_OUTPUT_FILES` into
    ``config.out``; its checkpoint holds the weights only.
    """
    config = (config or AEConfig()).validate()
    with claimed_output_dir(config.out, AE_OUTPUT_FILES) as out:
        _keep_earlier_checkpoint(out, config)
        return _train_autoencoder(config, out, dataset, return_model)


def _train_autoencoder(config, out, dataset, return_model):
    """:func:`train_autoencoder` in its claimed output directory ``out`` (None: no files)."""
    backend = backend_for(config)
    corruption = config.make_corruption()
    data = _load_checked_data(config, dataset,
                              unit_interval=config.output == "sigmoid" or corruption is not None)
    check_autoencoder_fits(config, backend, data.x_train.shape[1], len(data.x_train))

    architecture = dict(input_dim=data.x_train.shape[1], hidden=config.hidden,
                        bottleneck=config.bottleneck, activation=config.activation,
                        output=config.output, backend=backend)
    model = Autoencoder(**architecture) if corruption is None else \
        DenoisingAutoencoder(**architecture, corruption=corruption)
    optimizer = optimizer_for(config, model)
    batches = Minibatches(data.x_train, backend, config.batch_size, shuffle=True,
                          seed=config.seed)
    x_test_host = data.x_test
    x_test = backend.to_device(x_test_host)
    x_test_tilde_host = x_test_tilde = None
    if corruption is not None:
        x_test_tilde_host = corrupt_fixed(corruption, x_test_host, seed=FIXED_SEED)
        x_test_tilde = backend.to_device(x_test_tilde_host)

    kind = "autoencoder" if corruption is None else \
        f"denoising autoencoder ({corruption.describe()})"
    print(f"minivae: {kind}, {model.num_params():,} parameters, {len(data.x_train)} training "
          f"and {len(data.x_test)} test examples of {data.name}, {backend}", flush=True)

    step = AEStep(model, config, x_test, x_test_tilde)
    save = _saver(out, lambda path, snap: save_weights(path, model, config, snap, data.name))

    snapshot = functools.partial(take_snapshot, model, optimizer, batches)   # (epoch, history)

    with LastGood(out, save, 0, snapshot(0, [])) as last:
        history = fit(step, optimizer, batches, last, snapshot, epochs=config.epochs,
                      progress=config.progress)
        if out is not None:
            save(last.snapshot)          # before the final evaluation
        metrics = {"config": config.to_json(), "dataset": data.name, "history": history,
                   "test": step.final_metrics()}
        if out is not None:
            write_autoencoder_figures(out, model, history, x_test_host, x_test_tilde_host,
                                      data.image_shape)
        metrics["memory"] = memory_use(backend)       # after the figures: the run's peak
        if out is not None:
            write_metrics(out, metrics)
    return (metrics, model) if return_model else metrics
