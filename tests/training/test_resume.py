"""Training checkpoints: resuming is bit-identical on NumPy, Ctrl-C saves, bad files are refused.

A straight run of 4 epochs and a run of 2 epochs resumed to 4 must end with
equal weights, bit for bit: the checkpoint stores everything the next epoch
depends on (weights, the optimizer's moments and step count, the epoch, the
history, both random generators' states).  The runs are small (1,000 digits,
784-64-8) so the file runs in a few seconds.
"""

import json

import numpy as np
import pytest

from minivae.backend import get_backend
from minivae.training.checkpoint import (FORMAT_VERSION, CheckpointError, TrainingCheckpoint, atomic_write,
                                load_params, load_vae, read_checkpoint, read_training_checkpoint,
                                save_checkpoint)
from minivae.training.cli import main_vae
from minivae.data import Dataset
from minivae.models.vae import VAE
from minivae.optim import Adam
from minivae.training.steps import kl_weight
from minivae.training.train import VAEConfig, TrainingInterrupted, train_vae



def _config(out, **kw):
    base = dict(epochs=4, hidden=(64,), latent_dim=8, progress=False,
                out=None if out is None else str(out),
                kl_warmup_epochs=3)
    base.update(kw)
    return VAEConfig(**base)


def _assert_same_state(a: TrainingCheckpoint, b: TrainingCheckpoint):
    assert a.training["epoch"] == b.training["epoch"]
    assert set(a.params) == set(b.params) and set(a.optimizer_state) == set(b.optimizer_state)
    for k in a.params:
        assert np.array_equal(a.params[k], b.params[k]), k
    for k in a.optimizer_state:
        assert np.array_equal(a.optimizer_state[k], b.optimizer_state[k]), k
    assert a.training["rng"] == b.training["rng"]

    def strip(history):
        return [{k: v for k, v in h.items() if k != "seconds"} for h in history]

    assert strip(a.training["history"]) == strip(b.training["history"])


@pytest.fixture(scope="module")
def straight(tmp_path_factory, small_digits):
    """The reference: 4 epochs in one go (with a KL warm-up over 3, so β changes across the cut)."""
    out = tmp_path_factory.mktemp("straight")
    metrics = train_vae(_config(out), dataset=small_digits)
    return metrics, read_training_checkpoint(out / "checkpoint.npz")


def test_two_plus_two_epochs_equal_four_bit_for_bit(tmp_path, small_digits, straight):
    train_vae(_config(tmp_path / "a", epochs=2), dataset=small_digits)
    first = read_training_checkpoint(tmp_path / "a" / "checkpoint.npz")
    assert first.training["epoch"] == 2 and len(first.training["history"]) == 2
    metrics = train_vae(_config(tmp_path / "b"), dataset=small_digits,
                        resume=tmp_path / "a" / "checkpoint.npz")
    _assert_same_state(read_training_checkpoint(tmp_path / "b" / "checkpoint.npz"), straight[1])
    assert metrics["test"] == straight[0]["test"]
    assert metrics["resumed_from"]["epoch"] == 2
    assert [h["epoch"] for h in metrics["history"]] == [1, 2, 3, 4]


def test_ctrl_c_saves_the_last_completed_epoch_and_resumes_exactly(tmp_path, small_digits,
                                                                   straight, monkeypatch):
    steps_per_epoch = 8  # 1,000 digits in batches of 128
    calls = {"n": 0}
    step = Adam.step

    def interrupted_step(self):
        calls["n"] += 1
        if calls["n"] == 2 * steps_per_epoch + 3:  # in the middle of epoch 3
            raise KeyboardInterrupt
        step(self)

    monkeypatch.setattr(Adam, "step", interrupted_step)
    with pytest.raises(TrainingInterrupted) as info:
        train_vae(_config(tmp_path), dataset=small_digits)
    assert info.value.epoch == 2 and info.value.path == tmp_path / "checkpoint.npz"
    assert isinstance(info.value, KeyboardInterrupt)
    saved = read_training_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.training["epoch"] == 2 and saved.optimizer_state["t"] == 2 * steps_per_epoch
    assert not any(p.name.endswith(".tmp") for p in tmp_path.iterdir())

    monkeypatch.setattr(Adam, "step", step)
    train_vae(_config(tmp_path), dataset=small_digits, resume=tmp_path / "checkpoint.npz")
    _assert_same_state(read_training_checkpoint(tmp_path / "checkpoint.npz"), straight[1])


def test_ctrl_c_without_an_output_directory_is_a_plain_interrupt(small_digits, monkeypatch):
    def stop(self):
        raise KeyboardInterrupt

    monkeypatch.setattr(Adam, "step", stop)
    with pytest.raises(KeyboardInterrupt) as info:
        train_vae(_config(None), dataset=small_digits)
    assert not isinstance(info.value, TrainingInterrupted)


def test_save_every_writes_the_checkpoint_every_n_epochs(tmp_path, small_digits, monkeypatch):
    import minivae.training.resume as resume

    saved_epochs = []
    save = resume.save_checkpoint

    def recording_save(path, model, extra=None, **kw):
        saved_epochs.append(kw["training"]["epoch"])
        return save(path, model, extra, **kw)

    monkeypatch.setattr(resume, "save_checkpoint", recording_save)
    train_vae(_config(tmp_path, epochs=5, save_every=2, kl_warmup_epochs=0),
              dataset=small_digits)
    assert saved_epochs == [2, 4, 5]
    assert read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"] == 5


def test_kl_warmup_is_a_per_step_linear_ramp(straight):
    assert kl_weight(2.0, 0, 1, 10) == 2.0
    assert kl_weight(1.0, 2, 1, 10) == pytest.approx(1 / 20)
    assert kl_weight(1.0, 2, 10, 10) == pytest.approx(0.5)
    assert kl_weight(1.0, 2, 20, 10) == 1.0 and kl_weight(1.0, 2, 35, 10) == 1.0
    history = straight[0]["history"]
    assert [h["beta"] for h in history] == pytest.approx([1 / 3, 2 / 3, 1, 1])
    assert history[0]["beta_mean"] == pytest.approx(np.mean(np.arange(1, 9) / 24))
    # the metrics are the true −ELBO, whatever β the training used
    for h in history:
        assert h["train_neg_elbo"] == pytest.approx(h["train_recon"] + h["train_kl"])


# -- resuming from the command line -------------------------------------------

def _weights(path):
    return read_checkpoint(path)[1]


def test_cli_resume_is_bit_identical_and_takes_settings_from_the_checkpoint(tmp_path, capsys):
    common = ["--no-progress", "--kl-warmup-epochs", "2"]
    model = ["--hidden", "32", "--latent-dim", "4", "--lr", "2e-3"]
    assert main_vae(["--epochs", "4", "--out", str(tmp_path / "straight"), *model, *common]) == 0
    assert main_vae(["--epochs", "2", "--out", str(tmp_path / "a"), *model, *common]) == 0
    # the model flags are not repeated: the resumed run takes them from the checkpoint
    assert main_vae(["--resume", str(tmp_path / "a" / "checkpoint.npz"), "--epochs", "4",
                     "--out", str(tmp_path / "b"), "--no-progress"]) == 0
    assert "after epoch 2 of 4" in capsys.readouterr().out
    a = _weights(tmp_path / "straight" / "checkpoint.npz")
    b = _weights(tmp_path / "b" / "checkpoint.npz")
    assert set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert metrics["config"]["hidden"] == [32] and metrics["config"]["lr"] == 2e-3


def test_cli_resume_errors(tmp_path, capsys):
    assert main_vae(["--resume", str(tmp_path / "missing.npz"), "--epochs", "2",
                     "--out", str(tmp_path), "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "missing.npz" in err and "does not exist" in err

    run = tmp_path / "run"
    assert main_vae(["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--no-progress",
                     "--out", str(run)]) == 0
    capsys.readouterr()
    ckpt = str(run / "checkpoint.npz")
    # another architecture than the stored one
    assert main_vae(["--resume", ckpt, "--hidden", "32", "--epochs", "2", "--out", str(run),
                     "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "hidden (stored [16], asked [32])" in err
    # fewer epochs in total than already trained
    assert main_vae(["--resume", ckpt, "--epochs", "1", "--out", str(run), "--no-progress"]) == 2
    assert "epochs must be at least the 2 epochs" in capsys.readouterr().err
    # --iw-samples must be a count (0 skips the estimate)
    with pytest.raises(SystemExit) as info:
        main_vae(["--resume", ckpt, "--iw-samples", "-1"])
    assert info.value.code == 2 and "expected a non-negative integer, got -1" in \
        capsys.readouterr().err
    (run / "cut.npz").write_bytes((run / "checkpoint.npz").read_bytes()[:5000])
    assert main_vae(["--resume", str(run / "cut.npz"), "--epochs", "2", "--out", str(run),
                     "--no-progress"]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err


def test_cli_ctrl_c_exits_130_with_a_message(tmp_path, capsys, monkeypatch):
    calls = {"n": 0}
    step = Adam.step

    def interrupted_step(self):
        calls["n"] += 1
        if calls["n"] == 40:  # 4,500 digits: 36 steps per epoch, so in epoch 2
            raise KeyboardInterrupt
        step(self)

    monkeypatch.setattr(Adam, "step", interrupted_step)
    code = main_vae(["--epochs", "3", "--hidden", "16", "--latent-dim", "2", "--no-progress",
                     "--out", str(tmp_path)])
    assert code == 130
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "interrupted (SIGINT): the state after epoch 1 is saved in" in err and "--resume" in err
    assert read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"] == 1


# -- the library's errors ------------------------------------------------------

def test_resume_refuses_other_settings_and_weights_only_files(tmp_path, small_digits):
    train_vae(_config(tmp_path, epochs=2), dataset=small_digits)
    ckpt = tmp_path / "checkpoint.npz"
    with pytest.raises(CheckpointError, match=r"latent_dim \(stored 8, asked 16\)"):
        train_vae(_config(tmp_path, latent_dim=16), dataset=small_digits, resume=ckpt)
    with pytest.raises(CheckpointError, match=r"lr \(stored 0.001, asked 0.01\)"):
        train_vae(_config(tmp_path, lr=0.01), dataset=small_digits, resume=ckpt)
    with pytest.raises(ValueError, match="epochs must be at least the 2 epochs"):
        train_vae(_config(None, epochs=1), dataset=small_digits, resume=ckpt)
    fewer = Dataset("mnist5k", small_digits.x_train[:500], small_digits.y_train[:500],
                    small_digits.x_test, small_digits.y_test)
    with pytest.raises(CheckpointError, match="1000 training examples; this run has 500"):
        train_vae(_config(None), dataset=fewer, resume=ckpt)
    weights_only = save_checkpoint(tmp_path / "w.npz", load_vae(ckpt))
    with pytest.raises(CheckpointError, match="cannot resume"):
        train_vae(_config(None), dataset=small_digits, resume=weights_only)


def test_resume_from_the_final_epoch_only_evaluates(tmp_path, small_digits, straight):
    """--epochs equal to the stored epoch trains nothing: a way to add --iw-samples to a run."""
    src = tmp_path / "src"
    train_vae(_config(src, epochs=2), dataset=small_digits)
    m = train_vae(_config(tmp_path / "eval", epochs=2, iw_samples=5), dataset=small_digits,
                  resume=src / "checkpoint.npz")
    assert len(m["history"]) == 2 and m["test"]["iw_samples"] == 5
    a, b = _weights(src / "checkpoint.npz"), _weights(tmp_path / "eval" / "checkpoint.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)


# -- the checkpoint format -----------------------------------------------------

def _write_raw(path, meta: dict, arrays: dict):
    np.savez(path, __meta__=np.array(json.dumps(meta)), **arrays)
    return path


def test_version_1_files_still_load_and_newer_versions_are_refused(tmp_path):
    model = VAE(784, 32, 4, backend=get_backend(seed=5))
    params = {f"param/{k}": v for k, v in model.params.items()}
    v1 = {"format": "minivae-checkpoint", "format_version": 1, "model": "VAE",
          "model_config": model.config(), "extra": {}}
    loaded = load_vae(_write_raw(tmp_path / "v1.npz", v1, params))
    assert all(np.array_equal(loaded.params[k], model.params[k]) for k in model.params)
    with pytest.raises(CheckpointError, match="cannot resume"):
        read_training_checkpoint(tmp_path / "v1.npz")
    future = {**v1, "format_version": FORMAT_VERSION + 1}
    with pytest.raises(CheckpointError, match=f"format version {FORMAT_VERSION + 1}"):
        load_vae(_write_raw(tmp_path / "v9.npz", future, params))
    with pytest.raises(CheckpointError, match="not a minivae checkpoint"):
        load_vae(_write_raw(tmp_path / "other.npz", {"hello": 1}, params))
    np.save(tmp_path / "bare.npy", np.zeros(3))
    with pytest.raises(CheckpointError, match="not an .npz archive"):
        load_vae(tmp_path / "bare.npy")


def test_a_checkpoint_of_another_architecture_does_not_load_into_a_model(tmp_path):
    path = save_checkpoint(tmp_path / "m.npz", VAE(784, 32, 4, backend=get_backend()))
    _, params = read_checkpoint(path)
    with pytest.raises(CheckpointError, match=r"does not fit this model: encoder.0.W has shape "
                                              r"\(784, 32\), the model expects \(784, 64\)"):
        load_params(VAE(784, 64, 4, backend=get_backend()), params, source="m.npz")


def test_an_interrupted_save_keeps_the_previous_checkpoint(tmp_path):
    model = VAE(784, 32, 4, backend=get_backend())
    path = save_checkpoint(tmp_path / "c.npz", model)
    before = path.read_bytes()

    def half_then_ctrl_c(f):
        f.write(before[:1000])
        raise KeyboardInterrupt  # as if Ctrl-C arrived in the middle of the write

    with pytest.raises(KeyboardInterrupt):
        atomic_write(path, half_then_ctrl_c)
    assert path.read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c.npz"]  # no temporary file left behind
    assert load_vae(path).config() == model.config()


BACKEND_PAIRS = [(a, b) for a in ("numpy", "cupy") for b in ("numpy", "cupy") if a != b]


@pytest.mark.parametrize("saved_on,loaded_on", BACKEND_PAIRS)
def test_a_training_checkpoint_crosses_backends(tmp_path, small_digits, saved_on, loaded_on,
                                                monkeypatch, capsys):
    """Saved on one backend, resumed on the other (on CuPy's stand-in where no GPU runs CuPy):
    the generator state cannot cross, so the backend's generator is re-seeded, with a note."""
    from conftest import REAL_CUPY

    if not REAL_CUPY:
        import fake_cupy
        fake_cupy.install(monkeypatch)
    train_vae(_config(tmp_path / "a", epochs=1, backend=saved_on), dataset=small_digits)
    model = load_vae(tmp_path / "a" / "checkpoint.npz", backend=get_backend(loaded_on))
    assert model.backend.name == loaded_on
    m = train_vae(_config(tmp_path / "b", epochs=2, backend=loaded_on), dataset=small_digits,
                  resume=tmp_path / "a" / "checkpoint.npz")
    assert np.isfinite(m["test"]["neg_elbo"]) and len(m["history"]) == 2
    assert "re-seeded from (seed, epoch)" in capsys.readouterr().err
