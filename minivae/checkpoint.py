"""Checkpoints: model weights in a ``.npz`` file, with a JSON description beside them.

Layout of the archive (plain NumPy arrays, no pickles)::

    __meta__              a 0-d string array holding JSON:
                          {"format": "minivae-checkpoint", "format_version": 1,
                           "model": "VAE", "model_config": {...}, "extra": {...}}
    param/<name>          one array per entry of ``model.params``
                          (e.g. param/encoder.0.W of shape (784, 400))

Writes are atomic: the archive goes to a temporary file in the same directory
and is then renamed over the target, so an interrupted save never leaves a
half-written checkpoint under the final name.
"""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minivae-checkpoint"
FORMAT_VERSION = 1


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


def save_checkpoint(path, model, extra: dict | None = None) -> Path:
    """Save ``model.params`` and ``model.config()`` (plus JSON-able ``extra``) to ``path``."""
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION,
            "model": type(model).__name__, "model_config": model.config(),
            "extra": extra or {}}
    arrays = {f"param/{k}": model.backend.to_numpy(v) for k, v in model.params.items()}
    arrays["__meta__"] = np.array(json.dumps(meta))
    return atomic_write(path, lambda f: np.savez(f, **arrays))


def read_checkpoint(path) -> tuple[dict, dict]:
    """Return ``(meta, params)`` from a checkpoint, with clear errors for bad files."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"checkpoint {str(path)!r} does not exist")
    try:
        with np.load(path, allow_pickle=False) as z:
            if "__meta__" not in z.files:
                raise CheckpointError(f"{str(path)!r} is not a minivae checkpoint (no __meta__ entry)")
            meta = json.loads(str(z["__meta__"]))
            params = {k[len("param/"):]: z[k] for k in z.files if k.startswith("param/")}
    except CheckpointError:
        raise
    except (zipfile.BadZipFile, OSError, ValueError, EOFError, KeyError) as exc:
        raise CheckpointError(f"checkpoint {str(path)!r} is corrupt or truncated ({exc})") from None
    if meta.get("format") != FORMAT:
        raise CheckpointError(f"{str(path)!r} is not a minivae checkpoint")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"{str(path)!r} has format version {meta['format_version']}; "
                              f"this minivae reads up to {FORMAT_VERSION} (upgrade minivae)")
    return meta, params


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
    model = _build_vae(meta["model_config"], backend or get_backend("numpy"))
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
