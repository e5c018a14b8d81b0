"""What a training run writes into its output directory, besides the checkpoint.

A VAE run (:func:`minivae.training.train.train_vae`) writes ``metrics.json``,
``checkpoint.npz`` and the figures of :func:`figure_names`; an autoencoder run
``metrics.json``, ``checkpoint.npz``, ``reconstructions.png`` and ``loss.png``
(:data:`AE_OUTPUT_FILES`).  Every file is written atomically
(:func:`minivae.training.files.atomic_write`), so a run stopped while writing leaves
the previous version or the new one, never half a file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from .files import atomic_write

#: The file a training run keeps its checkpoint in, inside ``config.out``.
CHECKPOINT_NAME = "checkpoint.npz"

#: The files an autoencoder run writes into ``config.out``.
AE_OUTPUT_FILES = (CHECKPOINT_NAME, "metrics.json", "reconstructions.png", "loss.png")


def memory_use(backend) -> dict:
    """The run's memory, for metrics.json: the process's peak resident set (MiB).

    ``peak_rss_mib`` is the largest resident set size the process has had so
    far (``getrusage``'s ``ru_maxrss``), sampled once the run's files, figures
    included, are written: the whole run's peak.  It is None where the OS does
    not report it (Windows); on CuPy
    ``gpu_pool_mib`` adds what CuPy's memory pool holds on the device.  The
    pool keeps freed blocks for reuse, so that is about the peak of the device
    arrays alive at once (not measured on a GPU yet).
    """
    use = {"peak_rss_mib": None}
    try:
        import resource
    except ImportError:  # pragma: no cover - Windows
        resource = None
    if resource is not None:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss   # KiB; bytes on macOS
        use["peak_rss_mib"] = round(peak / (2 ** 20 if sys.platform == "darwin" else 2 ** 10), 1)
    if backend.name == "cupy":
        use["gpu_pool_mib"] = round(backend.xp.get_default_memory_pool().total_bytes() / 2 ** 20, 1)
    return use


def write_metrics(out: Path, metrics: dict) -> None:
    """``metrics.json``: the metrics dict, indented."""
    atomic_write(out / "metrics.json",
                 lambda f: f.write((json.dumps(metrics, indent=2) + "\n").encode()))


def figure_names(latent_dim: int) -> list:
    """The figures :func:`write_figures` writes for a VAE with this latent dimension."""
    names = ["reconstructions.png", "samples.png", "loss.png", "loss_terms.png",
             "latent_scatter.png"]
    return names + (["manifold.png"] if latent_dim == 2 else [])


def write_figures(out: Path, model, history: list, x_test_host, y_test, image_shape) -> list:
    """Write the VAE's figures into ``out`` (see :func:`figure_names`); return their names.

    reconstructions.png: 10 test digits above their reconstructions E[x|z=μ(x)];
    samples.png: 64 decoded draws z ~ N(0, I); loss.png: train and test −ELBO
    per epoch (for the iwae objective: train and test −L_k, and test −ELBO);
    loss_terms.png: −ELBO, reconstruction and KL per epoch (and the
    KL weight β when it is not 1); latent_scatter.png: μ(x) of the test digits
    coloured by label (PCA when latent_dim > 2); manifold.png (latent_dim 2):
    the decoded grid of z at normal quantiles.
    """
    from . import plots

    be = model.backend
    x = x_test_host[:10]
    plots.plot_reconstructions(x, be.to_numpy(model.reconstruct(x)), out / "reconstructions.png",
                               image_shape)
    plots.plot_samples(be.to_numpy(model.sample(64)), out / "samples.png", image_shape)
    if "train_neg_iw_bound" in history[0]:           # trained on the importance-weighted bound
        plots.plot_curves(history, ["train_neg_iw_bound", "test_neg_iw_bound", "test_neg_elbo"],
                          out / "loss.png", title=f"−L_{history[0]['k']}, the importance-weighted "
                                                  f"bound, and −ELBO (z sampled)")
    else:
        plots.plot_curves(history, ["train_neg_elbo", "test_neg_elbo"], out / "loss.png",
                          title="negative ELBO (z sampled)")
    plots.plot_loss_terms(history, out / "loss_terms.png")
    mu = np.concatenate([be.to_numpy(model.encode(x_test_host[s:s + 1000])[0])
                         for s in range(0, len(x_test_host), 1000)])
    plots.plot_latent_scatter(mu, y_test, out / "latent_scatter.png")
    if model.latent_dim == 2:
        plots.plot_manifold(model, out / "manifold.png", n=20, image_shape=image_shape)
    return figure_names(model.latent_dim)


def write_autoencoder_figures(out: Path, model, history: list, x_test_host, x_test_tilde_host,
                              image_shape) -> None:
    """Write reconstructions.png and loss.png into ``out``.

    (checkpoint.npz and metrics.json are written by
    :func:`minivae.training.train.train_autoencoder`.)

    reconstructions.png shows 10 test digits: clean above their reconstructions
    for the autoencoder; clean, corrupted (x̃) and the reconstruction of x̃ for
    the denoising one.
    """
    from . import plots

    backend = model.backend
    x = x_test_host[:10]
    if x_test_tilde_host is None:
        rows = [x, backend.to_numpy(model.reconstruct(x))]
        labels = ["data", "recon."]
        title = "test digits x (top) and their reconstructions f(g(x)) (bottom)"
        keys = ["train_sse_per_example", "test_sse_per_example"]
    else:
        x_tilde = x_test_tilde_host[:10]
        rows = [x, x_tilde, backend.to_numpy(model.reconstruct(x_tilde))]
        labels = ["clean x", "corrupted x̃", "f(g(x̃))"]
        title = f"denoising, {model.corruption.describe()}"
        keys = ["train_sse_per_example", "test_sse_per_example", "test_corrupted_sse_per_example"]
    plots.plot_image_rows(rows, labels, out / "reconstructions.png", image_shape, title=title)
    plots.plot_curves(history, keys, out / "loss.png",
                      ylabel=f"squared error per example (sum over {model.input_dim} pixels)",
                      title="the cost L = mean over examples of ‖x − x̂‖²")
