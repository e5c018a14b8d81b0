"""A strict stand-in for CuPy, backed by NumPy: the GPU code paths, tested on a CPU.

It is as strict as CuPy where CuPy is strict, so that what passes here fails on a
GPU only for reasons of the GPU itself:

* a device array (:class:`ndarray`) refuses implicit conversion to NumPy
  (``numpy.asarray(a)``, NumPy ufuncs and functions on it raise TypeError, as
  CuPy's do); ``.get()``, ``cupy.asnumpy``, ``float()``, ``int()``, ``bool()``
  and ``.item()`` are the explicit ways out, and each counts as one **host
  sync** (:data:`SYNCS`): on a GPU each waits for every queued kernel;
* NumPy arrays are refused as operands and arguments of device calls (only
  ``cupy.asarray`` / ``cupy.array`` take host data, and index keys may be NumPy
  integer arrays, as CuPy allows);
* ``cupy.random.default_rng`` offers only CuPy's Generator methods
  (``random``, ``standard_normal``, ``integers``), and its state cannot be read;
* ``cupy.linalg.cholesky`` does not raise on a matrix that is not positive
  definite (it fills the factor with NaN) unless inside
  ``cupyx.errstate(linalg="raise")``, as CuPy's;
* ``cupy.fuse`` runs the Python function itself (the arithmetic a fused kernel
  would compile);
* ``cupy.ElementwiseKernel`` runs its very CUDA body, for the small subset of C
  minivae writes (one assignment ``name = expression;`` a line, arithmetic and
  ``sqrt``), as NumPy statements over whole arrays: every ``T`` scalar cast to
  the arrays' type first, as CUDA would, and the output parameters written in
  place; anything else in a body is refused.

:func:`install` puts it into ``sys.modules`` as ``cupy`` and ``cupyx``.
"""

from __future__ import annotations

import contextlib
import operator
import sys
import types

import numpy as np

#: Host syncs: every device → host read (``float(a)``, ``a.get()``, …) adds one.
SYNCS = {"count": 0}
#: Host → device copies (``cupy.asarray`` of NumPy data).
TRANSFERS = {"count": 0}


def _sync():
    SYNCS["count"] += 1


class ndarray:
    """A device array: a NumPy array inside, reachable only as CuPy allows."""

    __array_ufunc__ = None          # NumPy ufuncs refuse it, and `np_array + a` raises
    __slots__ = ("_a",)

    def __init__(self, a):
        self._a = a

    # -- the ways to the host --------------------------------------------
    def __array__(self, *args, **kwargs):
        raise TypeError("Implicit conversion to a NumPy array is not allowed. Please use "
                        "`.get()` to construct a NumPy array explicitly.")

    def __array_function__(self, func, types_, args, kwargs):
        raise TypeError(f"numpy.{func.__name__} was given a CuPy array; use cupy."
                        f"{func.__name__} or move it to the host with .get()")

    def get(self):
        _sync()
        return self._a.copy()

    def item(self):
        _sync()
        return self._a.item()

    def tolist(self):
        _sync()
        return self._a.tolist()

    def __float__(self):
        _sync()
        return float(self._a)

    def __int__(self):
        _sync()
        return int(self._a)

    def __bool__(self):
        _sync()
        return bool(self._a)

    def __index__(self):
        _sync()
        return operator.index(self._a)

    # -- shape and type: no data is read ---------------------------------
    shape = property(lambda self: self._a.shape)
    dtype = property(lambda self: self._a.dtype)
    ndim = property(lambda self: self._a.ndim)
    size = property(lambda self: self._a.size)
    nbytes = property(lambda self: self._a.nbytes)
    flags = property(lambda self: self._a.flags)
    base = property(lambda self: None if self._a.base is None else ndarray(self._a.base))
    # a MemoryPointer's address: CuPy's ``a.data.ptr``
    data = property(lambda self: types.SimpleNamespace(ptr=self._a.__array_interface__["data"][0]))
    T = property(lambda self: ndarray(self._a.T))

    def __len__(self):
        return len(self._a)

    def __iter__(self):
        return (_wrap(row) for row in self._a)

    def __repr__(self):
        return f"fake_cupy.ndarray(shape={self.shape}, dtype={self.dtype})"

    # -- indexing ----------------------------------------------------------
    def __getitem__(self, key):
        return _wrap(self._a[_unwrap(key, "an index", allow_host=True)])

    def __setitem__(self, key, value):
        self._a[_unwrap(key, "an index", allow_host=True)] = _unwrap(value, "an assigned value")

    # -- methods -------------------------------------------------------------
    def __getattr__(self, name):
        if name not in _METHODS:
            raise AttributeError(f"the CuPy stand-in's ndarray has no method {name!r}")
        method = getattr(self._a, name)

        def call(*args, **kwargs):
            return _wrap(method(*_unwrap(args, f"ndarray.{name}"),
                                **_unwrap(kwargs, f"ndarray.{name}")))
        return call


ndarray.__module__ = "cupy._core.core"

_METHODS = {"sum", "mean", "max", "min", "std", "var", "reshape", "astype", "copy", "fill",
            "ravel", "transpose", "swapaxes", "diagonal", "argmax", "argmin", "any", "all",
            "clip", "squeeze", "dot", "cumsum", "repeat", "take", "prod", "flatten", "view"}


def _unwrap(x, where: str, allow_host: bool = False):
    """Device arrays to their NumPy insides; NumPy arrays refused (but in index keys)."""
    if isinstance(x, ndarray):
        return x._a
    if isinstance(x, np.ndarray):
        if allow_host and x.dtype.kind in "biu":
            return x
        raise TypeError(f"Unsupported type {type(x)} in {where}: a NumPy array in a CuPy call "
                        f"(move it with cupy.asarray first)")
    if isinstance(x, (list, tuple)):
        return type(x)(_unwrap(v, where, allow_host) for v in x)
    if isinstance(x, dict):
        return {k: _unwrap(v, where, allow_host) for k, v in x.items()}
    return x


def _wrap(r):
    """NumPy results back to device arrays; CuPy returns 0-d arrays where NumPy gives scalars."""
    if isinstance(r, np.ndarray):
        return ndarray(r)
    if isinstance(r, np.generic):
        return ndarray(np.asarray(r))
    if isinstance(r, tuple):
        return tuple(_wrap(v) for v in r)
    if isinstance(r, list):
        return [_wrap(v) for v in r]
    return r


def _binary(name):
    op = getattr(operator, name)

    def method(self, other):
        return _wrap(op(self._a, _unwrap(other, f"the operator {name}")))

    def reflected(self, other):
        return _wrap(op(_unwrap(other, f"the operator {name}"), self._a))

    def inplace(self, other):
        getattr(operator, f"i{name}")(self._a, _unwrap(other, f"the operator {name}="))
        return self

    return method, reflected, inplace


for _name in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and_",
              "or_", "xor"):
    _m, _r, _i = _binary(_name)
    _dunder = _name.rstrip("_")
    setattr(ndarray, f"__{_dunder}__", _m)
    setattr(ndarray, f"__r{_dunder}__", _r)
    setattr(ndarray, f"__i{_dunder}__", _i)
for _name in ("lt", "le", "gt", "ge", "eq", "ne"):
    setattr(ndarray, f"__{_name}__", _binary(_name)[0])
for _name in ("neg", "pos", "abs", "invert"):
    setattr(ndarray, f"__{_name}__",
            (lambda op: lambda self: _wrap(op(self._a)))(getattr(operator, _name)))
ndarray.__hash__ = None


# -- the module --------------------------------------------------------------

class ElementwiseKernel:
    """CuPy's ElementwiseKernel for bodies of ``name = expression;`` lines, run with NumPy."""

    _STATEMENT = __import__("re").compile(r"^\s*([A-Za-z_]\w*)\s*=\s*([^=;][^;]*);\s*$")
    _ALLOWED = __import__("re").compile(r"^[\w\s.+\-*/()]*$")

    def __init__(self, in_params, out_params, operation, name="kernel", **kwargs):
        def parse(params):
            pairs = [p.split() for p in params.split(",")]
            if any(len(p) != 2 or p[0] != "T" for p in pairs):
                raise NotImplementedError(f"the stand-in takes only 'T name' parameters: "
                                          f"{params!r}")
            return [p[1] for p in pairs]

        self.in_names, self.out_names, self.name = parse(in_params), parse(out_params), name
        self.lines = []
        for line in operation.strip().splitlines():
            m = self._STATEMENT.match(line)
            if m is None or not self._ALLOWED.match(m.group(2)):
                raise NotImplementedError(f"the stand-in cannot run the line {line!r}")
            self.lines.append((m.group(1), m.group(2).replace("sqrt(", "_sqrt(")))

    def __call__(self, *args):
        names = self.in_names + self.out_names
        if len(args) != len(names):
            raise TypeError(f"{self.name} takes {len(names)} arguments, got {len(args)}")
        arrays = [a for a in args if isinstance(a, ndarray)]
        if not arrays or any(not isinstance(a, ndarray) for a in args[len(self.in_names):]):
            raise TypeError(f"{self.name}: outputs must be device arrays")
        T = arrays[0]._a.dtype
        scope = {n: (a._a if isinstance(a, ndarray) else T.type(_unwrap(a, self.name)))
                 for n, a in zip(names, args)}
        scope["_sqrt"] = np.sqrt
        for target, expression in self.lines:
            value = eval(expression, {"__builtins__": {}}, scope)   # the body's arithmetic
            if target in self.out_names:
                scope[target][...] = value                          # written in place
            else:
                scope[target] = value
        outs = tuple(args[len(self.in_names):])
        return outs[0] if len(outs) == 1 else outs


class Generator:
    """CuPy's Generator: only the methods CuPy has, drawing on the host from NumPy's."""

    def __init__(self, seed):
        self._rng = np.random.default_rng(seed)

    def random(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.random(size, dtype=dtype)))

    def standard_normal(self, size=None, dtype=np.float64):
        return ndarray(np.asarray(self._rng.standard_normal(size, dtype=dtype)))

    def integers(self, low, high=None, size=None, dtype=np.int64):
        return ndarray(np.asarray(self._rng.integers(low, high, size, dtype=dtype)))


Generator.__module__ = "cupy.random._generator_api"

_LINALG = {"mode": "ignore"}


def _cholesky(a):
    a = _unwrap(a, "cupy.linalg.cholesky")
    try:
        return ndarray(np.linalg.cholesky(a))
    except np.linalg.LinAlgError:
        if _LINALG["mode"] == "raise":
            raise
        return ndarray(np.full(a.shape, np.nan, dtype=a.dtype))   # what cuSOLVER leaves


def _wrapped(func):
    def call(*args, **kwargs):
        return _wrap(func(*_unwrap(args, f"cupy.{func.__name__}"),
                          **_unwrap(kwargs, f"cupy.{func.__name__}")))
    call.__name__ = func.__name__
    return call


def _asarray(a, dtype=None):
    if isinstance(a, ndarray):
        return a if dtype is None or a.dtype == dtype else ndarray(a._a.astype(dtype))
    TRANSFERS["count"] += 1
    return ndarray(np.array(a, dtype=dtype))


def _asnumpy(a):
    return a.get() if isinstance(a, ndarray) else np.asarray(a)


class _Device:
    def __init__(self, index=0):
        self.id = index

    mem_info = (64 * 2 ** 30, 80 * 2 ** 30)    # (free, total) bytes

    def synchronize(self):
        pass


class _Pool:
    def total_bytes(self):
        return 0

    def used_bytes(self):
        return 0


_POOL = _Pool()


def _module() -> types.ModuleType:
    cupy = types.ModuleType("cupy")
    cupy.__doc__ = "A strict NumPy-backed stand-in for CuPy (tests/fake_cupy.py)."
    cupy.ndarray = ndarray
    cupy.asarray = _asarray
    cupy.array = _asarray
    cupy.asnumpy = _asnumpy
    cupy.fuse = lambda *a, **k: (a[0] if a and callable(a[0]) else (lambda f: f))
    cupy.ElementwiseKernel = ElementwiseKernel
    cupy.get_default_memory_pool = lambda: _POOL
    cupy.result_type = _wrapped(np.result_type)
    for name in ("float16", "float32", "float64", "int8", "int32", "int64", "uint8", "bool_",
                 "dtype", "newaxis", "inf", "nan", "pi", "e", "finfo"):
        setattr(cupy, name, getattr(np, name))
    random = types.ModuleType("cupy.random")
    random.default_rng = Generator
    random.Generator = Generator
    cupy.random = random
    linalg = types.ModuleType("cupy.linalg")
    linalg.cholesky = _cholesky
    linalg.LinAlgError = np.linalg.LinAlgError
    for name in ("norm", "solve", "eigvalsh", "inv", "slogdet"):
        setattr(linalg, name, _wrapped(getattr(np.linalg, name)))
    cupy.linalg = linalg
    cuda = types.ModuleType("cupy.cuda")
    cuda.Device = _Device
    cuda.runtime = types.SimpleNamespace(getDeviceCount=lambda: 1)
    cuda.get_current_stream = lambda: types.SimpleNamespace(synchronize=lambda: None)
    cupy.cuda = cuda

    def __getattr__(name):          # every other function: NumPy's, strict about its inputs
        func = getattr(np, name, None)
        if func is None or not callable(func) or name.startswith("_"):
            raise AttributeError(f"the CuPy stand-in has no {name!r}")
        return _wrapped(func)

    cupy.__getattr__ = __getattr__
    return cupy


def _cupyx() -> types.ModuleType:
    cupyx = types.ModuleType("cupyx")

    @contextlib.contextmanager
    def errstate(linalg=None):
        before = _LINALG["mode"]
        if linalg is not None:
            _LINALG["mode"] = linalg
        try:
            yield
        finally:
            _LINALG["mode"] = before

    cupyx.errstate = errstate
    return cupyx


CUPY = _module()
CUPYX = _cupyx()


def install(monkeypatch) -> types.ModuleType:
    """Make ``import cupy`` / ``import cupyx`` give the stand-in for this test; return it."""
    import minivae.backend as backend

    monkeypatch.setitem(sys.modules, "cupy", CUPY)
    monkeypatch.setitem(sys.modules, "cupyx", CUPYX)
    monkeypatch.setattr(backend, "_PROBED", {})
    return CUPY
