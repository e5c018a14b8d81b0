"""Compile every GPU kernel minivae launches with real CuPy and NVRTC, on a machine with no GPU.

    python tests/backend/kernel_compile.py          # prints the table of the README

How, step by step (each step verified with CuPy 14.2.0; it leans on CuPy internals, so the
version is pinned in .ci/run and the tests skip on another one):

1. The kernels are called on *placeholder* arrays: ``cupy.ndarray`` objects whose memory is an
   ``UnownedMemory`` at a fake address, so nothing is allocated and no device is asked.
   ``cupy.fuse`` traces its Python function on them and builds an ``ElementwiseKernel``.
2. The placeholders carry ``__cupy_override_elementwise_kernel__``, the hook that
   ``ElementwiseKernel.__call__`` consults before its first device call: it hands over the
   kernel object and its arguments, and the launch never happens.
3. The kernel's own type resolution (``_decide_params_type``) and CuPy's own source generator
   (``cupy._core._kernel._get_elementwise_kernel_code``) render the CUDA source CuPy would
   compile, prefixed with the headers CuPy prepends.
4. ``cupy.cuda.compiler._NVRTCProgram(..., method="cubin").compile`` compiles it for a given
   architecture with the options CuPy adds (``assemble_cupy_compiler_options`` and
   ``-ftz=true``); only CuPy's hand-off to the device (which asks the GPU for its
   architecture and loads the module) is bypassed.
5. The lint: no value is computed in a type narrower than the kernel's arrays. The generated
   source names every intermediate's type; float16 (``float16``, ``half``) may appear in none,
   and in a float64 kernel no ``float`` either.
"""

from __future__ import annotations

import re

import numpy as np

#: The CuPy version these internals were read from.
PINNED_CUPY = "14.2.0"
#: H100 and H200 (Hopper), and A100 (Ampere).
ARCHS = ("sm_90", "sm_80")
DTYPES = ("float32", "float64")


class _Captured(Exception):
    pass


def _placeholder_class():
    import cupy

    class Placeholder(cupy.ndarray):
        """An array that is never read: its first kernel launch is caught, not run."""

        def __cupy_override_elementwise_kernel__(self, kernel, *args, **kwargs):
            raise _Captured(kernel, args)

    return Placeholder


def placeholder(shape, dtype):
    """A ``cupy.ndarray`` of ``shape`` and ``dtype`` at a fake address: nothing is allocated."""
    from cupy.cuda import memory

    nbytes = max(int(np.prod(shape)) * np.dtype(dtype).itemsize, 1)
    mem = memory.UnownedMemory(0x10000000, nbytes, None, device_id=0)
    return _placeholder_class()(shape, dtype=dtype, memptr=memory.MemoryPointer(mem, 0))


def capture(kernel, *args):
    """``(ElementwiseKernel, its arguments)`` that calling ``kernel(*args)`` would launch."""
    try:
        kernel(*args)
    except _Captured as c:
        return c.args
    raise AssertionError(f"{kernel!r} launched no elementwise kernel")


def render(kernel, args) -> str:
    """The CUDA source CuPy generates for ``kernel`` called with ``args`` (all broadcast alike)."""
    import cupy
    from cupy._core import _carray, _kernel, _scalar

    ins = args[:kernel.nin]
    outs = args[kernel.nin:]
    ndim = max(a.ndim for a in args if isinstance(a, cupy.ndarray))
    in_dtypes = tuple(a.dtype if isinstance(a, cupy.ndarray) else None for a in ins)
    in_types, out_types, type_map = kernel._decide_params_type(
        in_dtypes, tuple(a.dtype for a in outs))
    ndarray, scalar, indexer = 1, 3, 2          # cupy/_core/_kernel.pxd: _ArgKind
    infos = [_kernel._ArgInfo(ndarray, cupy.ndarray, a.dtype, ndim, False, True)
             if isinstance(a, cupy.ndarray) else
             _kernel._ArgInfo(scalar, _scalar.CScalar, np.dtype(t), 0, True, True)
             for a, t in zip(ins, in_types)]
    infos += [_kernel._ArgInfo(ndarray, cupy.ndarray, np.dtype(t), ndim, False, True)
              for t in out_types]
    infos.append(_kernel._ArgInfo(indexer, _carray.Indexer, None, ndim, True, True))
    return _kernel._get_elementwise_kernel_code(tuple(infos), type_map, kernel.params,
                                                kernel.operation, kernel.name, kernel.preamble)


def compile_source(source: str, name: str, arch: str) -> bytes:
    """The cubin NVRTC makes of ``source`` for ``arch``, with CuPy's headers and options."""
    from cupy._core import core
    from cupy.cuda import compiler

    header = "".join(f"#include <{h}>\n" for h in core._cupy_header_list)
    options = core.assemble_cupy_compiler_options(()) + ("-ftz=true", f"-arch={arch}")
    cubin, _ = compiler._NVRTCProgram(header + source, f"{name}.cu",
                                      method="cubin").compile(options)
    return cubin


_NARROW = {"float32": re.compile(r"\b(float16|half|__half)\b"),
           "float64": re.compile(r"\b(float16|half|__half|float)\b")}


def narrower_types(source: str, dtype: str) -> list:
    """The type names in ``source`` narrower than ``dtype`` (the float16 lint): [] when clean.

    Preprocessor lines are left out: CuPy includes its float16 header in every kernel.
    """
    code = "\n".join(l for l in source.splitlines() if not l.lstrip().startswith("#"))
    return sorted(set(_NARROW[dtype].findall(code)))


def example_call(name: str, dtype: str):
    """``(kernel, args)``: GPU kernel ``name`` of :data:`minivae.fast.GPU_KERNELS` on placeholders."""
    from minivae import fast

    a = lambda *shape: placeholder(shape, dtype)          # noqa: E731
    args = {"bernoulli_terms": (a(8, 6), a(8, 6)),
            "bernoulli_grad": (a(8, 6), a(8, 6), a(8, 1)),
            "reparameterize": (a(8, 3), a(8, 3), a(8, 3)),
            "adam": (a(4, 3), 0.9, 0.1, 0.999, 0.001, 1e-3, 1e-8, a(4, 3), a(4, 3), a(4, 3))}
    return fast._compiled(name), args[name]


def check_all():
    """One row per kernel × dtype × arch: compiled (cubin bytes) and the lint's findings."""
    from minivae import fast

    rows = []
    for name in fast.GPU_KERNELS:
        for dtype in DTYPES:
            launch, args = example_call(name, dtype)
            kernel, args = capture(launch, *args)
            source = render(kernel, args)
            for arch in ARCHS:
                cubin = compile_source(source, kernel.name, arch)
                rows.append({"kernel": name, "dtype": dtype, "arch": arch,
                             "cubin_bytes": len(cubin),
                             "narrower": narrower_types(source, dtype)})
    return rows


if __name__ == "__main__":
    import cupy

    print(f"CuPy {cupy.__version__}, NVRTC {'.'.join(map(str, cupy.cuda.nvrtc.getVersion()))}")
    print("| kernel | dtype | sm_90 (H100, H200) | sm_80 (A100) | narrower types |")
    print("|---|---|---|---|---|")
    rows = check_all()
    for name_dtype in dict.fromkeys((r["kernel"], r["dtype"]) for r in rows):
        got = {r["arch"]: r for r in rows if (r["kernel"], r["dtype"]) == name_dtype}
        lint = ", ".join(got["sm_90"]["narrower"]) or "none"
        print(f"| `{name_dtype[0]}` | {name_dtype[1]} | compiled, {got['sm_90']['cubin_bytes']:,}"
              f" B | compiled, {got['sm_80']['cubin_bytes']:,} B | {lint} |")
