r"""The corruption process χ(x̃|x) of the denoising autoencoder.

A denoising autoencoder is trained to map a corrupted digit x̃ back to the
clean digit x.  The corruption is a random process χ(x̃|x); three are here,
each acting on every pixel independently, on images with pixels in [0, 1]:

========================  ==================================================  =========
name                      x̃ given x, per pixel d                              level
========================  ==================================================  =========
``"gaussian"``            x̃_d = clip(x_d + σ n_d, 0, 1),  n_d ~ N(0, 1)        σ ≥ 0
                          (without the clip when ``clip=False``)
``"masking"``             x̃_d = 0 with probability ν, else x_d                 ν ∈ [0, 1]
``"salt-pepper"``         x̃_d = 0 with probability ν/2, 1 with probability     ν ∈ [0, 1]
                          ν/2, else x_d
========================  ==================================================  =========

Each corruption is a small object: ``corruption(x, rng)`` returns x̃ for a
batch ``x`` of shape (B, D), drawing its noise from ``rng``, which must live
where ``x`` lives (``backend.rng`` for a device array, a NumPy Generator for a
host array).  The denoising model calls it once per forward pass, so each
minibatch sees fresh noise: the network cannot memorize one corrupted copy of
the data set, and the training cost is an average over χ, as in the lecture.

>>> import numpy as np
>>> chi = make_corruption("masking", 0.5)
>>> x = np.ones((2, 4), dtype=np.float32)
>>> chi(x, np.random.default_rng(1)).tolist()
[[0.0, 1.0, 1.0, 1.0], [0.0, 0.0, 1.0, 1.0]]
"""

from __future__ import annotations

import math

import numpy as np

from .backend import array_module, check_same_side
from .numerics import FIXED_SEED

#: The default level of each corruption (the "moderate" levels of the benchmark).
DEFAULT_LEVELS = {"gaussian": 0.3, "masking": 0.3, "salt-pepper": 0.2}


def _check_level(value, what: str, at_most_one: bool):
    """Return ``value`` as a float, or raise ValueError naming the level and its range."""
    bound = "in [0, 1]" if at_most_one else "a finite number ≥ 0"
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) \
            or not math.isfinite(value) or value < 0 or (at_most_one and value > 1):
        raise ValueError(f"{what} must be {bound}, got {value!r}")
    return float(value)


class Corruption:
    """Base class: ``name``, ``level`` and ``__call__(x, rng) → x̃``."""

    name = "corruption"

    def __init__(self, level: float):
        self.level = level

    def __call__(self, x, rng):
        """x̃ ~ χ(x̃|x), drawn from ``rng`` where ``x`` lives (host or device)."""
        check_same_side(x, rng)
        return self.draw(x, rng)

    def draw(self, x, rng):  # pragma: no cover - interface
        raise NotImplementedError

    def config(self) -> dict:
        """The arguments of :func:`make_corruption` that rebuild this corruption."""
        return {"name": self.name, "level": self.level}

    def describe(self) -> str:  # pragma: no cover - interface
        """In words, for titles and logs: e.g. ``"masking noise, ν = 0.3"``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items() if k != "name")
        return f"{type(self).__name__}({args})"


class GaussianNoise(Corruption):
    r"""Additive Gaussian noise: x̃ = x + σ n, n ~ N(0, I), then clipped to [0, 1].

    Without the clip (``clip=False``) each pixel's noise x̃_d − x_d is exactly
    N(0, σ²): mean 0, variance σ².  With the clip (the default, since images
    live in [0, 1]) x̃_d = min(max(x_d + σ n_d, 0), 1): a pixel lands exactly on
    0 with probability Φ(−x_d/σ) and on 1 with probability Φ((x_d − 1)/σ), and
    its noise has a variance smaller than σ².  σ = 0 leaves x unchanged.
    """

    name = "gaussian"

    def __init__(self, sigma: float, clip: bool = True):
        super().__init__(_check_level(sigma, "Gaussian noise level sigma", at_most_one=False))
        self.clip = bool(clip)

    @property
    def sigma(self) -> float:
        return self.level

    def draw(self, x, rng):
        x_tilde = x + self.sigma * rng.standard_normal(x.shape, dtype=x.dtype)
        if self.clip:
            x_tilde = array_module(x).clip(x_tilde, 0, 1)
        return x_tilde

    def config(self) -> dict:
        return {**super().config(), "clip": self.clip}

    def describe(self) -> str:
        return f"Gaussian noise, σ = {self.sigma:g}" + (", clipped to [0, 1]" if self.clip else "")


class MaskingNoise(Corruption):
    r"""Masking noise: each pixel is set to 0 with probability ν, independently.

    x̃ = m ⊙ x with m_d ~ Bernoulli(1 − ν).  The number of masked pixels of an
    example is Binomial(D, ν): the fraction is ν *in expectation*, not exactly
    ν·D per example.  A pixel that is already 0 stays 0, so the fraction of
    pixels that actually *change* is ν times the fraction of non-zero pixels.
    """

    name = "masking"

    def __init__(self, nu: float):
        super().__init__(_check_level(nu, "masking noise level nu", at_most_one=True))

    @property
    def nu(self) -> float:
        return self.level

    def draw(self, x, rng):
        keep = rng.random(x.shape, dtype=x.dtype) >= self.nu     # probability 1 − ν
        return x * keep

    def describe(self) -> str:
        return f"masking noise, ν = {self.nu:g}"


class SaltAndPepper(Corruption):
    r"""Salt-and-pepper noise: a fraction ν of the pixels, in expectation, set to 0 or 1.

    Each pixel is chosen independently with probability ν; a chosen pixel is
    set to 0 (pepper) or 1 (salt) with probability ½ each.  With one uniform
    u_d ~ U[0, 1) per pixel::

        x̃_d = 0      if u_d < ν/2           (probability ν/2)
        x̃_d = 1      if ν/2 ≤ u_d < ν       (probability ν/2)
        x̃_d = x_d    otherwise              (probability 1 − ν)

    A black pixel that draws pepper, or a white one that draws salt, does not
    change.
    """

    name = "salt-pepper"

    def __init__(self, nu: float):
        super().__init__(_check_level(nu, "salt-and-pepper noise level nu", at_most_one=True))

    @property
    def nu(self) -> float:
        return self.level

    def draw(self, x, rng):
        u = rng.random(x.shape, dtype=x.dtype)
        keep = u >= self.nu                       # probability 1 − ν: left alone
        salt = (u >= 0.5 * self.nu) & ~keep       # probability ν/2: set to 1
        return x * keep + salt                    # the rest (u < ν/2) becomes 0

    def describe(self) -> str:
        return f"salt-and-pepper noise, ν = {self.nu:g}"


CORRUPTIONS = {cls.name: cls for cls in (GaussianNoise, MaskingNoise, SaltAndPepper)}


def make_corruption(name: str, level: float | None = None, **options) -> Corruption:
    """A corruption by name: ``"gaussian"`` (level σ), ``"masking"`` or ``"salt-pepper"`` (level ν).

    ``level=None`` takes :data:`DEFAULT_LEVELS`.  ``options`` go to the class
    (``clip=False`` for ``"gaussian"``).
    """
    if not isinstance(name, str) or name not in CORRUPTIONS:
        raise ValueError(f"unknown corruption {name!r}; expected one of {tuple(CORRUPTIONS)}")
    return CORRUPTIONS[name](DEFAULT_LEVELS[name] if level is None else level, **options)


def corrupt_fixed(corruption: Corruption, x: np.ndarray, seed: int = FIXED_SEED) -> np.ndarray:
    """One fixed corruption of host data, the same for the same seed.

    Used for the corrupted test digits, so that every model (and every run) is
    scored on the very same x̃.  ``x`` must be a floating-point NumPy array.
    """
    x = np.asarray(x)
    if x.dtype not in (np.float32, np.float64):
        raise ValueError(f"corrupt_fixed needs float32 or float64 pixels, got dtype {x.dtype}")
    return corruption(x, np.random.default_rng(seed))
