"""Nothing a user trained is lost, and every hint the program prints works when pasted (issue 19).

Each test here backs a row of docs/reliability.md and failed on the code before the fix.
"""

import json
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minivae.training.checkpoint import read_training_checkpoint
from minivae.training.cli import main_autoencoder, main_vae
from minivae.training.files import LOCK_NAME, OutputError, claimed_output_dir

ROOT = Path(__file__).resolve().parents[2]
SMALL = ["--hidden", "32", "--latent-dim", "2", "--no-progress", "--batch-size", "500"]


def _epoch_of(path) -> int:
    return read_training_checkpoint(path).training["epoch"]


def test_a_new_run_never_replaces_an_earlier_runs_checkpoint(tmp_path, capsys, monkeypatch):
    out = tmp_path / "R"
    assert main_vae(["--epochs", "2", "--out", str(out), *SMALL]) == 0
    before = (out / "checkpoint.npz").read_bytes()
    capsys.readouterr()
    # the same --out again, by mistake: refused before any work, the trained epochs kept
    assert main_vae(["--epochs", "5", "--lr", "1e6", "--out", str(out), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "holds the checkpoint of an earlier run" in err and "--resume" in err \
        and "--overwrite" in err
    assert (out / "checkpoint.npz").read_bytes() == before
    # a Ctrl-C in the first epoch of a second run cannot reach the earlier checkpoint either
    import minivae.training.steps as steps
    monkeypatch.setattr(steps, "check_finite_loss", lambda *a, **k: (_ for _ in ()).throw(
        KeyboardInterrupt()))
    assert main_vae(["--epochs", "3", "--out", str(out), *SMALL]) == 2
    assert (out / "checkpoint.npz").read_bytes() == before
    monkeypatch.undo()
    # asked for: --resume continues it, --overwrite replaces it
    assert main_vae(["--resume", str(out / "checkpoint.npz"), "--epochs", "3", "--out",
                     str(out), "--no-progress"]) == 0
    assert _epoch_of(out / "checkpoint.npz") == 3
    assert main_vae(["--epochs", "1", "--out", str(out), "--overwrite", *SMALL]) == 0
    assert _epoch_of(out / "checkpoint.npz") == 1


def test_the_autoencoder_keeps_an_earlier_checkpoint_too(tmp_path, capsys):
    args = ["--epochs", "1", "--hidden", "16", "--bottleneck", "4", "--no-progress",
            "--out", str(tmp_path)]
    assert main_autoencoder(args) == 0
    before = (tmp_path / "checkpoint.npz").read_bytes()
    assert main_autoencoder(args) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "checkpoint.npz").read_bytes() == before
    assert main_autoencoder(args + ["--overwrite"]) == 0


def test_a_second_run_into_a_busy_out_stops_at_once_and_touches_nothing(tmp_path):
    """An OS lock on the directory: the second run names the first's pid; the first's
    in-flight temporary file survives the second's start-up."""
    busy = tmp_path / "busy"
    with claimed_output_dir(busy, ["checkpoint.npz"]) as out:
        in_flight = out / ".checkpoint.npz.abc123.tmp"
        in_flight.write_bytes(b"half written")
        done = subprocess.run([sys.executable, str(ROOT / "examples" / "train_vae.py"),
                               "--epochs", "1", "--out", str(busy), *SMALL],
                              capture_output=True, text=True, timeout=120)
        assert done.returncode == 2
        assert done.stderr.strip().splitlines() == [
            f"error: another run (pid {os.getpid()}) is writing into {str(busy)!r}; wait for "
            f"it to end or choose another --out"]
        assert in_flight.read_bytes() == b"half written"
        with pytest.raises(OutputError, match="another run"):
            with claimed_output_dir(busy):
                pass
    with claimed_output_dir(busy):          # released with the block
        assert (busy / LOCK_NAME).exists()


def test_the_lock_goes_with_a_killed_process(tmp_path):
    code = ("import sys, time; from minivae.training.files import claimed_output_dir\n"
            f"with claimed_output_dir({str(tmp_path)!r}):\n"
            "    print('locked', flush=True); time.sleep(60)\n")
    holder = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(OutputError, match=f"pid {holder.pid}"):
            with claimed_output_dir(tmp_path):
                pass
    finally:
        holder.kill()
        holder.wait()
    with claimed_output_dir(tmp_path):
        pass


def test_a_directory_in_the_way_of_a_file_is_refused_before_training(tmp_path, capsys):
    (tmp_path / "checkpoint.npz").mkdir()
    t0 = time.perf_counter()
    assert main_vae(["--epochs", "50", "--out", str(tmp_path), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "checkpoint.npz" in err and "is not a file" in err
    assert time.perf_counter() - t0 < 20 and not (tmp_path / "metrics.json").exists()


def _fake_mnist_dir(tmp_path):
    from idx_files import fake_mnist, write_fake_dir
    return write_fake_dir(tmp_path / "mnist", fake_mnist(n_train=600, n_test=50))


def test_the_printed_resume_command_resumes_the_same_run(tmp_path, capsys, monkeypatch):
    """Interrupted with --dataset mnist --data-dir D --iw-samples 20 --save-every 1: the hint,
    pasted as printed, finds the data and keeps the evaluation and save settings."""
    import minivae.training.steps as steps

    data = _fake_mnist_dir(tmp_path)
    out = tmp_path / "H"
    original, calls = steps.VAEStep.end_epoch, []

    def interrupt_in_epoch_2(self, epoch):
        calls.append(epoch)
        if epoch == 2:
            raise KeyboardInterrupt
        return original(self, epoch)

    monkeypatch.setattr(steps.VAEStep, "end_epoch", interrupt_in_epoch_2)
    assert main_vae(["--dataset", "mnist", "--data-dir", str(data), "--iw-samples", "20",
                     "--save-every", "1", "--epochs", "3", "--out", str(out), *SMALL]) == 130
    monkeypatch.undo()
    hint = capsys.readouterr().err.strip().splitlines()[-1]
    command = shlex.split(hint.split("continue with: ", 1)[1])
    assert command[:2] == ["python", "examples/train_vae.py"]
    assert main_vae(command[2:]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["config"]["iw_samples"] == 20 and "iw_nll" in metrics["test"]
    assert metrics["config"]["save_every"] == 1 and metrics["config"]["data_dir"] == str(data)
    assert metrics["dataset"] == "mnist" and len(metrics["history"]) == 3


def test_data_dir_with_the_embedded_digits_is_refused(tmp_path, capsys):
    for flags in (["--data-dir", str(tmp_path)], ["--download"]):
        assert main_vae(["--epochs", "1", "--out", str(tmp_path / "r"), *flags, *SMALL]) == 2
        err = capsys.readouterr().err
        assert "mnist5k ships inside minivae" in err and "dataset='mnist'" in err
    assert not (tmp_path / "r").exists()


def test_resuming_with_the_default_k_written_out_is_no_conflict(tmp_path, capsys):
    out = tmp_path / "r"
    base = ["--objective", "iwae", "--threads", "1", *SMALL]
    assert main_vae(["--epochs", "1", "--out", str(out), *base]) == 0
    ckpt = str(out / "checkpoint.npz")
    assert main_vae(["--resume", ckpt, "--epochs", "2", "--k", "5", "--out", str(out),
                     "--no-progress"]) == 0
    capsys.readouterr()
    assert main_vae(["--resume", ckpt, "--epochs", "3", "--k", "4", "--out", str(out),
                     "--no-progress"]) == 2
    assert "k (stored 5, asked 4)" in capsys.readouterr().err


def test_metrics_report_the_peak_memory_of_the_whole_run(tmp_path, monkeypatch):
    """Sampled after the figures: a figure that takes memory shows in metrics.json."""
    import minivae.training.outputs as outputs
    from minivae.data import load_dataset
    from minivae.training.train import VAEConfig, train_vae

    original, held = outputs.write_figures, []

    def hungry_figures(*args, **kwargs):
        held.append(np.ones(60 * 2 ** 20 // 8))          # 60 MiB, touched
        return original(*args, **kwargs)

    monkeypatch.setattr("minivae.training.train.write_figures", hungry_figures)
    ds = load_dataset("mnist5k")
    config = VAEConfig(epochs=1, hidden=(32,), latent_dim=2, progress=False, out=str(tmp_path))
    metrics = train_vae(config, dataset=ds)
    written = json.loads((tmp_path / "metrics.json").read_text())
    assert written["memory"] == metrics["memory"]
    import resource
    peak_now = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    assert metrics["memory"]["peak_rss_mib"] >= peak_now - 1      # nothing came after it


def test_a_custom_dataset_is_recorded_checked_and_drawn_without_labels(tmp_path):
    from minivae.data import Dataset
    from minivae.training.checkpoint import read_checkpoint
    from minivae.training.train import DataError, VAEConfig, train_vae

    rng = np.random.default_rng(0)
    x = rng.random((200, 1000)).astype(np.float32)
    config = VAEConfig(epochs=1, hidden=(16,), latent_dim=3, progress=False,
                       out=str(tmp_path / "a"))
    with pytest.raises(DataError, match=r"1000 values per example, but its image_shape \(28, 28\)"):
        train_vae(config, dataset=Dataset("custom", x[:150], None, x[150:], None))
    assert not (tmp_path / "a" / "checkpoint.npz").exists()       # before any training
    metrics = train_vae(config, dataset=Dataset("custom", x[:150], None, x[150:], None,
                                                image_shape=(25, 40)))
    assert metrics["dataset"] == "custom"
    assert read_checkpoint(tmp_path / "a" / "checkpoint.npz")[0]["extra"]["dataset"] == "custom"
    assert (tmp_path / "a" / "latent_scatter.png").stat().st_size > 1000


def test_a_one_image_test_split_with_a_wide_latent_draws_its_scatter(tmp_path):
    from minivae.data import Dataset, load_dataset
    from minivae.training.train import VAEConfig, train_vae

    ds = load_dataset("mnist5k")
    one = Dataset("mnist5k", ds.x_train[:300], ds.y_train[:300], ds.x_test[:1], ds.y_test[:1])
    config = VAEConfig(epochs=1, hidden=(16,), latent_dim=4, progress=False, out=str(tmp_path))
    train_vae(config, dataset=one)
    assert (tmp_path / "latent_scatter.png").stat().st_size > 1000


@pytest.mark.parametrize("what", ["directory", "png"])
def test_resume_from_a_directory_or_an_image_says_what_it_is(tmp_path, capsys, what):
    target = tmp_path / "d"
    if what == "directory":
        target.mkdir()
    else:
        target.write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(100))
    assert main_vae(["--resume", str(target), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    expected = "is a directory; name the file in it" if what == "directory" else \
        "is not a minivae checkpoint (not an .npz archive)"
    assert expected in err and "pickled" not in err


def test_negative_numbers_parse_as_values_and_an_overflowing_fixed_variance_is_named(
        tmp_path, capsys):
    assert main_vae(["--likelihood", "gaussian", "--gaussian-logvar", "-1e5", "--out",
                     str(tmp_path / "a"), *SMALL]) == 2
    err = capsys.readouterr().err
    assert "expected one argument" not in err
    assert err.strip() == ("error: gaussian_logvar=-100000 fixes σ² = e^-100000, and σ² or 1/σ² "
                           "overflows float32: |log σ²| must stay below 88.7")
    # a value that trains but diverges: the hint names the setting before the learning rate
    assert main_vae(["--likelihood", "gaussian", "--gaussian-logvar", "-60", "--epochs", "1",
                     "--out", str(tmp_path / "b"), *SMALL]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "the fixed --gaussian-logvar -60 sets σ² = e^-60" in err[0]
    assert err[0].index("--gaussian-logvar") < err[0].index("learning rate")


def test_a_diverging_run_prints_one_line_and_no_numpy_warnings(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "train_vae.py"), "--lr",
                           "1e6", "--epochs", "2", "--out", str(tmp_path), *SMALL],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    assert "RuntimeWarning" not in done.stderr
    assert [l for l in done.stderr.splitlines() if l.strip()] == [
        l for l in done.stderr.splitlines() if l.startswith("error: ")]


def test_idx_labels_stored_as_floats_are_refused(tmp_path):
    from idx_files import fake_mnist, write_fake_dir
    from minivae.data import DataError, load_idx_dataset

    arrays = fake_mnist()
    arrays["train-labels-idx1-ubyte"] = np.array([1, 2, np.nan, 3.7, 0, 1, 2], np.float64)
    write_fake_dir(tmp_path, arrays)
    with pytest.raises(DataError, match="labels must be stored as integers, found float64"):
        load_idx_dataset("mnist", tmp_path)


def test_the_kls_name_a_zero_dimension_and_float16_arguments():
    from minivae.kl import kl_mvn, kl_mvn_tril_std, kl_normal_std

    with pytest.raises(ValueError, match=r"mu1 has shape \(2, 0\): a Gaussian needs at least "):
        kl_mvn(np.zeros((2, 0)), np.zeros((2, 0, 0)), np.zeros((2, 0)), np.zeros((2, 0, 0)))
    with pytest.raises(ValueError, match=r"mu has shape \(0,\)"):
        kl_mvn_tril_std(np.zeros(0), np.zeros((0, 0)))
    half = np.zeros(3, np.float16)
    with pytest.raises(ValueError, match="mu is float16: minivae computes in float32 or float64"):
        kl_normal_std(half, half)
    with pytest.raises(ValueError, match="cov2 is float16"):
        kl_mvn(np.zeros(2), np.eye(2), np.zeros(2), np.eye(2, dtype=np.float16))
