"""Figures written by the training scripts (matplotlib, no display needed).

Every function takes host (NumPy) arrays: convert with ``backend.to_numpy``
where images leave the model.  Images are rows of D = h·w pixels in [0, 1].
Every figure is written atomically (:func:`minivae.training.files.atomic_write`): a
reader never sees half a PNG, and a symlink in the figure's place is replaced,
not written through.
"""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")  # write files; never open a window
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from ..numerics import normal_quantiles  # noqa: E402
from .files import atomic_write  # noqa: E402


def _save(fig, path, dpi: int) -> None:
    """Write ``fig`` to ``path`` as PNG, atomically (never half a file, never through a symlink).

    The figure is closed in every case, so a failed save leaks no figure.
    """
    try:
        atomic_write(path, lambda f: fig.savefig(f, format="png", dpi=dpi))
    finally:
        plt.close(fig)


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
    _save(fig, path, dpi=100)


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
    _save(fig, path, dpi=100)


def plot_loss_terms(history, path, title="the loss and its two terms per epoch (z sampled)"):
    """Three panels, train and test per epoch: −ELBO, reconstruction −log p(x|z), KL(q(z|x) ‖ p(z)).

    −ELBO = recon + KL, in nats per example (β = 1 whatever the training
    weight).  When the KL weight β of training is not 1 throughout (``beta``
    in the history: β at each epoch's last step, e.g. during a KL warm-up) it
    is drawn on a second axis of the KL panel.
    """
    epochs = [h["epoch"] for h in history]
    panels = (("−ELBO = recon + KL", "neg_elbo"), ("reconstruction  −log p(x|z)", "recon"),
              ("KL( q(z|x) ‖ p(z) )", "kl"))
    fig, axes = plt.subplots(1, 3, figsize=(12, 4.0), layout="constrained")
    for ax, (label, key) in zip(axes, panels):
        for split, style in (("train", "-"), ("test", "--")):
            values = [h.get(f"{split}_{key}") for h in history]
            if any(v is not None for v in values):
                ax.plot(epochs, values, style, marker="o", markersize=3, label=split)
        ax.set_title(label, fontsize=10)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("nats per example")
    handles, labels = axes[0].get_legend_handles_labels()
    betas = [h.get("beta", 1.0) for h in history]
    if any(b != 1.0 for b in betas):
        twin = axes[2].twinx()
        (line,) = twin.plot(epochs, betas, ":", color="grey", lw=1.5,
                            label="β, the KL weight of training (right axis)")
        twin.set_ylim(0, max(betas) * 1.05)
        twin.set_ylabel("β", color="grey")
        handles, labels = handles + [line], labels + [line.get_label()]
    fig.legend(handles, labels, loc="outside lower center", ncol=len(handles), fontsize=9,
               frameon=False)
    if title:
        fig.suptitle(title, fontsize=11)
    _save(fig, path, dpi=100)


def pca_2d(a):
    """Project the rows of ``a`` (n, d) onto their first two principal axes.

    The axes are the first two right singular vectors of the centred data
    A − mean = U S Vᵀ; returns ``(coords (n, 2), explained (2,))`` where
    ``explained`` is each axis's share of the total variance, s_i² / Σ s².
    """
    a = np.asarray(a, dtype=np.float64)
    centred = a - a.mean(axis=0)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    var = s * s
    coords = np.zeros((len(a), 2))               # fewer than 2 axes (one point): zeros
    coords[:, :min(2, len(vt))] = centred @ vt[:2].T
    explained = np.zeros(2)
    if var.sum() > 0:
        explained[:min(2, len(var))] = var[:2] / var.sum()
    return coords, explained


def plot_latent_scatter(mu, labels, path, title=None):
    """Scatter the posterior means μ(x) of test digits, one colour per label.

    ``mu`` is (n, latent_dim) on the host, ``labels`` (n,) integer classes, or
    None for data without labels (one colour, no legend).  A 2-D latent is
    drawn as it is; a wider one by its first two principal components
    (:func:`pca_2d`); a 1-D one against the label (jittered).
    """
    mu = np.asarray(mu, dtype=np.float64)
    labelled = labels is not None
    labels = np.asarray(labels) if labelled else np.zeros(len(mu), dtype=int)
    if mu.ndim != 2 or len(mu) != len(labels):
        raise ValueError(f"mu must be (n, latent_dim) with one label per row; got mu of shape "
                         f"{mu.shape} and {len(labels)} labels")
    d = mu.shape[1]
    if d == 1:
        jitter = np.random.default_rng(0).uniform(-0.3, 0.3, len(mu))
        xy, axis_labels = np.c_[mu[:, 0], labels + jitter], ("μ₁(x)", "label (jittered)")
    elif d == 2:
        xy, axis_labels = mu, ("μ₁(x)", "μ₂(x)")
    else:
        xy, explained = pca_2d(mu)
        axis_labels = tuple(f"principal component {i + 1} of μ(x) ({100 * e:.0f}% of variance)"
                            for i, e in enumerate(explained))
    fig, ax = plt.subplots(figsize=(6.4, 5.6))
    cmap = plt.get_cmap("tab10")
    for i, c in enumerate(np.unique(labels)):
        sel = labels == c
        ax.scatter(xy[sel, 0], xy[sel, 1], s=7, alpha=0.75, color=cmap(i % 10), label=str(c),
                   linewidths=0)
    if labelled:
        ax.legend(title="digit", markerscale=2.5, fontsize=8, title_fontsize=9,
                  loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    ax.set_xlabel(axis_labels[0], fontsize=9)
    ax.set_ylabel(axis_labels[1], fontsize=9)
    ax.grid(alpha=0.25)
    if title is None:
        title = (f"posterior means μ(x) of {len(mu)} test digits"
                 + (f" (latent dim {d}, PCA)" if d > 2 else ""))
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi=100)


def _decoder_means(model):
    """z (m, latent) on the host → E[x|z] on the host, for a VAE ``model``."""
    be = model.backend

    def decode(z):
        return be.to_numpy(model.likelihood.mean(model.decode(be.to_device(z))))

    return decode


def plot_manifold(decode, path, n: int = 20, image_shape=(28, 28), quantiles=(0.05, 0.95),
                  title="the decoder over the 2-D latent space: E[x|z] on a grid of z"):
    """Decode an n × n grid of z over a 2-D latent and tile the images.

    ``decode`` is a VAE with ``latent_dim == 2`` or a function from host z of
    shape (m, 2) to host images (m, h·w).  The grid's coordinates are standard
    normal quantiles, z_i = Φ⁻¹(q_i) with q evenly spaced over ``quantiles``,
    so each cell covers equal prior mass p(z) = N(0, I); z₁ grows to the
    right and z₂ upwards.
    """
    if hasattr(decode, "decode"):
        if decode.latent_dim != 2:
            raise ValueError(f"plot_manifold needs a 2-D latent, got latent_dim "
                             f"{decode.latent_dim}")
        decode = _decoder_means(decode)
    g = normal_quantiles(np.linspace(quantiles[0], quantiles[1], n))
    z1, z2 = np.meshgrid(g, g[::-1])                    # row 0 is the largest z₂
    images = np.asarray(decode(np.c_[z1.ravel(), z2.ravel()]))
    grid = image_grid(list(images.reshape(n, n, -1)), image_shape, pad=0)
    h, w = image_shape
    fig, ax = plt.subplots(figsize=(7.2, 7.4))
    ax.imshow(grid, cmap="gray", vmin=0, vmax=1, interpolation="nearest")
    ticks = sorted({int(round(t)) for t in np.linspace(0, n - 1, min(n, 5))})
    ax.set_xticks([(j + 0.5) * w for j in ticks], [f"{g[j]:.2f}" for j in ticks], fontsize=8)
    ax.set_yticks([(i + 0.5) * h for i in ticks], [f"{g[::-1][i]:.2f}" for i in ticks], fontsize=8)
    ax.set_xlabel(f"z₁ (normal quantiles {quantiles[0]:g} … {quantiles[1]:g})")
    ax.set_ylabel("z₂")
    if title:
        ax.set_title(title, fontsize=10)
    fig.tight_layout()
    _save(fig, path, dpi=100)


def plot_posteriors(panels, path, image_shape=(28, 28), title=None):
    r"""The true posterior p(z|x) with the encoder's q(z|x) over it, one column per digit.

    ``panels`` is a list of dicts with host arrays: ``image`` (D,), ``z1``, ``z2``
    (grid axes) and ``log_post`` (len(z2), len(z1)) the log posterior density on that
    grid, ``mu_q`` and ``logvar_q`` (2,) of q = N(μ, C Cᵀ) with C = [[σ₁, 0], [t, σ₂]]
    (logvar = log σ²; ``tril_q`` = t, absent or 0 for the diagonal q; ``posterior``
    ``"full"`` names a full q in the legend even where every t is 0), and
    ``label`` (the image's title) and optionally ``text`` (the latent panel's title,
    e.g. the numbers).  Both densities are drawn at the same three levels
    relative to their own peak, e^{−r²/2} for r = 1, 2, 3: for a Gaussian these are its
    1σ, 2σ and 3σ ellipses, so where p(z|x) is Gaussian the two sets of curves are
    directly comparable.
    """
    levels = np.exp(-0.5 * np.array([9.0, 4.0, 1.0]))          # 3σ, 2σ, 1σ relative heights
    n = len(panels)
    fig, axes = plt.subplots(2, n, figsize=(3.3 * n, 5.6), squeeze=False, layout="constrained",
                             gridspec_kw={"height_ratios": [1, 2.6]})
    for j, p in enumerate(panels):
        ax_img, ax = axes[0, j], axes[1, j]
        ax_img.imshow(np.asarray(p["image"]).reshape(image_shape), cmap="gray", vmin=0, vmax=1,
                      interpolation="nearest")
        ax_img.set_axis_off()
        ax_img.set_title(p.get("label", ""), fontsize=8.5)

        z1, z2 = np.asarray(p["z1"]), np.asarray(p["z2"])
        rel = np.exp(p["log_post"] - p["log_post"].max())      # p(z|x) / its peak
        mu, sig = np.asarray(p["mu_q"]), np.exp(0.5 * np.asarray(p["logvar_q"]))
        t = float(p.get("tril_q", 0.0))
        sd = np.array([sig[0], np.hypot(t, sig[1])])            # q's marginal deviations
        # the window: where p(z|x) is above its 3σ level, and q's ±3.5σ, made square
        rows, cols = np.nonzero(rel >= levels[0])
        lo = np.minimum([z1[cols].min(), z2[rows].min()], mu - 3.5 * sd)
        hi = np.maximum([z1[cols].max(), z2[rows].max()], mu + 3.5 * sd)
        centre, half = (lo + hi) / 2, 0.6 * (hi - lo).max()
        ax.contourf(z1, z2, rel, levels=[*levels, 1.01], cmap="Blues", alpha=0.9)
        ax.contour(z1, z2, rel, levels=levels, colors="navy", linewidths=0.6)
        g1 = np.linspace(centre[0] - half, centre[0] + half, 300)
        g2 = np.linspace(centre[1] - half, centre[1] + half, 300)
        G1, G2 = np.meshgrid(g1, g2)
        u1 = (G1 - mu[0]) / sig[0]                             # u = L⁻¹(z − μ), by substitution
        u2 = (G2 - mu[1] - t * u1) / sig[1]
        q_rel = np.exp(-0.5 * (u1 ** 2 + u2 ** 2))
        ax.contour(g1, g2, q_rel, levels=levels, colors="crimson", linestyles="--", linewidths=1.2)
        ax.plot(*mu, marker="+", color="crimson", markersize=9, mew=1.5)
        ax.set_xlim(centre[0] - half, centre[0] + half)
        ax.set_ylim(centre[1] - half, centre[1] + half)
        ax.set_aspect("equal")
        ax.set_xlabel("z₁", fontsize=9)
        if j == 0:
            ax.set_ylabel("z₂", fontsize=9)
        ax.tick_params(labelsize=7)
        if "text" in p:
            ax.set_title(p["text"], fontsize=8, family="monospace")
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    fig.legend(handles=[Patch(facecolor="cornflowerblue", edgecolor="navy",
                              label="true posterior p(z|x) (grid quadrature)"),
                        Line2D([], [], color="crimson", ls="--",
                               label="encoder's q(z|x) = " + (
                                   "N(μ, C Cᵀ)" if any(p.get("posterior") == "full" or
                                                       p.get("tril_q", 0.0) for p in panels)
                                   else "N(μ, diag σ²)"))],
               loc="outside lower center", ncol=2, fontsize=8.5, frameon=False,
               title="contours at each density's 1σ, 2σ, 3σ heights (e^(−r²/2) of its peak)",
               title_fontsize=8)
    if title:
        fig.suptitle(title, fontsize=10)
    _save(fig, path, dpi=110)
