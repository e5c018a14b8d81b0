"""Figures: each one is written as a PNG, the PCA behind the latent scatter, and what train_vae writes."""

import numpy as np
import pytest

from minivae.training import plots
from minivae.backend import get_backend
from minivae.data import Dataset, load_dataset
from minivae.models.vae import VAE
from minivae.training.train import VAEConfig, figure_names, train_vae

PNG = b"\x89PNG\r\n\x1a\n"


def _is_png(path):
    return path.is_file() and path.read_bytes()[:8] == PNG


def _history(n=4, warmup=False):
    return [{"epoch": e, "train_neg_elbo": 200.0 / e, "test_neg_elbo": 210.0 / e,
             "train_recon": 170.0 / e, "test_recon": 180.0 / e, "train_kl": 30.0,
             "test_kl": 30.0, "beta": min(1.0, e / 2) if warmup else 1.0} for e in range(1, n + 1)]


@pytest.mark.parametrize("warmup", [False, True])
def test_loss_terms(tmp_path, warmup):
    plots.plot_loss_terms(_history(warmup=warmup), tmp_path / "terms.png")
    assert _is_png(tmp_path / "terms.png")


def test_pca_2d_finds_the_plane_the_points_lie_in():
    rng = np.random.default_rng(0)
    plane = rng.standard_normal((200, 2)) * [3.0, 1.0]       # variances 9 and 1
    basis = np.linalg.qr(rng.standard_normal((5, 2)))[0]     # an orthonormal 2-frame in 5-D
    coords, explained = plots.pca_2d(plane @ basis.T + 7.0)
    assert coords.shape == (200, 2)
    assert explained.sum() == pytest.approx(1.0)             # all variance lies in the plane
    assert explained[0] > explained[1] > 0.05
    # the projection keeps every distance between points (a rotation of the plane)
    d = np.linalg.norm(plane[:, None] - plane[None], axis=-1)
    np.testing.assert_allclose(np.linalg.norm(coords[:, None] - coords[None], axis=-1), d,
                               atol=1e-9)


@pytest.mark.parametrize("latent_dim", [1, 2, 8])
def test_latent_scatter_for_any_width(tmp_path, latent_dim):
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 300)
    mu = rng.standard_normal((300, latent_dim)) + labels[:, None]
    plots.plot_latent_scatter(mu, labels, tmp_path / "s.png")
    assert _is_png(tmp_path / "s.png")


def test_latent_scatter_checks_its_input(tmp_path):
    with pytest.raises(ValueError, match="one label per row"):
        plots.plot_latent_scatter(np.zeros((5, 2)), np.zeros(4), tmp_path / "s.png")


def test_manifold_from_a_model_or_a_function(tmp_path):
    model = VAE(784, 16, 2, backend=get_backend(seed=0))
    plots.plot_manifold(model, tmp_path / "m.png", n=6)
    assert _is_png(tmp_path / "m.png")
    seen = []

    def decode(z):
        seen.append(z)
        return np.tile(np.linspace(0, 1, 784), (len(z), 1))

    plots.plot_manifold(decode, tmp_path / "f.png", n=5)
    assert _is_png(tmp_path / "f.png")
    z = seen[0]
    assert z.shape == (25, 2)
    assert z[:, 0].min() == pytest.approx(-1.6449, abs=1e-4)  # Φ⁻¹(0.05)
    assert z[0, 1] == pytest.approx(1.6449, abs=1e-4)         # the top row is the largest z₂
    with pytest.raises(ValueError, match="needs a 2-D latent"):
        plots.plot_manifold(VAE(784, 16, 3, backend=get_backend()), tmp_path / "x.png")


@pytest.mark.parametrize("latent_dim", [2, 5])
def test_train_vae_writes_every_figure_that_applies(tmp_path, latent_dim):
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:300], ds.y_train[:300], ds.x_test[:100],
                    ds.y_test[:100])
    train_vae(VAEConfig(epochs=1, hidden=(16,), latent_dim=latent_dim, progress=False,
                          out=str(tmp_path)), dataset=small)
    names = figure_names(latent_dim)
    assert ("manifold.png" in names) == (latent_dim == 2)
    assert {"reconstructions.png", "samples.png", "loss.png", "loss_terms.png",
            "latent_scatter.png"} <= set(names)
    for name in names:
        assert _is_png(tmp_path / name), name
    assert not (latent_dim != 2 and (tmp_path / "manifold.png").exists())
