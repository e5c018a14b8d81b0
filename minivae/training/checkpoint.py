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

Writes are atomic (:func:`minivae.training.files.atomic_write`): the archive goes to a
temporary file in the same directory and is then renamed over the target, so
an interrupted save never leaves a half-written checkpoint under the final
name.  Nothing that is not finite is ever written: a save of NaN or Inf weights
or optimizer moments is refused.  Every problem with a file (it is missing,
not a zip, truncated, not a minivae checkpoint, of a newer format, of another
architecture, with metadata of the wrong types or non-finite weights) raises
:class:`CheckpointError` with a sentence that names the file and the problem.
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .files import atomic_write  # noqa: F401  (imported from here by older code)
from ..validation import first_nonfinite

FORMAT = "minivae-checkpoint"
FORMAT_VERSION = 2


class CheckpointError(ValueError):
    """A checkpoint is missing, corrupt, truncated or does not fit the model."""


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
    bad = first_nonfinite({**arrays, **(training or {}).get("optimizer", {}).get("scalars", {})})
    if bad is not None:
        raise CheckpointError(f"refusing to write {str(path)!r}: {bad[0]} holds {bad[1]} NaN or "
                              f"Inf values, and a checkpoint must hold a usable state")
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "model": type(model).__name__, "model_config": model.config(),
            "extra": extra or {}, "training": training}
    arrays["__meta__"] = np.array(json.dumps(meta))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def _read(path) -> tuple[dict, dict, dict]:
    """``(meta, params, optim_arrays)`` of the archive at ``path``, or CheckpointError."""
    path = Path(path)
    name = repr(str(path))
    if path.is_dir():
        raise CheckpointError(f"checkpoint {name} is a directory; name the file in it "
                              f"({str(path / 'checkpoint.npz')!r} for a run's --out)")
    if not path.is_file():
        raise CheckpointError(f"checkpoint {name} does not exist")
    with open(path, "rb") as f:          # an .npz archive is a zip file: it starts PK\3\4
        is_zip = f.read(4) == b"PK\x03\x04"
    if not is_zip:
        raise CheckpointError(f"{name} is not a minivae checkpoint (not an .npz archive)")
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
    for key, kind in (("model_config", dict), ("extra", dict)):
        if not isinstance(meta.get(key, {}), kind):
            raise CheckpointError(f"{name}: the metadata entry {key!r} must be a JSON object, "
                                  f"found {type(meta[key]).__name__}")
    bad = first_nonfinite({**params, **optim})
    if bad is not None:
        raise CheckpointError(f"{name}: {bad[0]} holds {bad[1]} NaN or Inf values; the file "
                              f"does not hold a usable state")
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
    run's VAEConfig), ``params`` and ``optimizer_state`` hold host arrays
    (``optimizer_state`` in the form of the optimizer's ``state_dict()``, its
    numbers included), ``training`` is ``meta["training"]``: ``epoch``,
    ``history``, ``optimizer``, ``rng`` and ``data``.
    """

    meta: dict
    params: dict
    optimizer_state: dict
    training: dict
    path: str = "checkpoint"      # where it was read from, for messages

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
    if not isinstance(training, dict):
        raise CheckpointError(f"{name}: the training state must be a JSON object, found "
                              f"{type(training).__name__}")
    missing = [k for k in TRAINING_KEYS if k not in training]
    if missing or "train_config" not in meta.get("extra", {}):
        raise CheckpointError(f"{name}: the training state is incomplete (missing "
                              f"{missing or ['train_config']})")
    _check_training_state(name, training, meta["extra"]["train_config"])
    scalars = training["optimizer"].get("scalars", {})
    return TrainingCheckpoint(meta=meta, params=params, optimizer_state={**optim, **scalars},
                              training=training, path=str(path))


def _is_count(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool) and v >= 0


def _check_training_state(name: str, t: dict, train_config) -> None:
    """Raise CheckpointError unless every entry of the training state has the type it must.

    A crafted or damaged file must fail here, with a sentence, rather than deep
    inside the fit loop with a traceback.
    """
    def fail(what):
        raise CheckpointError(f"{name}: the training state is not valid: {what}")

    if not isinstance(train_config, dict):
        fail(f"train_config must be a JSON object, found {type(train_config).__name__}")
    if not _is_count(t["epoch"]):
        fail(f"epoch must be a non-negative integer, found {t['epoch']!r}")
    history = t["history"]
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        fail(f"history must be a list of per-epoch objects, found {type(history).__name__}")
    if len(history) != t["epoch"]:
        fail(f"history has {len(history)} entries for {t['epoch']} epochs")
    for i, h in enumerate(history):
        if h.get("epoch") != i + 1:
            fail(f"history entry {i} is not the metrics of epoch {i + 1} (its epoch is "
                 f"{h.get('epoch')!r})")
    optimizer = t["optimizer"]
    if not isinstance(optimizer, dict) or not isinstance(optimizer.get("scalars", {}), dict):
        fail(f"optimizer must be an object with a 'scalars' object, found {optimizer!r}")
    for k, v in optimizer.get("scalars", {}).items():   # counters, such as Adam's step t
        if not _is_count(v):
            fail(f"optimizer scalar {k!r} must be a non-negative integer, found {v!r}")
    if not isinstance(t["rng"], dict):
        fail(f"rng must be a JSON object, found {type(t['rng']).__name__}")
    for key in ("shuffle", "backend_rng"):
        state = t["rng"].get(key)
        if state is None and key == "backend_rng":      # a CuPy run's: not saved, reseeded
            continue
        reason = _generator_state_problem(state)
        if reason is not None:
            fail(f"the random generator state {key!r} is not valid ({reason})")
    data = t.get("data", {})
    if not isinstance(data, dict) or not all(_is_count(v) for v in data.values()):
        fail(f"data must map names to example counts, found {data!r}")


def _generator_state_problem(state):
    """None when ``state`` is a NumPy bit generator's state that can be set, else why not."""
    if not isinstance(state, dict):
        return f"found {type(state).__name__}"
    kind = getattr(np.random, str(state.get("bit_generator")), None)
    if not (isinstance(kind, type) and issubclass(kind, np.random.BitGenerator)):
        return f"unknown bit generator {state.get('bit_generator')!r}"
    try:
        kind().state = state                          # what resuming will do, on a throwaway
    except (TypeError, ValueError, KeyError, OverflowError) as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def unfit_for_dtype(arrays: dict, dtype):
    """``(name, largest |value|)`` of the first array whose values overflow ``dtype``, or None.

    float64 values such as 1e300 become Inf in float32: a model must not be
    loaded holding them.
    """
    limit = float(np.finfo(dtype).max)
    for name, a in arrays.items():
        if np.asarray(a).size and np.issubdtype(np.asarray(a).dtype, np.floating):
            biggest = float(np.abs(a).max())
            if biggest > limit:
                return name, biggest
    return None


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
    bad = unfit_for_dtype(params, model.backend.dtype)
    if bad is not None:
        raise CheckpointError(f"{source}: {bad[0]} holds {bad[1]:.3g}, which does not fit the "
                              f"model's {model.backend.dtype.name}")
    for k, p in model.params.items():
        p[...] = model.backend.to_device(params[k], dtype=p.dtype)


def _check_config_fits_weights(source: str, cfg: dict, params: dict) -> None:
    """Refuse a stored config that asks for sizes the stored weights do not have.

    Every width of a model (``input_dim``, each ``hidden`` width, ``latent_dim``,
    ``bottleneck``) is a dimension of at least one of its weight matrices, and
    every layer stores at least one array.  Checking that before the model is
    built means a damaged or crafted config (``hidden: [1e9]``) is refused
    instead of allocating memory it names; the shapes are checked one by one
    when the weights are loaded.
    """
    dims = {d for a in params.values() for d in a.shape}
    hidden = cfg.get("hidden", [])
    hidden = [hidden] if isinstance(hidden, int) else hidden
    if not isinstance(hidden, list) or len(hidden) > len(params):
        raise CheckpointError(f"{source}: the stored config's hidden widths {hidden!r} do not "
                              f"fit the {len(params)} stored arrays")
    for w in [cfg[k] for k in ("input_dim", "latent_dim", "bottleneck") if k in cfg] + hidden:
        if isinstance(w, bool) or not isinstance(w, int) or w not in dims:
            raise CheckpointError(f"{source}: the stored config asks for a width {w!r} that "
                                  f"none of the stored weights has")


def _model_classes() -> dict:
    """The model classes :func:`load_model` rebuilds, by the name a checkpoint stores."""
    from ..models.autoencoder import Autoencoder
    from ..models.denoising import DenoisingAutoencoder
    from ..models.vae import VAE
    return {cls.__name__: cls for cls in (VAE, Autoencoder, DenoisingAutoencoder)}


def load_vae(path, backend=None):
    """Rebuild the VAE stored at ``path`` on ``backend`` (NumPy float32 by default)."""
    return _load(path, backend, only="VAE")


def load_model(path, backend=None):
    """Rebuild whichever model is stored at ``path`` (VAE, Autoencoder, DenoisingAutoencoder).

    The model is built on ``backend`` (NumPy float32 by default) from the
    stored class name and constructor arguments, and its weights are loaded.
    """
    return _load(path, backend)


def _load(path, backend, only=None):
    from ..backend import get_backend

    meta, params = read_checkpoint(path)
    source, name = repr(str(path)), meta.get("model")
    if only is not None and name != only:
        raise CheckpointError(f"{source} holds a {name!r}, not a {only}")
    classes = _model_classes()
    if name not in classes:
        raise CheckpointError(f"{source} holds a {name!r} model; load_model knows "
                              f"{', '.join(classes)}")
    _check_config_fits_weights(source, meta.get("model_config", {}), params)
    try:
        model = classes[name].from_config(meta["model_config"], backend or get_backend("numpy"))
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{source}: the stored {name} config cannot be rebuilt "
                              f"({exc})") from None
    load_params(model, params, source=source)
    return model
