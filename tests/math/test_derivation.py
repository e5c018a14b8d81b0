"""examples/derivation.py: every printed line of the backward agrees with its central difference,
the walk is the library's backward bit for bit, and a wrong line is caught."""

import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "examples" / "derivation.py"


@pytest.fixture(scope="module")
def derivation():
    spec = importlib.util.spec_from_file_location("derivation_example", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("walk", [0, 1, 2], ids=["diagonal", "full", "iwae"])
def test_every_line_agrees_with_its_central_difference(derivation, walk):
    rows, same = list(derivation.WALKS.values())[walk]()
    assert same                                   # the walk is vae.py's / iwae.py's backward
    assert len(rows) >= 9
    for r in rows:
        assert r["error"] < derivation.TOLERANCE, r
        assert r["code"] == pytest.approx(r["numeric"], rel=1e-5, abs=1e-9), r


def test_a_wrong_line_is_caught(derivation, monkeypatch):
    """The negative control: ∂KL/∂logvar written as ½σ² (the −1 dropped) fails its line."""
    from minivae.models.posterior import Posterior

    original = Posterior.kl_grad

    def wrong(self):
        dmu, dlogvar, dtril = original(self)
        return dmu, dlogvar + 0.5, dtril

    monkeypatch.setattr(Posterior, "kl_grad", wrong)
    rows, same = derivation.walk_elbo("diagonal")
    errors = {r["formula"].split(" =")[0]: r["error"] for r in rows}
    assert errors["∂L/∂logvar"] > 1e-2 and errors["∂L/∂μ"] < derivation.TOLERANCE
    assert same                                   # (the library would carry the same mistake)


def test_the_script_prints_the_walk_and_exits_0():
    done = subprocess.run([sys.executable, str(SCRIPT)], capture_output=True, text=True,
                          timeout=120, cwd=str(ROOT))
    assert done.returncode == 0, done.stderr[-2000:]
    lines = done.stdout.splitlines()
    assert lines[-1].endswith("every line agrees with its central difference")
    assert sum("bit for bit: True" in l for l in lines) == 3
    errors = [float(l.split()[-1]) for l in lines if l.startswith("  ∂L/∂")]
    assert len(errors) >= 28 and max(errors) < 1e-6 and np.isfinite(errors).all()


def test_the_script_answers_help_and_refuses_unknown_arguments(derivation, capsys):
    with pytest.raises(SystemExit) as stop:
        derivation.main(["--help"])
    assert stop.value.code == 0 and "Exit status 0 when every line agrees" in capsys.readouterr().out
    with pytest.raises(SystemExit) as stop:
        derivation.main(["--epochs", "3"])
    assert stop.value.code == 2 and "unrecognized arguments" in capsys.readouterr().err
