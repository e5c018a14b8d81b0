"""Snapshots of a run's state, the training checkpoint written from them, and resuming.

A snapshot holds host copies of everything the next epoch depends on: the
weights, the optimizer's moments and step count, the epoch reached, the
history, and the states of both random generators (the backend's, which draws
every ε and every dynamic binarization, and the minibatch shuffler's).
Checkpoints are written from a snapshot, never from the live model, so Ctrl-C
in the middle of an epoch still saves a consistent state: the one after the
last completed epoch.

Resuming restores all of it, so on NumPy a run of 4 epochs and a run of 2
epochs resumed to 4 end with bit-identical weights.  CuPy's generators cannot
be serialized: resuming under CuPy (or across backends) re-seeds the
backend's generator from (seed, epoch), a statistically equivalent
continuation that is not bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import dataclasses
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .checkpoint import (CheckpointError, load_optimizer_state, load_params, save_checkpoint,
                         unfit_for_dtype)
from .config import RESUME_MAY_CHANGE, VAEConfig


def _is_number(v) -> bool:
    return isinstance(v, (bool, int, float, np.number))


def _host_copy(backend, a) -> np.ndarray:
    """A host array that later updates of the device array ``a`` cannot change."""
    return np.array(backend.to_numpy(a), copy=True)


def _generator_state(rng):
    """A NumPy Generator's state (a JSON-able dict of ints); None for CuPy's (not serializable)."""
    return rng.bit_generator.state if isinstance(rng, np.random.Generator) else None


@dataclass
class Snapshot:
    """Host copies of everything the next epoch depends on, taken at the end of an epoch."""

    epoch: int
    params: dict
    optimizer_state: dict
    history: list
    rng: dict


def take_snapshot(model, optimizer, batches, epoch: int, history: list) -> Snapshot:
    be = model.backend
    return Snapshot(
        epoch=epoch,
        params={k: _host_copy(be, v) for k, v in model.params.items()},
        optimizer_state={k: v if _is_number(v) else _host_copy(be, v)
                         for k, v in optimizer.state_dict().items()},
        history=[dict(h) for h in history],   # its own entries: the loop appends on
        # backend.rng draws every ε, dynamic binarization and evaluation sample;
        # the Minibatches generator draws each epoch's order.
        rng={"backend": be.name, "backend_rng": _generator_state(be.rng),
             "shuffle": batches.shuffle_state})


def save_training_checkpoint(path: Path, model, config, snap: Snapshot, dataset: str,
                             data_sizes) -> Path:
    """Write the resumable checkpoint of ``snap`` (see :mod:`minivae.training.checkpoint` for the format)."""
    training = {"epoch": snap.epoch, "history": snap.history,
                "optimizer": {"name": config.optimizer},
                "rng": snap.rng, "data": {"n_train": data_sizes[0], "n_test": data_sizes[1]}}
    return save_checkpoint(path, model, extra={"train_config": config.to_json(),
                                               "dataset": dataset},
                           params=snap.params, optimizer_state=snap.optimizer_state,
                           training=training)


def save_weights(path: Path, model, config, snap: Snapshot, dataset: str) -> Path:
    """Write the weights of ``snap`` only (the checkpoint of an autoencoder run)."""
    return save_checkpoint(path, model, params=snap.params,
                           extra={"train_config": config.to_json(), "dataset": dataset})


def resumed_config(config, ckpt, given=None):
    """The config of the run that continues ``ckpt``, or CheckpointError saying why it cannot.

    The one place a resumed run's settings are worked out.  ``ckpt`` is a read
    :class:`~minivae.training.checkpoint.TrainingCheckpoint`.  With ``given``
    (the names a command line wrote) every setting not given is the stored one,
    those of :data:`RESUME_MAY_CHANGE` included (the data directory, the
    importance samples, the save interval of the run continue as they were),
    but ``overwrite``, a permission of this command only; without ``given`` (a
    library call) all of ``config`` counts as given.  A given setting outside
    :data:`RESUME_MAY_CHANGE` must define the same run as the stored one
    (:meth:`VAEConfig.defining`: ``k`` 5 is the default ``k``), and
    ``threads=None`` takes the stored count.
    """
    source = repr(ckpt.path)
    if ckpt.meta.get("model") != "VAE":
        raise CheckpointError(f"{source} holds a {ckpt.meta.get('model')!r}, not a VAE")
    try:
        stored = VAEConfig.from_json(ckpt.train_config)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the stored training config is not valid "
                              f"({exc})") from None
    taken = {f.name: getattr(stored, f.name) for f in dataclasses.fields(VAEConfig)
             if given is not None and f.name not in given and f.name != "overwrite"}
    if config.threads is None and stored.threads is not None:
        taken["threads"] = stored.threads      # the split step's sums: keep the stored T
    config = dataclasses.replace(config, **taken)
    asked, kept = config.defining(), stored.defining()
    differ = [f"{k} (stored {kept[k]!r}, asked {asked[k]!r})" for k in kept
              if kept[k] != asked[k]]
    if differ:
        raise CheckpointError(
            f"{source} was trained with other settings: {', '.join(differ)}. A resumed run "
            f"keeps the stored settings (only {', '.join(RESUME_MAY_CHANGE)} may change); "
            f"drop the conflicting settings or start a new run")
    bad = unfit_for_dtype({**ckpt.params, **{f"optimizer {k}": v for k, v in
                                             ckpt.optimizer_state.items() if hasattr(v, "dtype")}},
                          config.dtype)
    if bad is not None:
        raise CheckpointError(f"{source}: {bad[0]} holds {bad[1]:.3g}, which does not fit the "
                              f"run's {config.dtype}")
    done = ckpt.training["epoch"]
    if config.epochs < done:
        raise ValueError(f"epochs must be at least the {done} epochs {source} has already "
                         f"trained (epochs counts the total), got {config.epochs}")
    return config


def restore(model, optimizer, batches, ckpt, config, n_train: int, source: str):
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
