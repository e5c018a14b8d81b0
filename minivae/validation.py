"""Argument checks shared by every module: one message format for one kind of mistake.

Each check returns the value (converted to a plain Python type) or raises
ValueError naming the argument, what was expected and what was received.
"""

from __future__ import annotations

import math

import numpy as np


def positive_int(name: str, value, minimum: int = 1) -> int:
    """``value`` as an int ≥ ``minimum``; bools, floats and strings are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) \
            or value < minimum:
        expected = {1: "a positive integer", 0: "a non-negative integer"}.get(
            minimum, f"an integer ≥ {minimum}")
        raise ValueError(f"{name} must be {expected}, got {value!r}")
    return int(value)


def positive_number(name: str, value) -> float:
    """``value`` as a finite float > 0; bools and non-numbers are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value <= 0:
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def first_nonfinite(arrays: dict):
    """``(key, count)`` of the first entry of ``arrays`` holding NaN or ±Inf, else None.

    The values may be NumPy or CuPy arrays or plain numbers (such as Adam's
    step count); ``count`` is how many of the entry's elements are not finite.
    Used before every save and after every epoch, so a blow-up is caught
    before it is written anywhere.
    """
    from .backend import array_module

    for key, value in arrays.items():
        if isinstance(value, (bool, np.bool_, int, np.integer)):
            continue
        if isinstance(value, (float, np.floating)):
            if not math.isfinite(value):
                return key, 1
            continue
        xp = array_module(value)
        if value.dtype.kind in "fc":
            bad = int(value.size - xp.isfinite(value).sum())
            if bad:
                return key, bad
    return None


def real_array(name, a, xp):
    """``a`` as an array of real floating-point numbers (integers and bools become float64)."""
    a = xp.asarray(a)
    if a.dtype.kind not in "biuf":
        raise ValueError(f"{name} must hold real numbers, got dtype {a.dtype}")
    if a.dtype.kind == "f" and a.dtype.itemsize < 4:
        raise ValueError(f"{name} is {a.dtype}: minivae computes in float32 or float64 "
                         f"(cast it with .astype('float32'))")
    return a if a.dtype.kind == "f" else a.astype(np.float64)


def checked_real_arrays(names, arrays, xp, check: bool = True):
    """The arrays as real floating-point arrays; with ``check``, ValueError for NaN or Inf."""
    arrays = [real_array(n, a, xp) for n, a in zip(names, arrays)]
    if check:
        for n, a in zip(names, arrays):
            if not bool(xp.isfinite(a).all()):
                raise ValueError(f"{n} must be finite; it contains NaN or Inf")
    return arrays
