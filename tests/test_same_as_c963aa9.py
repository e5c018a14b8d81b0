"""The restructured library trains exactly as commit c963aa9 did.

Issue 11 moved the training loop, the configs, resuming, the outputs and the
data loaders into new modules and shipped the embedded digits inside the
package.  None of that may change a number.  This test unpacks c963aa9's
``minivae/`` with ``git archive``, runs the cases of ``regression/run_cases.py``
(VAE runs on both likelihoods, warm-up, SGD, float64, a 2-D latent, static
binarization, threads 1 and the automatic choice, a resumed run; autoencoder
and denoising runs) with both trees in separate processes on the very same
data arrays, and requires bit-identical checkpoint arrays (weights and Adam's
moments, by SHA-256), per-epoch histories and final test metrics.

Settings whose defaults changed on purpose since c963aa9 are passed
explicitly to the new tree (``NEW_KEYS``): each one is a deliberate change
named in the README, not drift.

It needs git and the commit in the checkout's history, and skips without them.
"""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
COMMIT = "c963aa9"
RUNNER = ROOT / "tests" / "regression" / "run_cases.py"

#: Defaults changed on purpose after c963aa9, set back for the comparison (issue 11):
#: the VAE's initialization is "torch" now, chosen by measurement (c963aa9 drew "he"),
#: and the Gaussian likelihood's shared log σ² is learned (c963aa9 fixed it at 0).
NEW_KEYS = {"vae_default": {"init": "he"}, "vae_variety": {"init": "he"},
            "vae_resumed": {"init": "he"}, "vae_gaussian": {"init": "he", "gaussian_logvar": 0.0}}


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
def test_checkpoints_and_histories_are_bit_identical_to_c963aa9(tmp_path, small_digits):
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
        # (the final test metrics may have gained keys since, e.g. iw_nll_se; none changed)
        assert {k: after[case]["test"][k] for k in before[case]["test"]} == \
            before[case]["test"], case
