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
