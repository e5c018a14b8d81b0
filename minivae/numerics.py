r"""The constants and log-densities several modules share, each written once.

``LOG_2PI`` is log 2π.  With ``logvar`` = log σ² (the convention everywhere in
minivae), per example over the last axis of length L::

    log N(z; 0, I)          = −½ Σ_j [ z_j² + log 2π ]
    log N(z; μ, diag σ²)    = −½ Σ_j [ log 2π + log σ_j² + (z_j − μ_j)² / σ_j² ]

and the average of N numbers given by their logs, computed without overflow by
taking out the largest one, m = max_i a_i::

    log (1/N) Σ_i e^{a_i}   = m + log Σ_i e^{a_i − m} − log N

``FIXED_SEED`` seeds every draw that must be the same in every run: the one
binarization of the test digits, and the one corruption x̃ of them that the
denoising autoencoders are scored on.
"""

from __future__ import annotations

import math

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


def log_mean_exp(a, axis: int = -1):
    """log of the mean of e^a along ``axis``: m + log Σ e^{a − m} − log N, m the maximum."""
    xp = array_module(a)
    m = a.max(axis=axis, keepdims=True)
    n = a.shape[axis]
    return (m + xp.log(xp.exp(a - m).sum(axis=axis, keepdims=True))).squeeze(axis) - math.log(n)
