"""Figures written by the training scripts (matplotlib, no display needed).

Every function takes host (NumPy) arrays: convert with ``backend.to_numpy``
where images leave the model.  Images are rows of D = h·w pixels in [0, 1].
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # write files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def image_grid(rows, image_shape=(28, 28), pad: int = 1) -> np.ndarray:
    """Tile a list of equally long image batches into one array, one batch per row."""
    rows = [np.asarray(r, dtype=np.float64).reshape(-1, *image_shape) for r in rows]
    n_cols = rows[0].shape[0]
    h, w = image_shape
    grid = np.ones((len(rows) * (h + pad) + pad, n_cols * (w + pad) + pad))
    for i, batch in enumerate(rows):
        for j, img in enumerate(batch[:n_cols]):
            top, left = pad + i * (h + pad), pad + j * (w + pad)
            grid[top:top + h, left:left + w] = img
    return grid


def _save_grid(grid, path, title=None, row_labels=None, rows=1):
    fig, ax = plt.subplots(figsize=(max(4.0, grid.shape[1] / 28), max(1.5, grid.shape[0] / 28) + 0.4))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xticks([])
    if row_labels:
        step = grid.shape[0] / rows
        ax.set_yticks([step * (i + 0.5) for i in range(rows)], row_labels)
    else:
        ax.set_yticks([])
    if title:
        ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_reconstructions(x, x_rec, path, image_shape=(28, 28), n: int = 10,
                         title="test digits (top) and their reconstructions (bottom)"):
    """Save ``n`` images of ``x`` above their reconstructions ``x_rec``."""
    grid = image_grid([x[:n], x_rec[:n]], image_shape)
    _save_grid(grid, path, title, ["data", "recon."], rows=2)


def plot_image_rows(rows, labels, path, image_shape=(28, 28), title=None):
    """Save several rows of images (e.g. clean / corrupted / reconstructed)."""
    _save_grid(image_grid(rows, image_shape), path, title, list(labels), rows=len(rows))


def plot_samples(samples, path, image_shape=(28, 28), n_cols: int = 8,
                 title="decoded draws from the prior p(z) = N(0, I)"):
    """Save samples as a grid of ``n_cols`` columns."""
    samples = np.asarray(samples)
    n_rows = int(np.ceil(len(samples) / n_cols))
    padded = np.ones((n_rows * n_cols, samples.shape[1]))
    padded[:len(samples)] = samples
    grid = image_grid(list(padded.reshape(n_rows, n_cols, -1)), image_shape)
    _save_grid(grid, path, title)


def plot_curves(history, keys, path, ylabel="nats per example", title=None):
    """Plot ``history[i][key]`` against ``history[i]["epoch"]`` for each key present."""
    fig, ax = plt.subplots(figsize=(6, 4))
    epochs = [h["epoch"] for h in history]
    for key in keys:
        values = [h.get(key) for h in history]
        if any(v is not None for v in values):
            ax.plot(epochs, values, marker="o", markersize=3, label=key)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
