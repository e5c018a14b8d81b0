"""What a run is given to work with: memory, threads, the optimizer.

Decided once, before the first step: whether the model fits in the device's
memory (:func:`check_fits_in_memory`), how many row blocks each batch is split
into (:func:`resolve_threads`, :func:`splitter_for`), and the optimizer over
the model's parameters (:func:`optimizer_for`).
"""

from __future__ import annotations

import os
import sys

import numpy as np

from ..backend import cupy_unavailable_reason, get_backend
from ..optim import make_optimizer


def _counts(shapes):
    """(parameters, Σ widths of the activations) of Dense layers of the given (n_in, n_out)."""
    return (sum(n_in * n_out + n_out for n_in, n_out in shapes),
            shapes[0][0] + sum(n_out for _, n_out in shapes))


#: The activations a training step keeps per row and per unit of width, in
#: arrays of the run's dtype: a layer's input, its pre-activation, and the
#: gradients flowing back through both (an estimate, for the memory check).
ACTIVATION_COPIES = 4


def _memory_of_device(backend):
    """Bytes of memory the backend's arrays live in (the GPU's, or the machine's RAM), or None."""
    if backend.name == "cupy":
        return int(backend.xp.cuda.Device().mem_info[1])
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def check_fits_in_memory(config, backend, what: str, shapes, n_rows: int,
                         threads: int = 1) -> None:
    """Raise ValueError when a run would need more memory than the device has, before allocating.

    ``shapes`` are the (n_in, n_out) of the model's Dense layers, as the model
    class reports them (``VAE.dense_shapes``) without building anything.

    The estimate, in bytes of ``config.dtype``::

        n_params · (2 + s + (T − 1))           θ and ∇θ; s = 2 Adam moments (1 for SGD);
                                               each extra split-step block's ∇θ
      + B · width · ACTIVATION_COPIES          the activations of a batch of B rows
                                               (width: the data's D plus every layer's outputs)
      + N · D                                  the training data, on the device

    It is an estimate on the low side (it leaves out temporaries and the
    evaluation batches), compared with all of the device's memory, so only a
    run that cannot fit is refused.  It exists so that a mistyped
    ``--hidden 4000000`` is an error message, not a machine swapping itself to
    a halt or a visit from the OOM killer.
    """
    limit = _memory_of_device(backend)
    if limit is None:
        return
    itemsize = np.dtype(config.dtype).itemsize
    state = 2 + (2 if config.optimizer == "adam" else 1) + (threads - 1)
    batch = min(config.batch_size, n_rows)
    n_params, width = _counts(shapes)
    need = itemsize * (n_params * state + batch * width * ACTIVATION_COPIES
                       + n_rows * shapes[0][0])
    if need > limit:
        raise ValueError(
            f"the {what} has {n_params:,} parameters and needs at least {need / 2**30:,.1f} GiB "
            f"to train in {config.dtype} (parameters, gradients and optimizer state, a batch of "
            f"{batch}, the data), more than the {limit / 2**30:,.1f} GiB of memory on this "
            f"{'GPU' if backend.name == 'cupy' else 'machine'}; choose smaller widths or batch size")

def check_vae_fits(config, backend, input_dim: int, n_rows: int) -> None:
    """:func:`check_fits_in_memory` for the VAE ``config`` describes on data of ``input_dim``."""
    from ..models.vae import VAE

    check_fits_in_memory(
        config, backend, f"{input_dim}-{'-'.join(map(str, config.hidden))}-{config.latent_dim} VAE",
        VAE.dense_shapes(input_dim, config.hidden, config.latent_dim, config.posterior), n_rows,
        threads=config.threads or 1)


def check_autoencoder_fits(config, backend, input_dim: int, n_rows: int) -> None:
    """:func:`check_fits_in_memory` for the autoencoder ``config`` describes."""
    from ..models.autoencoder import Autoencoder

    widths = [*config.hidden, config.bottleneck]
    check_fits_in_memory(config, backend, f"{input_dim}-{'-'.join(map(str, widths))} autoencoder",
                         Autoencoder.dense_shapes(input_dim, config.hidden, config.bottleneck),
                         n_rows)


def backend_for(config):
    """The run's backend; ``"auto"`` that falls back to NumPy says why, in one line on stderr."""
    backend = get_backend(config.backend, dtype=config.dtype, seed=config.seed)
    if config.backend == "auto" and backend.name == "numpy":
        print(f"note: backend 'auto' runs on NumPy: {cupy_unavailable_reason()}",
              file=sys.stderr, flush=True)
    return backend


def optimizer_for(config, model, split: bool = False):
    """The optimizer ``config`` names, over ``model.params`` and ``model.grads``.

    Adam's NumPy twin runs on 2 threads (its default) only beside the split
    step (``split``), which holds BLAS at one thread.  After a serial step's
    backward, BLAS's own threads keep spinning on the other cores for a while
    (:meth:`~minivae.training.parallel.SplitBatchStep.one_blas_thread`), and a
    second Adam thread would fight them for a core, so there Adam runs on one:
    with two, 30 epochs of the autoencoder's default run took 1.08× as long
    (``benchmarks/blas_spin.py``).  Each parameter's arithmetic is the same
    either way.
    """
    opt_kwargs = {"momentum": config.momentum} if config.optimizer == "sgd" else {}
    if config.optimizer == "adam" and not split:
        opt_kwargs["threads"] = 1
    return make_optimizer(config.optimizer, model.params, model.grads, config.lr, **opt_kwargs)


#: From this many rows on, a split step is the faster one on 2 cores.  Measured
#: here (784-400-20, float32, samples/s of the split step over the serial one,
#: alternating in one process), with OpenBLAS's SkylakeX / Haswell kernels:
#: batch 64 0.97 / 1.02, 128 1.05 / 1.03, 256 1.04 / 1.06, 512 1.09 / 1.07,
#: 1024 1.47 / 1.24, 2048 1.34 / 1.17.  Pass threads=1 to opt out.
SPLIT_BATCH_MIN = 128


def resolve_threads(config, model) -> int:
    """The number of row blocks T the training step splits each batch into.

    ``config.threads`` when given; for None the automatic choice: 2 on NumPy
    for batches of ≥ SPLIT_BATCH_MIN rows on a machine with 2 cores or more
    (a likelihood without parameters, the ELBO objective), else 1.  Only NumPy splits: on CuPy
    one kernel already uses the whole device, so any T there is 1 (with a
    note when more was asked for).

    T changes the numbers in the last bits, not their meaning: the split step
    adds T blocks' gradient sums where the serial step takes one sum over the
    batch, and float addition is not associative.  Same seed and same T give
    bit-identical runs.  Another T gives a run that starts out the same and
    drifts apart as training amplifies those rounding differences (measured on
    the default run, T = 1 against 2 over 10 epochs: train −ELBO curves within
    1e-4 relative, final test −ELBO 0.04 nats apart).  That is why a resumed
    run keeps the stored T.
    """
    if model.backend.name != "numpy":
        if config.threads not in (None, 1):
            print(f"note: threads={config.threads} is ignored on {model.backend.name}: the "
                  f"split-batch step is for NumPy on CPU cores", file=sys.stderr, flush=True)
        return 1
    if config.threads is not None:
        return config.threads
    auto = (config.batch_size >= SPLIT_BATCH_MIN and (os.cpu_count() or 1) >= 2
            and not model.likelihood.params and config.objective == "elbo")
    return 2 if auto else 1


def splitter_for(config, model):
    """A :class:`~minivae.training.parallel.SplitBatchStep` for ``config.threads`` > 1.

    ``config.threads`` is the count :func:`resolve_threads` worked out (once, in
    ``train_vae``); None here is the serial step.
    """
    if config.threads in (None, 1):
        return None
    from .parallel import SplitBatchStep
    return SplitBatchStep(model, config.threads)
