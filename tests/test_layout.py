"""The house's two wings: the lecture's math (``minivae``) never imports the run machinery.

``minivae.training`` uses the core; nothing in the core may import
``minivae.training``, not even lazily inside a function that an import runs.
Each core module is imported in a fresh interpreter, and the test fails if any
``minivae.training`` module was loaded by it.  (A lazy import inside a function
that the import does not run is caught by the source scan below.)
"""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "minivae"


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


CORE = sorted(_module_name(p) for p in PACKAGE.rglob("*.py")
              if "training" not in p.relative_to(PACKAGE).parts)
TRAINING = sorted(_module_name(p) for p in (PACKAGE / "training").rglob("*.py"))


def test_the_split_found_both_wings():
    assert {"minivae.layers", "minivae.models.vae", "minivae.kl", "minivae.fast"} <= set(CORE)
    assert {"minivae.training.fit", "minivae.training.cli"} <= set(TRAINING)


@pytest.mark.parametrize("module", CORE)
def test_importing_a_core_module_loads_no_training_module(module):
    code = ("import importlib, sys; importlib.import_module(%r); "
            "print(sorted(m for m in sys.modules if m.startswith('minivae.training')))" % module)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "[]", f"{module} loaded {done.stdout.strip()}"


def _imports(path: Path) -> set:
    """Every module name an import statement in ``path`` names, resolved against its package."""
    package = _module_name(path).rsplit(".", 1)[0] if path.name != "__init__.py" \
        else _module_name(path)
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")
            if node.level:
                base = base[:len(base) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            names.add(mod)
            names |= {f"{mod}.{a.name}" for a in node.names}
    return names


@pytest.mark.parametrize("module", CORE)
def test_no_core_source_names_the_training_package(module):
    path = ROOT / Path(*module.split("."))
    path = path / "__init__.py" if path.is_dir() else path.with_suffix(".py")
    bad = sorted(n for n in _imports(path) if n.startswith("minivae.training"))
    assert not bad, f"{module} imports {bad}"


def test_the_source_scan_sees_a_relative_import_of_training(tmp_path, monkeypatch):
    """The negative control: a core module that did import the machinery is caught."""
    fake = PACKAGE / "models" / "vae.py"
    source = fake.read_text() + "\n\ndef _late():\n    from ..training import fit\n"
    monkeypatch.setattr(Path, "read_text", lambda self, *a, **k: source)
    assert "minivae.training.fit" in _imports(fake)


def test_no_module_is_over_about_400_lines():
    long = {_module_name(p): n for p in PACKAGE.rglob("*.py")
            if (n := len(p.read_text().splitlines())) > 420}
    assert not long, f"modules to split: {long}"
