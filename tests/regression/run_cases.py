"""Run a fixed set of short training runs with the minivae found in SRC; print a fingerprint.

    python tests/regression/run_cases.py SRC DATA.npz [NEW_KEYS.json]

SRC is a directory holding a ``minivae`` package (this tree, or an older commit
unpacked with ``git archive``).  DATA.npz holds x_train, y_train, x_test and
y_test, so both trees train on the very same arrays whatever their data
loaders do.  NEW_KEYS.json, optional, maps a case name to settings added to its
config (so a newer tree can be asked for an older default it no longer has).

The fingerprint, printed as JSON, is for every case: the SHA-256 of every array
in the checkpoint the run wrote (weights, and Adam's moments for a VAE), and
the metrics history and final test metrics with the wall-clock ``seconds``
left out.  :mod:`tests.test_same_as_c963aa9` compares two trees' fingerprints.
"""

import hashlib
import json
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

CASES = {
    # name: (kind, config settings, resume_from_epochs)
    "vae_default": ("vae", {"epochs": 2}, None),
    "vae_variety": ("vae", {"epochs": 2, "threads": 1, "hidden": (64, 32), "latent_dim": 2,
                            "binarize": "static", "kl_warmup_epochs": 1, "beta": 0.5,
                            "optimizer": "sgd", "lr": 0.002, "activation": "tanh",
                            "dtype": "float64", "save_every": 1, "iw_samples": 5,
                            "eval_samples": 2, "batch_size": 100, "seed": 3}, None),
    "vae_gaussian": ("vae", {"epochs": 2, "likelihood": "gaussian", "hidden": (128,)}, None),
    "vae_resumed": ("vae", {"epochs": 2, "kl_warmup_epochs": 2}, 1),
    "ae": ("ae", {"epochs": 2}, None),
    "dae_masking": ("ae", {"epochs": 2, "corruption": "masking", "noise_level": 0.25,
                           "seed": 5}, None),
    "dae_gaussian": ("ae", {"epochs": 2, "corruption": "gaussian", "clip": False,
                            "output": "linear", "hidden": (128, 64), "bottleneck": 16}, None),
}


def _array_hashes(path: Path) -> dict:
    with zipfile.ZipFile(path) as z:
        names = sorted(n for n in z.namelist() if n != "__meta__.npy")
    with np.load(path, allow_pickle=False) as f:
        return {n[:-4]: hashlib.sha256(np.ascontiguousarray(f[n[:-4]]).tobytes()).hexdigest()
                for n in names}


def _without_seconds(history: list) -> list:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


def main(src: str, data_path: str, new_keys_path: str | None = None) -> None:
    sys.path.insert(0, src)
    from minivae.data import Dataset
    if (Path(src) / "minivae" / "training").is_dir():    # the layout of issue 16
        from minivae.training.config import AEConfig as AETrainConfig, VAEConfig as TrainConfig
        from minivae.training.train import train_autoencoder, train_vae
    else:                                                 # before it: all at the top level
        from minivae.train import AETrainConfig, TrainConfig, train_autoencoder, train_vae

    for name in ("minivae", "minivae.models.vae", "minivae.likelihoods"):   # no mixed trees
        assert Path(sys.modules[name].__file__).resolve().is_relative_to(Path(src).resolve())
    new_keys = json.loads(Path(new_keys_path).read_text()) if new_keys_path else {}
    with np.load(data_path) as f:
        ds = Dataset("mnist5k", f["x_train"], f["y_train"], f["x_test"], f["y_test"])
    result = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (kind, settings, resume_at) in CASES.items():
            settings = {**settings, **new_keys.get(name, {}), "progress": False}
            out = Path(tmp) / name
            if kind == "vae":
                resume = None
                if resume_at is not None:
                    first = Path(tmp) / f"{name}-first"
                    train_vae(TrainConfig(**{**settings, "epochs": resume_at},
                                          out=str(first)), dataset=ds)
                    resume = first / "checkpoint.npz"
                metrics = train_vae(TrainConfig(**settings, out=str(out)), dataset=ds,
                                    resume=resume)
            else:
                metrics = train_autoencoder(AETrainConfig(**settings, out=str(out)), dataset=ds)
            test = {k: v for k, v in metrics["test"].items()}
            result[name] = {"arrays": _array_hashes(out / "checkpoint.npz"),
                            "history": _without_seconds(metrics["history"]), "test": test}
    print(json.dumps(result, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
