"""The CuPy half against real CuPy, on a machine with no GPU: compiled, linted, named, refused.

Real CuPy imports and its NVRTC compiles CUDA source without a driver (``.ci/run`` installs
``cupy-cuda12x`` pinned with ``cuda-toolkit[nvrtc,cudart]==12.*``).  These tests skip where
real CuPy is absent, and the compile checks where its version is not the one whose internals
``kernel_compile.py`` was written against.
"""

import ast
import importlib.util
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(Path(__file__).resolve().parent))

if importlib.util.find_spec("cupy") is None or importlib.util.find_spec("cupyx") is None:
    pytest.skip("real CuPy is not installed", allow_module_level=True)

import cupy  # noqa: E402
import kernel_compile as kc  # noqa: E402

from minivae import fast  # noqa: E402
from minivae.backend import cupy_available  # noqa: E402

pinned = pytest.mark.skipif(cupy.__version__ != kc.PINNED_CUPY,
                            reason=f"the compile check reads CuPy {kc.PINNED_CUPY}'s internals; "
                                   f"this is CuPy {cupy.__version__}")
no_gpu = pytest.mark.skipif(cupy_available(), reason="a GPU runs CuPy here")


@pytest.fixture(autouse=True)
def _fresh_kernels():
    fast._compiled.cache_clear()          # made with real CuPy, not a stand-in's
    yield
    fast._compiled.cache_clear()


@pinned
@pytest.mark.parametrize("dtype", kc.DTYPES)
@pytest.mark.parametrize("name", fast.GPU_KERNELS)
def test_every_gpu_kernel_compiles_for_hopper_and_ampere_in_its_own_type(name, dtype):
    launch, args = kc.example_call(name, dtype)
    kernel, args = kc.capture(launch, *args)
    source = kc.render(kernel, args)
    assert f"minivae_{name}" in source and ("double" if dtype == "float64" else "float") in source
    assert kc.narrower_types(source, dtype) == [], source
    for arch in kc.ARCHS:
        assert len(kc.compile_source(source, kernel.name, arch)) > 1000       # a cubin


@pinned
def test_a_broken_kernel_fails_to_compile():
    """The negative control of the compile check: a pass means the source was compiled."""
    broken = cupy.ElementwiseKernel("T x", "T y", "y = x + not_declared_anywhere;",
                                    "minivae_broken")
    kernel, args = kc.capture(broken, kc.placeholder((3,), "float32"))
    with pytest.raises(cupy.cuda.compiler.CompileException, match="not_declared_anywhere"):
        kc.compile_source(kc.render(kernel, args), kernel.name, "sm_90")


@pinned
@pytest.mark.parametrize("dtype", kc.DTYPES)
def test_the_lint_finds_float16_in_the_fused_adam_of_ac1965a(dtype):
    """Commit ac1965a fused Adam with ``1 - b1`` of two Python floats inside cupy.fuse, which
    CuPy types float16 (1 − β₂ became 0.0009765625).  The lint flags that kernel, and passes
    the same update with 1 − β computed on the host."""
    def old(p, g, m, v, b1, b2, step_size, eps):
        m = b1 * m + (1 - b1) * g
        v = b2 * v + (1 - b2) * g * g
        return p - step_size * m / (cupy.sqrt(v) + eps), m, v

    def host(p, g, m, v, b1, c1, b2, c2, step_size, eps):
        m = b1 * m + c1 * g
        v = b2 * v + c2 * g * g
        return p - step_size * m / (cupy.sqrt(v) + eps), m, v

    a = [kc.placeholder((4, 3), dtype) for _ in range(4)]
    kernel, args = kc.capture(cupy.fuse(kernel_name="ac1965a_adam")(old), *a,
                              0.9, 0.999, 1e-3, 1e-8)
    assert kc.narrower_types(kc.render(kernel, args), dtype) == ["float16"]
    kernel, args = kc.capture(cupy.fuse(kernel_name="host_adam")(host), *a,
                              0.9, 1 - 0.9, 0.999, 1 - 0.999, 1e-3, 1e-8)
    assert kc.narrower_types(kc.render(kernel, args), dtype) == []


@pinned
def test_adam_updates_in_place_with_scalars_in_the_parameters_type():
    """One ElementwiseKernel whose outputs are p, m and v themselves, every scalar typed T."""
    launch, args = kc.example_call("adam", "float32")
    kernel, args = kc.capture(launch, *args)
    assert kernel is launch and isinstance(kernel, cupy.ElementwiseKernel)
    assert [p.name for p in kernel.out_params] == ["p", "m", "v"]
    assert all(p.ctype == "T" for p in kernel.in_params + kernel.out_params)
    body = kc.render(kernel, args).split("extern")[1]
    assert kc.narrower_types(body, "float32") == [] and "double" not in body   # nor wider


def _cupy_names_used():
    """Every ``xp.<a>[.<b>]`` (xp also as ``self.xp``, ``backend.xp``, ``array_module(a)``) and
    every method called on a backend's generator (``backend.rng.<m>``, and ``rng.<m>`` in the
    two modules whose functions take the backend's generator) that the library writes."""
    modules = {"array_module", "common_array_module"}
    xp_names, rng_methods = set(), set()
    for path in (ROOT / "minivae").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            chain, base = [], node
            while isinstance(base, ast.Attribute):
                chain.insert(0, base.attr)
                base = base.value
            if isinstance(base, ast.Name):
                chain.insert(0, base.id)
            elif isinstance(base, ast.Call) and getattr(base.func, "id", None) in modules:
                chain.insert(0, "xp")
            if "xp" in chain[:-1]:
                xp_names.add(".".join(chain[len(chain) - chain[::-1].index("xp"):]))
            device_rng = chain[:1] != ["rng"] or path.name in ("corruption.py", "batches.py")
            if "rng" in chain[:-1] and device_rng:
                rng_methods.add(chain[chain.index("rng") + 1])
    return xp_names, rng_methods - {"bit_generator"}   # (read only of NumPy's, in resume.py)


def test_every_cupy_name_minivae_uses_resolves():
    xp_names, rng_methods = _cupy_names_used()
    assert {"exp", "log1p", "linalg.cholesky", "random.default_rng", "zeros_like"} <= xp_names
    assert {"standard_normal", "random"} <= rng_methods
    missing = [n for n in sorted(xp_names) if _resolve(cupy, n) is None]
    assert not missing, f"not in CuPy {cupy.__version__}: {missing}"
    missing = [m for m in sorted(rng_methods) if not hasattr(cupy.random.Generator, m)]
    assert not missing, f"not methods of cupy.random.Generator: {missing}"
    import cupyx
    assert callable(cupyx.errstate) and callable(cupy.fuse) and cupy.ElementwiseKernel


def _resolve(module, dotted):
    obj = module
    for part in dotted.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


@no_gpu
def test_backend_cupy_without_a_gpu_exits_2_with_one_line(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "train_vae.py"), "--backend",
                           "cupy", "--epochs", "1", "--out", str(tmp_path / "r")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: backend 'cupy' is unavailable: "
                                                   "CuPy is installed but no CUDA GPU answers")
    assert not (tmp_path / "r" / "checkpoint.npz").exists()


@no_gpu
def test_backend_auto_without_a_gpu_runs_on_numpy_and_says_why(tmp_path):
    done = subprocess.run([sys.executable, str(ROOT / "examples" / "train_autoencoder.py"),
                           "--backend", "auto", "--epochs", "1", "--no-progress", "--out",
                           str(tmp_path / "r")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    notes = [l for l in done.stderr.splitlines() if "auto" in l]
    assert notes == [notes[0]] and notes[0].startswith("note: backend 'auto' runs on NumPy: "
                                                       "CuPy is installed but no CUDA GPU")
    assert "name='numpy'" in done.stdout and (tmp_path / "r" / "checkpoint.npz").is_file()


def test_the_compile_table_lists_every_kernel_once_per_dtype_and_arch():
    if cupy.__version__ != kc.PINNED_CUPY:
        pytest.skip("pinned CuPy only")
    rows = kc.check_all()
    assert len(rows) == len(fast.GPU_KERNELS) * len(kc.DTYPES) * len(kc.ARCHS)
    assert all(r["cubin_bytes"] > 1000 and r["narrower"] == [] for r in rows)
    assert np.unique([(r["kernel"], r["dtype"], r["arch"]) for r in rows], axis=0).shape[0] \
        == len(rows)
