"""Checkpoints: model weights in a ``.npz`` file, with a JSON description beside them.

Layout of the archive (plain NumPy arrays, no pickles), format version 2::

    __meta__              a 0-d string array holding JSON:
                          {"format": "minivae-checkpoint", "format_version": 2,
                           "model": "VAE", "model_config": {...},
                           "extra": {"train_config": {...}, ...},
                           "training": null, or the state a run resumes from:
                             {"epoch": 12,            epochs completed
                              "history": [...],       one metrics entry per epoch
                              "optimizer": {"name": "Adam", "scalars": {"t": 432}},
                              "rng": {...},           the random generators' states
                              "data": {"n_train": 4500, "n_test": 500}}}
    param/<name>          one array per entry of ``model.params``
                          (e.g. param/encoder.0.W of shape (784, 400))
    optim/<key>           one array per array entry of the optimizer's
                          ``state_dict()`` (Adam: optim/m.encoder.0.W, optim/v.encoder.0.W)
                          -- present only in a training checkpoint

Version 1 (still read) is the same without ``training`` and ``optim/``: a
version-1 file loads as a model but cannot be resumed.

Arrays are stored on the host (``backend.to_numpy``) and loaded onto whatever
backend the reader asks for (``backend.to_device``), so a checkpoint written
under CuPy loads under NumPy and the other way round.

Writes are atomic: the archive goes to a temporary file in the same directory
and is then renamed over the target, so an interrupted save never leaves a
half-written checkpoint under the final name.  Every problem with a file (it
is missing, not a zip, truncated, not a minivae checkpoint, of a newer format,
of another architecture) raises :class:`CheckpointError` with a sentence that
names the file and the problem.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

FORMAT = "minivae-checkpoint"
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or does not fit the model."""


def atomic_write(path, write) -> Path:
    """Call ``write(file_object)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    umask = os.umask(0)
    os.umask(umask)
    try:
        os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def _is_scalar(v) -> bool:
    return isinstance(v, (bool, int, float, np.integer, np.floating))


def save_checkpoint(path, model, extra: dict | None = None, *, params: dict | None = None,
                    optimizer_state: dict | None = None, training: dict | None = None) -> Path:
    """Save a model, and optionally what a run needs to resume, to ``path`` (atomically).

    ``model`` supplies the class name and ``model.config()``; the weights are
    ``params`` when given (host arrays, e.g. a snapshot taken at the end of an
    epoch), else ``model.params``.  ``extra`` is any JSON-able dict (the
    training scripts put ``{"train_config": ...}`` there).

    A *training* checkpoint also carries ``optimizer_state`` (an optimizer's
    ``state_dict()``: its arrays go to ``optim/<key>``, its numbers such as
    Adam's step count ``t`` into the JSON) and ``training`` (a JSON-able dict:
    the epoch reached, the history, the random generators' states).
    """
    be = model.backend
    arrays = {f"param/{k}": be.to_numpy(v)
              for k, v in (model.params if params is None else params).items()}
    if training is not None:
        training = dict(training)
        if optimizer_state is not None:
            scalars = {k: v.item() if hasattr(v, "item") else v
                       for k, v in optimizer_state.items() if _is_scalar(v)}
            arrays.update({f"optim/{k}": be.to_numpy(v)
                           for k, v in optimizer_state.items() if not _is_scalar(v)})
            training["optimizer"] = {**training.get("optimizer", {}), "scalars": scalars}
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "model": type(model).__name__, "model_config": model.config(),
            "extra": extra or {}, "training": training}
    arrays["__meta__"] = np.array(json.dumps(meta))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _read(path) -> tuple[dict, dict, dict]:
    """``(meta, params, optim_arrays)`` of the archive at ``path``, or CheckpointError."""
    path = Path(path)
    name = repr(str(path))
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name} does not exist")
    try:
        z = np.load(path, allow_pickle=False)
        if not hasattr(z, "files"):   # a bare .npy array, not an archive
            raise CheckpointError(f"{name} is not a minivae checkpoint (not an .npz archive)")
        with z:
            if "__meta__" not in z.files:
                raise CheckpointError(f"{name} is not a minivae checkpoint (no __meta__ entry)")
            meta = json.loads(str(z["__meta__"]))
            params = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
            optim = {k[len("optim/"):]: z[k] for k in z.files if k.startswith("optim/")}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {name} is corrupt or truncated ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{name} is not a minivae checkpoint")
    version = meta.get("format_version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 1:
        raise CheckpointError(f"{name} has no valid format version (found {version!r})")
    if version > FORMAT_VERSION:
        raise CheckpointError(f"{name} has format version {version}; this minivae reads "
                              f"versions 1 to {FORMAT_VERSION} (upgrade minivae)")
    return meta, params, optim


def read_checkpoint(path) -> tuple[dict, dict]:
    """Return ``(meta, params)`` from a checkpoint, with clear errors for bad files.

    ``params`` maps each parameter name to a host NumPy array.
    """
    meta, params, _ = _read(path)
    return meta, params


@dataclass
class TrainingCheckpoint:
    """What :func:`read_training_checkpoint` returns: everything a run resumes from.

    ``meta`` is the JSON description (``meta["extra"]["train_config"]`` is the
    run's TrainConfig), ``params`` and ``optimizer_state`` hold host arrays
    (``optimizer_state`` in the form of the optimizer's ``state_dict()``, its
    numbers included), ``training`` is ``meta["training"]``: ``epoch``,
    ``history``, ``optimizer``, ``rng`` and ``data``.
    """

    meta: dict
    params: dict
    optimizer_state: dict
    training: dict

    @property
    def train_config(self) -> dict:
        return self.meta.get("extra", {}).get("train_config", {})


TRAINING_KEYS = ("epoch", "history", "optimizer", "rng")


def read_training_checkpoint(path) -> TrainingCheckpoint:
    """Read a checkpoint that a run can resume from, or raise CheckpointError saying why not."""
    meta, params, optim = _read(path)
    name = repr(str(path))
    training = meta.get("training")
    if not training:
        raise CheckpointError(
            f"{name} holds model weights only (format version {meta['format_version']}, no "
            f"optimizer or training state), so a run cannot resume from it; it still loads "
            f"with load_vae / load_model")
    missing = [k for k in TRAINING_KEYS if k not in training]
    if missing or "train_config" not in meta.get("extra", {}):
        raise CheckpointError(f"{name}: the training state is incomplete (missing "
                              f"{missing or ['train_config']})")
    scalars = training["optimizer"].get("scalars", {})
    return TrainingCheckpoint(meta=meta, params=params, optimizer_state={**optim, **scalars},
                              training=training)


def load_optimizer_state(optimizer, state: dict, backend, source: str = "checkpoint") -> None:
    """Load host ``state`` (a stored ``state_dict()``) into ``optimizer``, checking keys and shapes.

    Arrays go onto ``backend`` in the dtype of the optimizer's own arrays, so a
    state saved under one backend loads under the other.
    """
    current = optimizer.state_dict()
    missing = sorted(set(current) - set(state))
    unexpected = sorted(set(state) - set(current))
    if missing or unexpected:
        raise CheckpointError(f"{source}: the stored optimizer state does not fit a "
                              f"{type(optimizer).__name__}: missing {missing[:4]}, unexpected "
                              f"{unexpected[:4]}")
    converted = {}
    for k, v in current.items():
        if _is_scalar(v):
            converted[k] = state[k]
            continue
        if tuple(state[k].shape) != tuple(v.shape):
            raise CheckpointError(f"{source}: optimizer state {k} has shape "
                                  f"{tuple(state[k].shape)}, expected {tuple(v.shape)}")
        converted[k] = backend.to_device(state[k], dtype=v.dtype)
    optimizer.load_state_dict(converted)


def load_params(model, params: dict, source: str = "checkpoint") -> None:
    """Copy host arrays into ``model.params`` in place, checking names and shapes."""
    missing = sorted(set(model.params) - set(params))
    unexpected = sorted(set(params) - set(model.params))
    if missing or unexpected:
        raise CheckpointError(f"{source} does not fit this model: missing {missing}, "
                              f"unexpected {unexpected}")
    for k, p in model.params.items():
        if tuple(params[k].shape) != tuple(p.shape):
            raise CheckpointError(f"{source} does not fit this model: {k} has shape "
                                  f"{tuple(params[k].shape)}, the model expects {tuple(p.shape)}")
        p[...] = model.backend.to_device(params[k], dtype=p.dtype)


def _build_vae(cfg: dict, backend):
    from .models.vae import VAE

    cfg = dict(cfg)
    options = cfg.pop("likelihood_options", {})
    if cfg["likelihood"] == "gaussian":
        from .likelihoods import Gaussian
        cfg["likelihood"] = Gaussian(backend=backend, **options)
    return VAE(backend=backend, **cfg)


def _build_autoencoder(cfg: dict, backend):
    from .models.autoencoder import Autoencoder
    return Autoencoder(backend=backend, **cfg)


def _build_denoising(cfg: dict, backend):
    from .models.denoising import DenoisingAutoencoder
    return DenoisingAutoencoder(backend=backend, **cfg)  # cfg["corruption"] is a dict


#: How :func:`load_model` rebuilds each model class from its stored config.
MODEL_BUILDERS = {"VAE": _build_vae, "Autoencoder": _build_autoencoder,
                  "DenoisingAutoencoder": _build_denoising}


def load_vae(path, backend=None):
    """Rebuild the VAE stored at ``path`` on ``backend`` (NumPy float32 by default)."""
    from .backend import get_backend

    meta, params = read_checkpoint(path)
    if meta.get("model") != "VAE":
        raise CheckpointError(f"{str(path)!r} holds a {meta.get('model')!r}, not a VAE")
    try:
        model = _build_vae(meta["model_config"], backend or get_backend("numpy"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: the stored VAE config cannot be rebuilt "
                              f"({exc})") from None
    load_params(model, params, source=repr(str(path)))
    return model


def load_model(path, backend=None):
    """Rebuild whichever model is stored at ``path`` (VAE, Autoencoder, DenoisingAutoencoder).

    The model is built on ``backend`` (NumPy float32 by default) from the
    stored class name and constructor arguments, and its weights are loaded.
    """
    from .backend import get_backend

    meta, params = read_checkpoint(path)
    name = meta.get("model")
    if name not in MODEL_BUILDERS:
        raise CheckpointError(f"{str(path)!r} holds a {name!r} model; load_model knows "
                              f"{', '.join(MODEL_BUILDERS)}")
    try:
        model = MODEL_BUILDERS[name](meta["model_config"], backend or get_backend("numpy"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: the stored {name} config cannot be rebuilt "
                              f"({exc})") from None
    load_params(model, params, source=repr(str(path)))
    return model
