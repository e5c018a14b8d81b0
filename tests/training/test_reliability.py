"""No run is lost: divergence, an unusable --out, a full disk, Ctrl-C twice, SIGTERM, SIGKILL.

Each test here backs one row of docs/reliability.md.  The runs are small
(1,000 digits, 784-64-8 or 784-16-2) so the file takes seconds.
"""

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minivae.training.checkpoint import (CheckpointError, load_model, read_checkpoint,
                                read_training_checkpoint, save_checkpoint)
from minivae.training.cli import main_autoencoder, main_vae
from minivae.training.files import OutputError
from minivae.models.vae import VAE
from minivae.optim import Adam
from minivae.backend import get_backend
from minivae.training.train import (AEConfig, VAEConfig, TrainingDiverged, TrainingInterrupted,
                           train_autoencoder, train_vae)

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH = 8          # 1,000 digits in batches of 128


@pytest.fixture(autouse=True)
def _python_sigint_handler():
    """SIGINT handled as Python sets it up, also where this process inherited SIGINT ignored.

    A shell without job control starts background commands (``cmd &``) with SIGINT
    ignored, and Python then installs no handler of its own: the real-signal tests
    below would be vacuous (a second Ctrl-C that does nothing) or hang.
    """
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def _default_sigint_in_child():
    """preexec_fn: the child starts with SIGINT at its default, so Python installs its handler."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _vae(out, **kw):
    base = dict(epochs=4, hidden=(64,), latent_dim=8, progress=False,
                out=None if out is None else str(out))
    base.update(kw)
    return VAEConfig(**base)


def _no_temporaries(directory):
    return not any(p.name.endswith(".tmp") for p in Path(directory).iterdir())


def _all_finite(path):
    ckpt = read_training_checkpoint(path)
    arrays = [*ckpt.params.values(), *(v for v in ckpt.optimizer_state.values()
                                       if isinstance(v, np.ndarray))]
    return all(np.isfinite(a).all() for a in arrays)


def _blow_up_at(monkeypatch, call: int):
    """Make the optimizer's ``call``-th step leave an Inf in a weight (its loss stays finite)."""
    calls = {"n": 0}
    step = Adam.step

    def step_then_blow_up(self):
        step(self)
        calls["n"] += 1
        if calls["n"] == call:
            next(iter(self.params.values()))[0, 0] = np.inf

    monkeypatch.setattr(Adam, "step", step_then_blow_up)


# -- divergence -------------------------------------------------------------------

@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_blow_up_on_an_epochs_last_step_saves_the_epoch_before(tmp_path, small_digits,
                                                                 monkeypatch):
    """The loss of epoch 2 is finite (it was scored before its last step); the weights are not."""
    _blow_up_at(monkeypatch, 2 * STEPS_PER_EPOCH)
    with pytest.raises(TrainingDiverged, match="parameter encoder.0.W holds 1 NaN or Inf") as info:
        train_vae(_vae(tmp_path), dataset=small_digits)      # save_every=0: no periodic save
    assert info.value.epoch == 2 and info.value.saved_epoch == 1
    assert info.value.path == tmp_path / "checkpoint.npz"
    assert "the state after epoch 1, the last finite one, is saved in" in str(info.value)
    saved = read_training_checkpoint(tmp_path / "checkpoint.npz")
    assert saved.training["epoch"] == 1 and saved.optimizer_state["t"] == STEPS_PER_EPOCH
    assert _all_finite(tmp_path / "checkpoint.npz") and _no_temporaries(tmp_path)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_the_saved_state_of_a_diverged_run_resumes(tmp_path, small_digits, monkeypatch):
    _blow_up_at(monkeypatch, 2 * STEPS_PER_EPOCH + 3)          # in epoch 3: a NaN loss
    with pytest.raises(TrainingDiverged, match="the training loss became nan in epoch 3"):
        train_vae(_vae(tmp_path), dataset=small_digits)
    monkeypatch.undo()
    m = train_vae(_vae(tmp_path), dataset=small_digits, resume=tmp_path / "checkpoint.npz")
    assert m["resumed_from"]["epoch"] == 2 and np.isfinite(m["test"]["neg_elbo"])


@pytest.mark.filterwarnings("ignore::RuntimeWarning")      # NumPy's own note of the overflow
def test_cli_beta_1e30_exits_2_and_keeps_a_finite_checkpoint(tmp_path, capsys):
    """β = 1e30 overflows Adam's second moment v = g² in float32 while the weights stay finite."""
    code = main_vae(["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--no-progress",
                     "--beta", "1e30", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert err.startswith("error: after epoch 1 the optimizer state v.") and "beta than 1e+30" in err
    assert "the state after epoch 0, the last finite one, is saved in" in err
    assert _all_finite(tmp_path / "checkpoint.npz")
    assert not (tmp_path / "metrics.json").exists()


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_cli_autoencoder_lr_100_exits_2_and_keeps_finite_weights(tmp_path, capsys):
    code = main_autoencoder(["--epochs", "3", "--output", "linear", "--lr", "100",
                             "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: after epoch 1 the optimizer state")
    assert "is saved in" in err
    _, params = read_checkpoint(tmp_path / "checkpoint.npz")
    assert all(np.isfinite(a).all() for a in params.values())


def test_nothing_non_finite_is_ever_written_or_read(tmp_path):
    model = VAE(784, 16, 2, backend=get_backend())
    path = save_checkpoint(tmp_path / "c.npz", model)
    before = path.read_bytes()
    model.params["decoder.0.b"][3] = np.nan
    with pytest.raises(CheckpointError, match="refusing to write .*: param/decoder.0.b holds 1 NaN"):
        save_checkpoint(path, model)
    assert path.read_bytes() == before and _no_temporaries(tmp_path)
    meta, params = read_checkpoint(path)
    params["decoder.0.b"] = params["decoder.0.b"].copy()
    params["decoder.0.b"][0] = np.inf
    np.savez(tmp_path / "bad.npz", __meta__=np.array(json.dumps(meta)),
             **{f"param/{k}": v for k, v in params.items()})
    with pytest.raises(CheckpointError, match="decoder.0.b holds 1 NaN or Inf values; the file"):
        load_model(tmp_path / "bad.npz")


# -- the output directory -----------------------------------------------------------

def _unusable_outs(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("not a directory")
    return {"a file": (str(afile), "it exists and is not a directory"),
            "under a file": (str(afile / "sub"), "Not a directory"),
            "/proc/self": ("/proc/self", "No such file or directory")}


@pytest.mark.parametrize("case", ["a file", "under a file", "/proc/self"])
def test_an_unusable_out_is_refused_before_any_work(tmp_path, case, capsys, monkeypatch):
    if case == "/proc/self" and not os.path.isdir("/proc/self"):
        pytest.skip("no /proc on this system")
    out, reason = _unusable_outs(tmp_path)[case]
    import minivae.training.train as train

    def no_data(*a, **k):
        raise AssertionError("the data was loaded before --out was checked")

    monkeypatch.setattr(train, "load_dataset", no_data)
    with pytest.raises(OutputError, match=reason):
        train_vae(_vae(out))
    with pytest.raises(OutputError, match=reason):
        train_autoencoder(AEConfig(epochs=1, out=out, progress=False))
    assert main_vae(["--out", out, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot write into the output directory {out!r}: ")
    assert "Traceback" not in err


def test_an_empty_out_is_rejected(capsys):
    for main in (main_vae, main_autoencoder):
        with pytest.raises(SystemExit) as info:
            main(["--out", ""])
        assert info.value.code == 2
        assert "argument --out: expected a directory path, got ''" in capsys.readouterr().err
    with pytest.raises(ValueError, match="out must name a directory"):
        train_vae(_vae(""))


def _disk_full_after(monkeypatch, writes: int):
    """Every fsync after the first ``writes`` fails as a full disk would."""
    import minivae.training.files as files

    calls = {"n": 0}
    fsync = os.fsync

    def full(fd):
        calls["n"] += 1
        if calls["n"] > writes:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        fsync(fd)

    monkeypatch.setattr(files.os, "fsync", full)


def test_a_full_disk_is_found_before_training(tmp_path, monkeypatch, capsys):
    _disk_full_after(monkeypatch, 0)
    assert main_vae(["--epochs", "1", "--hidden", "16", "--out", str(tmp_path / "run"),
                     "--no-progress"]) == 2
    captured = capsys.readouterr()
    assert captured.err == (f"error: cannot write into the output directory "
                            f"{str(tmp_path / 'run')!r}: No space left on device\n")
    assert captured.out == ""                    # not even the data was loaded


def test_a_disk_that_fills_during_the_run_keeps_the_last_checkpoint(tmp_path, monkeypatch,
                                                                    capsys):
    """fsync 1 is the probe, 2 the checkpoint of epoch 1 (--save-every 1); the final save fails."""
    _disk_full_after(monkeypatch, 2)
    code = main_vae(["--epochs", "2", "--hidden", "16", "--latent-dim", "2", "--save-every", "1",
                     "--no-progress", "--out", str(tmp_path)])
    err = capsys.readouterr().err
    assert code == 2 and err.startswith("error: ") and "No space left on device" in err
    assert read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"] == 1
    assert _no_temporaries(tmp_path)


def test_the_final_checkpoint_is_written_before_the_final_evaluation(tmp_path, small_digits,
                                                                     monkeypatch):
    import minivae.training.steps as steps

    seen = []
    final = steps.final_test_metrics

    def evaluating(model, x_test, config):
        seen.append(read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"])
        return final(model, x_test, config)

    monkeypatch.setattr(steps, "final_test_metrics", evaluating)
    train_vae(_vae(tmp_path, epochs=2), dataset=small_digits)
    assert seen == [2]


def test_sigkill_during_a_long_final_evaluation_keeps_the_weights(tmp_path):
    """--iw-samples 10⁷ takes hours; the run is killed (SIGKILL: no handler runs) while in it."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "train_vae.py"),
                             "--epochs", "1", "--hidden", "16", "--latent-dim", "2",
                             "--iw-samples", "10000000", "--no-progress", "--out", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "checkpoint.npz").exists():
            assert proc.poll() is None, proc.stderr.read()
            assert time.monotonic() < deadline, "no checkpoint before the final evaluation"
            time.sleep(0.2)
        time.sleep(0.5)
        assert proc.poll() is None          # still evaluating
    finally:
        proc.kill()
        proc.wait()
    assert read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"] == 1


# -- Ctrl-C and SIGTERM --------------------------------------------------------------

def _interrupt_at(monkeypatch, call: int):
    calls = {"n": 0}
    step = Adam.step

    def interrupted(self):
        calls["n"] += 1
        if calls["n"] == call:
            raise KeyboardInterrupt
        step(self)

    monkeypatch.setattr(Adam, "step", interrupted)


def _second_ctrl_c_during_every_save(monkeypatch):
    """A real SIGINT to this process at the start of every checkpoint save."""
    import minivae.training.resume as resume

    save = resume.save_checkpoint

    def ctrl_c_then_save(*args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)
        time.sleep(0.05)                   # the handler runs here if it is not held back
        return save(*args, **kwargs)

    monkeypatch.setattr(resume, "save_checkpoint", ctrl_c_then_save)


def _interrupted(run) -> TrainingInterrupted:
    """The TrainingInterrupted ``run()`` raises; a plain KeyboardInterrupt is a failure (pytest
    would otherwise stop the whole session on it)."""
    try:
        run()
    except TrainingInterrupted as exc:
        return exc
    except KeyboardInterrupt:
        pytest.fail("a plain KeyboardInterrupt escaped: the save was cut short")
    pytest.fail("the run was not interrupted")


def test_a_second_ctrl_c_during_the_save_is_held_back(tmp_path, small_digits, monkeypatch):
    _interrupt_at(monkeypatch, 2 * STEPS_PER_EPOCH + 3)        # Ctrl-C in epoch 3
    _second_ctrl_c_during_every_save(monkeypatch)
    exc = _interrupted(lambda: train_vae(_vae(tmp_path), dataset=small_digits))
    assert exc.epoch == 2 and exc.path == tmp_path / "checkpoint.npz"
    assert read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"] == 2
    assert _no_temporaries(tmp_path)


def test_ctrl_c_during_a_periodic_save_takes_effect_once_it_is_written(tmp_path, small_digits,
                                                                       monkeypatch):
    _second_ctrl_c_during_every_save(monkeypatch)               # the first save is epoch 1's
    exc = _interrupted(lambda: train_vae(_vae(tmp_path, save_every=1), dataset=small_digits))
    assert exc.epoch == 1
    assert read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"] == 1


def test_cli_second_ctrl_c_still_reports_the_saved_state(tmp_path, monkeypatch, capsys):
    _interrupt_at(monkeypatch, 40)            # 36 steps per epoch of 4,500 digits: in epoch 2
    _second_ctrl_c_during_every_save(monkeypatch)
    try:
        code = main_vae(["--epochs", "3", "--hidden", "16", "--latent-dim", "2", "--no-progress",
                         "--out", str(tmp_path)])
    except KeyboardInterrupt:
        pytest.fail("a KeyboardInterrupt escaped the command line")
    err = capsys.readouterr().err
    assert code == 130 and "nothing" not in err and "Traceback" not in err
    assert "interrupted (SIGINT): the state after epoch 1 is saved in" in err


def test_ctrl_c_saves_an_autoencoder_run_too(tmp_path, small_digits, monkeypatch, capsys):
    _interrupt_at(monkeypatch, STEPS_PER_EPOCH + 2)
    with pytest.raises(TrainingInterrupted) as info:
        train_autoencoder(AEConfig(epochs=3, hidden=(32,), bottleneck=8, progress=False,
                                        out=str(tmp_path)), dataset=small_digits)
    assert info.value.epoch == 1
    meta, params = read_checkpoint(tmp_path / "checkpoint.npz")
    assert meta["model"] == "Autoencoder" and all(np.isfinite(a).all() for a in params.values())


@pytest.mark.parametrize("signum,name,status", [(signal.SIGINT, "SIGINT", 130),
                                                (signal.SIGTERM, "SIGTERM", 143)])
def test_a_real_signal_to_the_example_script_saves_and_exits(tmp_path, signum, name, status):
    """A real Ctrl-C (SIGINT) or SIGTERM to a running train_vae.py: checkpoint written, status
    128 + the signal's number, no traceback."""
    proc = subprocess.Popen([sys.executable, str(ROOT / "examples" / "train_vae.py"),
                             "--epochs", "10000", "--hidden", "16", "--latent-dim", "2",
                             "--no-progress", "--out", str(tmp_path)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint_in_child)
    try:
        for line in proc.stdout:
            if line.startswith("epoch   2/"):
                break
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == status, err
    assert "Traceback" not in err and f"interrupted ({name}): the state after epoch" in err
    assert read_training_checkpoint(tmp_path / "checkpoint.npz").training["epoch"] >= 2


def test_orphaned_temporaries_are_removed_and_other_files_kept(tmp_path, small_digits):
    (tmp_path / ".checkpoint.npz.k3j2h1.tmp").write_bytes(b"half a checkpoint")
    (tmp_path / ".metrics.json.aaaa.tmp").write_bytes(b"{")
    (tmp_path / ".notes.tmp").write_text("mine")
    train_vae(_vae(tmp_path, epochs=1), dataset=small_digits)
    names = {p.name for p in tmp_path.iterdir()}
    assert ".notes.tmp" in names and not {n for n in names if n.startswith((".checkpoint",
                                                                            ".metrics"))}


def test_outputs_replace_symlinks_instead_of_writing_through_them(tmp_path, small_digits):
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    out = tmp_path / "run"
    out.mkdir()
    for name in ("loss.png", "metrics.json", "checkpoint.npz"):
        (out / name).symlink_to(victim)
    train_vae(_vae(out, epochs=1), dataset=small_digits)
    assert victim.read_text() == "precious"
    for name in ("loss.png", "metrics.json", "checkpoint.npz"):
        assert (out / name).is_file() and not (out / name).is_symlink()
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_figure_that_fails_half_way_leaves_the_old_one(tmp_path):
    import matplotlib.figure

    from minivae.training import plots

    path = tmp_path / "samples.png"
    plots.plot_samples(np.zeros((4, 784)), path)
    before = path.read_bytes()
    real = matplotlib.figure.Figure.savefig

    def half(self, f, **kw):
        f.write(b"\x89PNG half")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    try:
        matplotlib.figure.Figure.savefig = half
        with pytest.raises(OSError):
            plots.plot_samples(np.ones((4, 784)), path)
    finally:
        matplotlib.figure.Figure.savefig = real
    assert path.read_bytes() == before and _no_temporaries(tmp_path)


# -- threads and resume ----------------------------------------------------------------

def test_resume_keeps_the_stored_thread_count(tmp_path, small_digits):
    """A run with threads=1 resumed with threads=None continues with 1, not the automatic choice.

    The automatic choice for batch 512 on 2 cores is 2, whose gradient sums round
    differently: the resumed run would then differ from the straight one.
    """
    cfg = dict(batch_size=512, threads=1, epochs=3)
    straight = train_vae(_vae(tmp_path / "straight", **cfg), dataset=small_digits)
    train_vae(_vae(tmp_path / "a", **{**cfg, "epochs": 1}), dataset=small_digits)
    assert read_training_checkpoint(tmp_path / "a" / "checkpoint.npz").train_config["threads"] == 1
    resumed = train_vae(_vae(tmp_path / "b", batch_size=512, epochs=3), dataset=small_digits,
                        resume=tmp_path / "a" / "checkpoint.npz")
    assert resumed["config"]["threads"] == 1
    a = read_training_checkpoint(tmp_path / "straight" / "checkpoint.npz")
    b = read_training_checkpoint(tmp_path / "b" / "checkpoint.npz")
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    with pytest.raises(CheckpointError, match=r"threads \(stored 1, asked 2\)"):
        train_vae(_vae(None, batch_size=512, threads=2), dataset=small_digits,
                  resume=tmp_path / "a" / "checkpoint.npz")
    assert straight["config"]["threads"] == 1


def test_the_automatic_thread_count_is_stored(small_digits):
    m = train_vae(_vae(None, epochs=1, batch_size=512), dataset=small_digits)
    assert m["config"]["threads"] == (2 if (os.cpu_count() or 1) >= 2 else 1)


def test_cli_resume_takes_threads_from_the_checkpoint(tmp_path, capsys):
    base = ["--hidden", "16", "--latent-dim", "2", "--no-progress", "--batch-size", "256"]
    assert main_vae(["--epochs", "1", "--threads", "1", "--out", str(tmp_path), *base]) == 0
    ckpt = str(tmp_path / "checkpoint.npz")
    assert main_vae(["--resume", ckpt, "--epochs", "2", "--out", str(tmp_path), *base]) == 0
    assert json.loads((tmp_path / "metrics.json").read_text())["config"]["threads"] == 1
    capsys.readouterr()
    assert main_vae(["--resume", ckpt, "--epochs", "3", "--threads", "2", "--out",
                     str(tmp_path), *base]) == 2
    assert "threads (stored 1, asked 2)" in capsys.readouterr().err


def test_ctrl_c_before_the_first_epoch_says_so_and_names_an_earlier_checkpoint(tmp_path,
                                                                               monkeypatch,
                                                                               capsys):
    import minivae.training.train as train

    def interrupted_load(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "load_dataset", interrupted_load)
    assert main_vae(["--out", str(tmp_path), "--no-progress"]) == 130
    assert capsys.readouterr().err == "\ninterrupted (SIGINT) before this run saved anything\n"
    save_checkpoint(tmp_path / "checkpoint.npz", VAE(784, 16, 2, backend=get_backend()))
    assert main_vae(["--out", str(tmp_path), "--no-progress", "--overwrite"]) == 130
    assert "checkpoint.npz is as an earlier save left it" in capsys.readouterr().err
