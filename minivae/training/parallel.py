"""One training step with the batch split into row blocks, each block on its own thread.

Why: NumPy runs every elementwise operation (the loss, the activations, the
reparameterization) on a single core, while BLAS spreads only the matrix
products over the cores.  Splitting the batch in two halves and running each
half's forward and backward on its own thread, with single-threaded BLAS,
keeps both cores busy for all of the step.  (NumPy and OpenBLAS release the
GIL inside their loops, so the threads really run at the same time.)

Why it computes the same thing: the batch loss is a mean over rows,

    L = (1/B) Σ_b ℓ_b = Σ_blocks (1/B) Σ_{b ∈ block} ℓ_b,

so its gradient is the sum of the blocks' gradients when each block divides by
the *whole* batch size B (each replica's ``batch_total`` is set to B).  Each block runs on
a replica of the model that computes with the model's own parameter arrays but
keeps its own gradients and caches; the first block runs on the model itself,
and the other replicas' gradients are added into the model's.  ε is drawn
in the calling thread, block after block in row order, so the step draws the
same numbers as the serial one; only the order of floating-point sums differs.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor, wait

import numpy as np

from ..backend import Backend
from ..layers import MLP, Dense
from ..validation import positive_int

#: At most this many row blocks (threads) per step: more than a machine's
#: cores only adds overhead, and a mistyped count must not start 10⁶ threads.
MAX_THREADS = 64


def _dense_layers(model) -> list:
    """Every Dense layer of a VAE, in a fixed order."""
    layers = []
    for module in (m for m in model.modules().values() if isinstance(m, (MLP, Dense))):
        layers += [l for l in (module.layers if isinstance(module, MLP) else [module])
                   if isinstance(l, Dense)]
    return layers


def make_replica(model):
    """A VAE that computes with ``model``'s parameter arrays but has its own grads and caches."""
    from ..models.vae import VAE

    if model.likelihood.params:
        raise ValueError("split-batch steps support likelihoods without parameters "
                         f"(not a learned {model.likelihood.name} variance)")
    be = model.backend
    twin = VAE.from_config(model.config(), Backend(be.name, be.dtype, seed=0))
    for mine, theirs in zip(_dense_layers(twin), _dense_layers(model)):
        mine.params = theirs.params          # the same dict: the same arrays
    # and the flat view under the same names: the replica's params are the model's arrays
    twin.params = {k: model.params[k] for k in twin.params}
    return twin


class SplitBatchStep:
    """forward + backward of one batch as ``threads`` row blocks on as many threads (NumPy only).

    ``step(x, beta)`` writes into the model's ``grads`` the gradient of the
    batch mean of recon + β·kl (no ``zero_grad`` needed) and returns the
    per-example ``(recon, kl)`` arrays of the whole batch; the optimizer step
    stays with the caller.  ``threads − 1`` pool threads compute the first
    blocks and the calling thread the last one.
    """

    def __init__(self, model, threads: int = 2):
        threads = positive_int("threads", threads)
        if threads > MAX_THREADS:
            raise ValueError(f"threads must be at most {MAX_THREADS}, got {threads}")
        if model.backend.name != "numpy":
            raise ValueError("SplitBatchStep is for the NumPy backend; on a GPU one kernel "
                             "already uses the whole device")
        from threadpoolctl import ThreadpoolController

        self.model = model
        self.replicas = [model] + [make_replica(model) for _ in range(threads - 1)]
        for r in self.replicas:             # each block writes its grads; the data was checked
            r.for_training()
        self._pool = ThreadPoolExecutor(threads - 1) if threads > 1 else None
        self._blas = ThreadpoolController()   # made once: each threadpool_limits() rescans

    def one_blas_thread(self):
        """A context that holds BLAS at one thread: wrap a whole loop of split steps in it.

        ``step`` limits BLAS to one thread per block for its own duration, but
        a BLAS call between two steps (the epoch's test −ELBO, say) would run
        on BLAS's own threads again, and those keep spinning for a while
        after every call (OpenBLAS about 0.1 s, its ``OPENBLAS_THREAD_TIMEOUT``).
        Spinning beside the blocks' threads they take a core from one of
        them: on 2 cores one forward pass of 500 digits on 2 BLAS threads
        made the next 35 steps of batch 128 take 1.50× as long
        (``benchmarks/blas_spin.py``).  Held over the loop, BLAS never starts
        its threads.
        """
        return self._blas.limit(limits=1, user_api="blas")

    @staticmethod
    def _block(model, x, eps, beta):
        o = model.forward(x, eps=eps)
        model.backward(beta=beta)                            # writes grads, mean over B
        return o.recon, o.kl

    def step(self, x, beta: float = 1.0):
        B, latent = x.shape[0], self.model.latent_dim
        bounds = np.linspace(0, B, len(self.replicas) + 1).astype(int)
        blocks = list(zip(self.replicas, bounds[:-1], bounds[1:]))
        for r in self.replicas:
            r.batch_total = B                                # each block's mean is over all B
        futures = []
        with self._blas.limit(limits=1, user_api="blas"):    # one BLAS thread per block
            try:
                for i, (r, a, b) in enumerate(blocks):
                    # ε block by block, in row order: the same numbers as one (B, latent)
                    # draw, and each pool block starts while the next one's ε is drawn.
                    eps = self.model.backend.standard_normal((b - a, latent))
                    if i < len(blocks) - 1:
                        futures.append(self._pool.submit(self._block, r, x[a:b], eps, beta))
                    else:                                    # the calling thread takes the last
                        last = self._block(r, x[a:b], eps, beta)
            finally:
                wait(futures)                                # never leave a block running
                for r in self.replicas:
                    r.batch_total = None                     # the model's own mean again
        parts = [f.result() for f in futures] + [last]
        for r in self.replicas[1:]:
            for k, g in self.model.grads.items():
                g += r.grads[k]
        return np.concatenate([p[0] for p in parts]), np.concatenate([p[1] for p in parts])
