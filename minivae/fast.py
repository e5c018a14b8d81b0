r"""The fast twins: faster forms of the core's formulas, all in one place.

The classes a student reads compute each formula as it is written in the
lecture (``w (x − σ(ℓ))``, Adam's five lines).  A few of those formulas sit on
the hot path of a training step, where writing them as written costs time:
NumPy makes a new array at every operator, and on a GPU every operator is a
kernel launch that reads and writes the whole array.  For each of them this
module holds a *twin*: the same formula, computed faster, named after it.

=====================  ===================================  ==================================
formula (written in)   twin on NumPy                        twin on CuPy
=====================  ===================================  ==================================
``bernoulli_log_prob`` (the formula is already fast)        one fused kernel for the terms
(likelihoods)
``bernoulli_grad``     in place in one array, through       one fused kernel
(likelihoods)          σ(ℓ) = ½ + ½ tanh(ℓ/2)
``reparameterize``     (the formula)                        one fused kernel for σ and z
(models.posterior)
``adam_step``          in place through one scratch         one in-place kernel over the flat
(optim)                buffer, bias corrections folded,     arrays (p, m and v written where
                       over the flat arrays behind θ, g,    they are)
                       m, v, cut in halves for 2 threads
=====================  ===================================  ==================================

The flat arrays: a model keeps all of its parameters in one flat array and
all of its gradients in another (:meth:`minivae.layers.Module.pack_parameters`),
and Adam its moments likewise; the per-layer arrays a student reads are views
of them.  So the Adam twin updates every parameter in twelve NumPy calls (one
launch on a GPU) instead of twelve per parameter (:func:`flat_like`,
:func:`tiled`).

How a twin is chosen, in one place: the formula carries the decorator
``@twin("name")``; when it is called, :func:`pick` looks at the array module of
its first argument ("numpy" or "cupy") and runs the twin registered for that
side, or the formula itself where there is none.  Inside :func:`formulas_only`
every formula runs as written: the tests hold each twin equal to its formula
(``tests/math/test_fast.py``) and train a model both ways
(``tests/training/test_fast_paths.py``).  A decorated function keeps the formula as
its ``.formula`` attribute.

The CuPy twins are one kernel each: every element is read once, the
intermediate values stay in registers, and the launch is paid once.  Three are
``cupy.fuse`` kernels, written as plain Python over the arrays they are given,
so they also run on NumPy arrays (and on the test suite's NumPy-backed CuPy
stand-in).  Adam is a ``cupy.ElementwiseKernel`` (:data:`ADAM_IN_PLACE`): a
fused kernel can only return new arrays, which would cost six more passes over
every parameter per step to copy back.  Every kernel is compiled for the GPUs
in the test suite, without a GPU (``tests/backend/test_real_cupy.py``), and
checked to compute nothing in a type narrower than its arrays.  Not run on a
GPU yet: no GPU was available to this work.
"""

from __future__ import annotations

import contextlib
import functools
import os
from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from .backend import array_module

_formulas_only = False


@contextlib.contextmanager
def formulas_only():
    """Inside the ``with`` block every twinned formula runs as written (in every thread)."""
    global _formulas_only
    before, _formulas_only = _formulas_only, True
    try:
        yield
    finally:
        _formulas_only = before


def _side(first) -> str:
    """"cupy" or "numpy": the array module of ``first`` (an array, or an object with ``xp``)."""
    xp = getattr(first, "xp", None) or array_module(first)
    return "cupy" if xp.__name__ == "cupy" else "numpy"


def pick(name: str, first, formula):
    """The implementation of formula ``name`` for arguments whose first is ``first``."""
    if not _formulas_only:
        return _TWINS[name].get(_side(first), formula)
    return formula


def twin(name: str):
    """Decorate a formula: calls go to its fast twin ``name`` of this module where one exists."""
    if name not in _TWINS:
        raise ValueError(f"unknown fast twin {name!r}; expected one of {sorted(_TWINS)}")

    def attach(formula):
        @functools.wraps(formula)
        def dispatch(*args, **kwargs):
            return pick(name, args[0], formula)(*args, **kwargs)
        dispatch.formula = formula
        dispatch.twin_name = name
        return dispatch
    return attach


# --------------------------------------------------------------------------
# One flat array behind many
# --------------------------------------------------------------------------

def _address(a) -> int:
    """Where ``a``'s first element lives: a host address (NumPy) or a device one (CuPy)."""
    ptr = getattr(a.data, "ptr", None)                  # CuPy: a MemoryPointer
    return ptr if ptr is not None else a.__array_interface__["data"][0]


def flat_like(arrays: dict, copy: bool = True) -> dict:
    """Arrays shaped like ``arrays``, each a view of one new 1-D array, end to end in order.

    With ``copy`` they hold the same values, else zeros.  The model's
    parameters and gradients (:meth:`minivae.layers.Module.pack_parameters`)
    and Adam's moments are made this way, so that :func:`tiled` finds the one
    array behind them and an update of every parameter is a few passes over
    one array instead of a few per parameter.  Arrays of different dtypes
    cannot share one array: then each gets its own.
    """
    if not isinstance(arrays, dict):
        raise TypeError(f"flat_like takes a dict of arrays, got {type(arrays).__name__}")
    if not all(hasattr(a, "dtype") and hasattr(a, "shape") for a in arrays.values()):
        raise TypeError("flat_like takes a dict of arrays; some values are not arrays")
    if not arrays:
        return {}
    first = next(iter(arrays.values()))
    xp = array_module(first)
    if len({a.dtype for a in arrays.values()}) != 1:
        return {k: a.copy() if copy else xp.zeros_like(a) for k, a in arrays.items()}
    flat = xp.zeros(sum(int(a.size) for a in arrays.values()), dtype=first.dtype)
    views, start = {}, 0
    for k, a in arrays.items():
        views[k] = flat[start:start + a.size].reshape(a.shape)
        if copy:
            views[k][...] = a
        start += a.size
    return views


def tiled(arrays):
    """The 1-D array that ``arrays`` cover end to end in this order, or None where they do not."""
    arrays = list(arrays)
    if not all(hasattr(a, "base") and hasattr(a, "flags") for a in arrays):
        raise TypeError("tiled takes NumPy or CuPy arrays; some items are not arrays")
    flat = arrays[0].base if arrays else None
    if flat is None or flat.ndim != 1:
        return None
    start = position = _address(flat)
    for a in arrays:                       # each a view of that same array, where the last ended
        base = a.base
        if (base is None or _address(base) != start or base.size != flat.size
                or not a.flags.c_contiguous or _address(a) != position):
            return None
        position += a.nbytes
    return flat if position == start + flat.nbytes else None


# --------------------------------------------------------------------------
# The Bernoulli log-likelihood on logits ℓ, and its gradient
# --------------------------------------------------------------------------

def bernoulli_terms(x, logits, xp):
    """x ℓ − softplus(ℓ) per element, softplus(ℓ) = max(ℓ, 0) + log1p(e^{−|ℓ|})."""
    return x * logits - xp.maximum(logits, 0) - xp.log1p(xp.exp(-xp.abs(logits)))


def bernoulli_log_prob_fused(x, logits):
    """``bernoulli_log_prob`` on CuPy: the terms in one kernel, then the sum over pixels."""
    return _compiled("bernoulli_terms")(x, logits).sum(axis=1)


def bernoulli_grad_tanh(x, logits, w, xp):
    """w (x − σ(ℓ)) per element, through σ(ℓ) = ½ + ½ tanh(ℓ/2); ``w`` broadcasts (B, 1)."""
    return w * (x - 0.5 - 0.5 * xp.tanh(0.5 * logits))


def bernoulli_grad_in_place(x, logits, dlogp):
    r"""``bernoulli_grad`` on NumPy: dlogp_b (x − σ(ℓ)) in one new array, one transcendental.

    Multiplying 1/(1 + e^{−ℓ}) above and below by e^{ℓ/2}, with a = e^{ℓ/2}
    and b = e^{−ℓ/2}::

        σ(ℓ) = a / (a + b) = ½ (a + b + a − b) / (a + b) = ½ + ½ tanh(ℓ/2)
        x − σ(ℓ) = (x − ½) − ½ tanh(ℓ/2)

    Finite for any ℓ, no branch, and exact to a few units in the last place
    *of 1*, the scale of x − σ(ℓ) itself (|x − σ| ≤ 1); only σ(ℓ) alone, where
    it falls below half an ulp of 1 (ℓ < −37 in float64, −17 in float32), is
    not carried to full relative accuracy.
    """
    g = np.multiply(logits, 0.5)
    np.tanh(g, out=g)
    g *= -0.5
    g += x
    g -= 0.5                               # g = x − σ(ℓ)
    g *= dlogp[:, None]
    return g


def bernoulli_grad_fused(x, logits, dlogp):
    """``bernoulli_grad`` on CuPy: :func:`bernoulli_grad_tanh` as one kernel."""
    return _compiled("bernoulli_grad")(x, logits, dlogp[:, None])


# --------------------------------------------------------------------------
# The reparameterization z = μ + σ ε
# --------------------------------------------------------------------------

def reparameterize_terms(mu, logvar, eps, xp):
    """(σ, z) with σ = exp(½ logvar) and z = μ + σ ε."""
    std = xp.exp(0.5 * logvar)
    return std, mu + std * eps


def reparameterize_fused(mu, logvar, eps):
    """``reparameterize`` on CuPy: σ and z in one kernel."""
    return _compiled("reparameterize")(mu, logvar, eps)


# --------------------------------------------------------------------------
# Adam
# --------------------------------------------------------------------------

def _adam_scalars(opt):
    """The folded bias corrections: η √c₂ / c₁ and ε √c₂, c₁ = 1 − β₁ᵗ, c₂ = 1 − β₂ᵗ."""
    sqrt_c2 = (1 - opt.beta2 ** opt.t) ** 0.5                  # √c₂
    return opt.lr * sqrt_c2 / (1 - opt.beta1 ** opt.t), opt.eps * sqrt_c2


def _balanced_groups(params: dict, n: int) -> list:
    """Split the keys into at most ``n`` non-empty groups of about equal total size."""
    groups = [[] for _ in range(n)]
    sizes = [0] * n
    for k in sorted(params, key=lambda k: -params[k].size):   # largest first, to the lightest
        i = sizes.index(min(sizes))
        groups[i].append(k)
        sizes[i] += params[k].size
    return [g for g in groups if g] or [[]]


def _adam_flat(opt):
    """(θ, g, m, v) as the 1-D arrays behind each dict (see :func:`tiled`), or None."""
    flats = [tiled(d.values()) for d in (opt.params, opt.grads, opt.m, opt.v)]
    return None if any(f is None for f in flats) else flats


def _adam_ids(opt) -> list:
    """Which arrays ``opt`` updates: a workspace made for others is made again."""
    return [id(a) for d in (opt.params, opt.grads, opt.m, opt.v) for a in d.values()]


class _AdamWorkspace:
    """What the in-place Adam keeps between steps: its scratch memory and each thread's share.

    Each share is a list of (θ, g, m, v, scratch) arrays to update.  Where the
    parameters, gradients and moments each lie in one flat array (the models
    and :class:`~minivae.optim.Adam` lay them out so), the shares are equal
    contiguous pieces of the flat arrays: a few large passes per thread.
    Otherwise each parameter is its own item, the items dealt out by size.
    """

    def __init__(self, opt):
        threads = opt.threads
        if threads is None:
            threads = 2 if (os.cpu_count() or 1) >= 2 else 1
        self.ids = _adam_ids(opt)
        flat = _adam_flat(opt)
        if flat is not None:
            scratch = np.empty_like(flat[0])
            n = flat[0].size
            cuts = [n * i // threads for i in range(threads + 1)]
            self.shares = [[tuple(a[i:j] for a in (*flat, scratch))]
                           for i, j in zip(cuts[:-1], cuts[1:]) if j > i] or [[]]
        else:
            self.shares = [[(opt.params[k], opt.grads[k], opt.m[k], opt.v[k],
                             np.empty_like(opt.params[k])) for k in keys]
                           for keys in _balanced_groups(opt.params, threads)]
        self.pool = ThreadPoolExecutor(len(self.shares) - 1) if len(self.shares) > 1 else None


def adam_step_in_place(opt) -> None:
    r"""``adam_step`` on NumPy: the same update, in place, on two threads.

    The bias corrections are folded into two scalars (multiply the fraction
    above and below by √c₂, using √(v/c₂) = √v / √c₂)::

        θ ← θ − (η √c₂ / c₁) · m / (√v + ε √c₂),   c₁ = 1 − β₁ᵗ,  c₂ = 1 − β₂ᵗ,

    and every intermediate goes through one scratch buffer with ``out=``, so a
    step allocates nothing and makes twelve passes over memory instead of
    twice that.  The parameters, gradients and moments each lie in one flat
    array (:meth:`minivae.layers.Module.pack_parameters`), so those are twelve
    calls in all, not twelve per parameter.  NumPy's elementwise work runs on
    one core; with 2 threads (the default where the machine has 2 cores or
    more) the flat arrays are cut in two halves, updated by the calling thread
    and one pool thread at once (NumPy releases the GIL inside these loops).
    Each element's arithmetic does not depend on the cut.
    """
    opt.t += 1
    ws = opt.__dict__.get("_workspace")
    if ws is None or ws.ids != _adam_ids(opt):           # made once; again if re-laid out
        ws = opt._workspace = _AdamWorkspace(opt)
    step_size, eps = _adam_scalars(opt)
    others = [ws.pool.submit(_adam_update, share, opt.beta1, opt.beta2, step_size, eps)
              for share in ws.shares[1:]]
    try:                                                   # the calling thread's share
        _adam_update(ws.shares[0], opt.beta1, opt.beta2, step_size, eps)
    finally:
        wait(others)
    for done in others:
        done.result()                                      # re-raise a failure


def _adam_update(share, b1: float, b2: float, step_size: float, eps: float) -> None:
    for p, g, m, v, tmp in share:
        m *= b1
        np.multiply(g, 1 - b1, out=tmp)
        m += tmp                                   # m ← β₁ m + (1 − β₁) g
        v *= b2
        np.multiply(g, g, out=tmp)
        tmp *= 1 - b2
        v += tmp                                   # v ← β₂ v + (1 − β₂) g²
        np.sqrt(v, out=tmp)
        tmp += eps                                 # √v + ε√c₂ = √c₂ (√v̂ + ε)
        np.divide(m, tmp, out=tmp)
        tmp *= step_size
        p -= tmp                                   # θ ← θ − η m̂ / (√v̂ + ε)


#: Adam's update as a CUDA elementwise kernel: (inputs, inputs and outputs, the body).
#: p, m and v are updated where they are.  Every scalar is typed T, the parameters'
#: float32 or float64, and 1 − β₁, 1 − β₂ are computed on the host in float64: inside
#: cupy.fuse an operation between two Python floats is typed float16, which made
#: 1 − β₂ = 0.0009765625 instead of 0.001.
ADAM_IN_PLACE = (
    "T g, T b1, T one_minus_b1, T b2, T one_minus_b2, T step_size, T eps",
    "T p, T m, T v",
    "m = b1 * m + one_minus_b1 * g;\n"
    "v = b2 * v + one_minus_b2 * g * g;\n"
    "p = p - step_size * m / (sqrt(v) + eps);",
)


def adam_step_gpu(opt) -> None:
    """``adam_step`` on CuPy: :data:`ADAM_IN_PLACE` once over the flat arrays, nothing allocated.

    The same folded update as :func:`adam_step_in_place`, in one launch over
    the flat arrays behind the parameters, gradients and moments (one launch
    per parameter where they are not laid out flat).
    """
    opt.t += 1
    step_size, eps = _adam_scalars(opt)
    kernel = _compiled("adam")
    b1, b2 = opt.beta1, opt.beta2
    now = _adam_ids(opt)
    ids, items = opt.__dict__.get("_launches", (None, None))
    if ids != now:                             # found once: one launch over the flat arrays
        flat = _adam_flat(opt)
        items = ([flat] if flat is not None else
                 [(p, opt.grads[k], opt.m[k], opt.v[k]) for k, p in opt.params.items()])
        opt._launches = (now, items)
    for p, g, m, v in items:
        kernel(g, b1, 1 - b1, b2, 1 - b2, step_size, eps, p, m, v)


# --------------------------------------------------------------------------
# The registry and the compiled kernels
# --------------------------------------------------------------------------

#: formula name → {side: twin}.  A side that is not listed runs the formula itself.
_TWINS = {
    "bernoulli_log_prob": {"cupy": bernoulli_log_prob_fused},
    "bernoulli_grad": {"numpy": bernoulli_grad_in_place, "cupy": bernoulli_grad_fused},
    "reparameterize": {"cupy": reparameterize_fused},
    "adam_step": {"numpy": adam_step_in_place, "cupy": adam_step_gpu},
}

#: The fused kernels (their plain Python bodies are the functions above).
KERNELS = ("bernoulli_terms", "bernoulli_grad", "reparameterize")

#: Every GPU kernel minivae launches: the fused ones and Adam's elementwise kernel.
GPU_KERNELS = KERNELS + ("adam",)


@functools.lru_cache(maxsize=None)
def _compiled(name: str):
    """The CuPy kernel of ``name`` (:data:`GPU_KERNELS`), made once (CuPy caches the binary too)."""
    import cupy

    if name == "adam":
        return cupy.ElementwiseKernel(*ADAM_IN_PLACE, name="minivae_adam")
    # fixed arities: cupy.fuse traces a function of the kernel's own parameters
    kernels = {
        "bernoulli_terms": lambda x, logits: bernoulli_terms(x, logits, cupy),
        "bernoulli_grad": lambda x, logits, w: bernoulli_grad_tanh(x, logits, w, cupy),
        "reparameterize": lambda mu, logvar, eps: reparameterize_terms(mu, logvar, eps, cupy),
    }
    return cupy.fuse(kernel_name=f"minivae_{name}")(kernels[name])
