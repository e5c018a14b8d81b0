"""The library trains exactly as it did before the restructuring of issue 16.

Issue 16 moved the run machinery into ``minivae.training``, made each fast path a
named twin of its formula (``minivae.fast``), took the run's flags out of the
math's signatures and renamed the configs.  None of that may change a number.
This test unpacks ``minivae/`` of commit ac1965a (the last one before that
work) with ``git archive``, runs the cases of ``regression/run_cases.py`` (VAE
runs on both likelihoods, warm-up, SGD, float64, a 2-D latent, static
binarization, threads 1 and the automatic choice, a resumed run; autoencoder
and denoising runs) with both trees in separate processes on the very same
data arrays, and requires bit-identical checkpoint arrays (weights and Adam's
moments, by SHA-256), per-epoch histories and final test metrics.

(Commit ac1965a was itself held bit-identical to c963aa9, the last commit
before issue 11, by this test's predecessor, with two defaults changed on
purpose since then set back: the VAE's init and the Gaussian's learned log σ².)

It needs git and the commit in the checkout's history, and skips without them.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
COMMIT = "ac1965a"
RUNNER = ROOT / "tests" / "regression" / "run_cases.py"

#: Settings whose defaults changed on purpose since COMMIT, set back for the comparison:
#: none so far.
NEW_KEYS: dict = {}


def _old_tree(tmp_path) -> Path:
    if shutil.which("git") is None:
        pytest.skip("git is not installed")
    probe = subprocess.run(["git", "-C", str(ROOT), "cat-file", "-e", f"{COMMIT}^{{commit}}"],
                           capture_output=True)
    if probe.returncode != 0:
        pytest.skip(f"commit {COMMIT} is not in this checkout's history")
    old = tmp_path / "old"
    old.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", COMMIT, "minivae"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(old)], input=archive, check=True)
    return old


def _fingerprint(src: Path, data: Path, new_keys: Path | None) -> dict:
    cmd = [sys.executable, str(RUNNER), str(src), str(data)] + ([str(new_keys)] if new_keys
                                                                  else [])
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600,
                          cwd=str(data.parent))
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.slow
def test_checkpoints_and_histories_are_bit_identical_to_the_commit_before(tmp_path, small_digits):
    old = _old_tree(tmp_path)
    data = tmp_path / "digits.npz"
    np.savez(data, x_train=small_digits.x_train, y_train=small_digits.y_train,
             x_test=small_digits.x_test, y_test=small_digits.y_test)
    keys = tmp_path / "new_keys.json"
    keys.write_text(json.dumps(NEW_KEYS))
    before = _fingerprint(old, data, None)
    after = _fingerprint(ROOT, data, keys)
    assert sorted(before) == sorted(after)
    for case in before:
        assert after[case]["arrays"] == before[case]["arrays"], case
        assert after[case]["history"] == before[case]["history"], case
        assert {k: after[case]["test"][k] for k in before[case]["test"]} == \
            before[case]["test"], case
