r"""The constants and log-densities several modules share, each written once.

``LOG_2PI`` is log 2π.  With ``logvar`` = log σ² (the convention everywhere in
minivae), per example over the last axis of length L::

    log N(z; 0, I)          = −½ Σ_j [ z_j² + log 2π ]
    log N(z; μ, diag σ²)    = −½ Σ_j [ log 2π + log σ_j² + (z_j − μ_j)² / σ_j² ]

and the sum and the average of N numbers given by their logs, computed without
overflow by taking out the largest one, m = max_i a_i (so every e^{a_i − m} ≤ 1
and one of them is 1), with the weights they give each term::

    log Σ_i e^{a_i}         = m + log Σ_i e^{a_i − m}                   (log_sum_exp)
    log (1/N) Σ_i e^{a_i}   = log Σ_i e^{a_i} − log N                   (log_mean_exp)
    e^{a_i} / Σ_l e^{a_l}   = e^{a_i − m} / Σ_l e^{a_l − m}              (softmax)

The standard normal quantile function Φ⁻¹ (the inverse of its CDF Φ) places
the 2-D manifold's grid at equal prior mass; the standard library's
``statistics.NormalDist`` computes it (Wichura's AS 241, to about 1e-16).

``FIXED_SEED`` seeds every draw that must be the same in every run: the one
binarization of the test digits, and the one corruption x̃ of them that the
denoising autoencoders are scored on.
"""

from __future__ import annotations

import math
import statistics

import numpy as np

from .backend import array_module

LOG_2PI = math.log(2.0 * math.pi)

#: The seed of the fixed draws of test data (binarization, corruption): the same for every run.
FIXED_SEED = 20261125


def log_normal_std(z):
    """log N(z; 0, I), summed over the last axis."""
    return -0.5 * (z * z + LOG_2PI).sum(axis=-1)


def log_normal_diag(z, mu, logvar):
    """log N(z; μ, diag σ²) with logvar = log σ², summed over the last axis (μ, logvar broadcast)."""
    return -0.5 * (LOG_2PI + logvar + (z - mu) ** 2 * array_module(z).exp(-logvar)).sum(axis=-1)


def log_sum_exp(a, axis=-1, keepdims: bool = False):
    """log Σ e^a along ``axis`` (None: over every element): m + log Σ e^{a − m}, m the maximum."""
    xp = array_module(a)
    m = a.max(axis=axis, keepdims=True)
    lse = m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))
    if keepdims:
        return lse
    return lse.reshape(()) if axis is None else lse.squeeze(axis)


def log_mean_exp(a, axis: int = -1):
    """log of the mean of e^a along ``axis``: log Σ e^a − log N."""
    return log_sum_exp(a, axis=axis) - math.log(a.shape[axis])


def softmax(a, axis: int = -1):
    """e^{a_i} / Σ_l e^{a_l} along ``axis``, through e^{a − m} (m the maximum): no overflow."""
    e = array_module(a).exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def normal_quantiles(p):
    """Φ⁻¹(p) elementwise for probabilities 0 < p < 1: the z with P(Z ≤ z) = p, Z ~ N(0, 1).

    Host NumPy in and out (float64), for the few grid points of a figure.
    """
    p = np.asarray(p, dtype=np.float64)
    if p.size and not ((p > 0) & (p < 1)).all():
        raise ValueError(f"normal_quantiles needs probabilities strictly between 0 and 1, got "
                         f"values in [{p.min():g}, {p.max():g}]")
    inv_cdf = statistics.NormalDist().inv_cdf
    return np.array([inv_cdf(float(q)) for q in p.ravel()]).reshape(p.shape)
