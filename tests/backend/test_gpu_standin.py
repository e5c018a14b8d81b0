"""The GPU path without a GPU: every front end on the CuPy stand-in, and no host sync per step.

tests/fake_cupy.py is CuPy as strict as CuPy is (no implicit host conversion, no NumPy
arrays in device calls, only CuPy's Generator methods), backed by NumPy, and it counts
every device → host read.  The cupy-parametrized tests all over the suite run on it
where no GPU runs CuPy (conftest.py); here the examples and the benchmark run with
``--backend cupy``, and the training steps are held to zero host syncs.
"""

import runpy
import sys
from pathlib import Path

import numpy as np
import pytest

import fake_cupy
from conftest import REAL_CUPY
from minivae.backend import get_backend
from minivae.training.cli import main_autoencoder, main_denoising, main_vae
from minivae.training.config import AEConfig, VAEConfig
from minivae.data import Minibatches
from minivae.training.fit import LastGood, fit
from minivae.models.autoencoder import Autoencoder
from minivae.models.vae import VAE
from minivae.optim import Adam
from minivae.training.resume import take_snapshot
from minivae.training.steps import AEStep, IWAEStep, VAEStep

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.skipif(REAL_CUPY, reason="a real GPU runs CuPy here: the stand-in "
                                                   "is for machines without one")


@pytest.fixture
def cupy(monkeypatch):
    return fake_cupy.install(monkeypatch)


def test_the_stand_in_is_as_strict_as_cupy(cupy):
    a = cupy.asarray(np.ones(3, dtype=np.float32))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError):
        np.exp(a)                                   # a NumPy function on a device array
    with pytest.raises(TypeError, match="NumPy array in a CuPy call"):
        a + np.ones(3)
    with pytest.raises(TypeError, match="NumPy array in a CuPy call"):
        cupy.exp(np.ones(3))
    assert not hasattr(cupy.random.default_rng(0), "permutation")   # not a CuPy method
    before = fake_cupy.SYNCS["count"]
    float(a.sum()), a.get(), bool((a > 0).all())
    assert fake_cupy.SYNCS["count"] == before + 3
    # CuPy's Cholesky is silent on a matrix that is not positive definite, unless told
    bad = cupy.asarray(-np.eye(2))
    assert bool(cupy.isnan(cupy.linalg.cholesky(bad)).all())
    import cupyx
    with pytest.raises(np.linalg.LinAlgError), cupyx.errstate(linalg="raise"):
        cupy.linalg.cholesky(bad)


def test_kl_mvn_raises_on_the_device_too(cupy):
    from minivae.kl import kl_mvn

    be = get_backend("cupy", dtype="float64")
    mu, bad = be.to_device(np.zeros(2)), be.to_device(np.array([[1.0, 2.0], [2.0, 1.0]]))
    with pytest.raises(ValueError, match="positive definite"):
        kl_mvn(mu, bad, mu, be.to_device(np.eye(2)))
    # host and device arguments together: computed on the device
    kl = kl_mvn(np.zeros(2), np.eye(2), mu, be.to_device(2 * np.eye(2)))
    assert isinstance(kl, cupy.ndarray) and float(kl) == pytest.approx(np.log(2) - 0.5)


@pytest.mark.parametrize("argv", [
    [],
    ["--objective", "iwae", "--k", "3"],
    ["--posterior", "full"],
    ["--likelihood", "gaussian", "--iw-samples", "5"],
])
def test_train_vae_runs_on_the_stand_in(cupy, tmp_path, capsys, argv):
    assert main_vae(["--backend", "cupy", "--epochs", "1", "--hidden", "32", "--latent-dim",
                     "2", "--no-progress", "--out", str(tmp_path), *argv]) == 0
    out = capsys.readouterr().out
    assert "name='cupy'" in out and (tmp_path / "samples.png").is_file()


def test_the_autoencoder_examples_run_on_the_stand_in(cupy, tmp_path, capsys):
    assert main_autoencoder(["--backend", "cupy", "--epochs", "1", "--hidden", "32",
                             "--bottleneck", "4", "--no-progress", "--out",
                             str(tmp_path / "ae")]) == 0
    assert main_denoising(["--backend", "cupy", "--epochs", "1", "--hidden", "32",
                           "--bottleneck", "4", "--corruption", "salt-pepper", "--no-progress",
                           "--out", str(tmp_path / "dae")]) == 0
    assert (tmp_path / "dae" / "reconstructions.png").is_file()


def test_approximate_inference_runs_on_the_stand_in(cupy, tmp_path):
    main = runpy.run_path(str(ROOT / "examples" / "approximate_inference.py"),
                          run_name="approximate_inference")["main"]
    assert main(["--backend", "cupy", "--epochs", "1", "--digits", "1", "--grid", "41",
                 "--out", str(tmp_path)]) == 0
    assert (tmp_path / "posterior_full.png").is_file()


def test_the_benchmark_runs_on_the_stand_in(cupy, capsys):
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_train_step

    assert bench_train_step.main(["--backend", "cupy", "--batch-size", "16", "--seconds",
                                  "0.05", "--rounds", "1"]) == 0
    assert '"samples_per_second"' in capsys.readouterr().out


def _vae_step(cupy, **settings):
    config = VAEConfig(hidden=(32,), latent_dim=4, backend="cupy", out=None, progress=False,
                         **settings)
    be = get_backend("cupy", seed=0)
    model = VAE(784, config.hidden, config.latent_dim, backend=be, posterior=config.posterior)
    return config, model


def _batches(be, n):
    rng = np.random.default_rng(0)
    return Minibatches(rng.random((n, 784)).astype(np.float32), be, 32, binarize="dynamic")


@pytest.mark.parametrize("kind", ["elbo", "iwae", "full", "autoencoder"])
def test_a_training_step_reads_nothing_back_from_the_device(cupy, kind):
    be = get_backend("cupy", seed=0)
    x_test = be.to_device(np.random.default_rng(1).random((20, 784)).astype(np.float32))
    if kind == "autoencoder":
        config = AEConfig(hidden=(32,), bottleneck=4, backend="cupy", out=None)
        model = Autoencoder(784, (32,), 4, backend=be)
        step = AEStep(model, config, x_test)
    else:
        settings = {"iwae": {"objective": "iwae", "k": 3}, "full": {"posterior": "full"}}
        config, model = _vae_step(cupy, **settings.get(kind, {}))
        be = model.backend
        x_test = be.to_device(np.random.default_rng(1).random((20, 784)).astype(np.float32))
        step = (IWAEStep(model, config, x_test, 4) if kind == "iwae"
                else VAEStep(model, config, x_test, 4))
    optimizer = Adam(model.params, model.grads)
    batches = _batches(model.backend, 128)
    step.start_epoch(1)
    before = fake_cupy.SYNCS["count"]
    for n, x in enumerate(batches, start=1):
        step(x, n)
        optimizer.step()
    assert fake_cupy.SYNCS["count"] == before, "a training step waited for the device"
    entry = step.end_epoch(1)              # the epoch's end reads its sums back: that is allowed
    assert np.isfinite(list(v for v in entry.values() if isinstance(v, float))).all()


def test_an_epochs_host_syncs_do_not_grow_with_its_steps(cupy):
    """The whole fit loop, progress off: its syncs are per epoch, none per step."""
    counts = []
    for n_rows in (64, 256):                # 2 and 8 steps per epoch
        config, model = _vae_step(cupy)
        be = model.backend
        x_test = be.to_device(np.random.default_rng(1).random((20, 784)).astype(np.float32))
        batches = _batches(be, n_rows)
        step = VAEStep(model, config, x_test, len(batches))
        optimizer = Adam(model.params, model.grads)

        def snapshot(epoch, hist):
            return take_snapshot(model, optimizer, batches, epoch, hist)

        with LastGood(None, None, 0, snapshot(0, [])) as last:
            before = fake_cupy.SYNCS["count"]
            fit(step, optimizer, batches, last, snapshot, epochs=1, progress=False)
            counts.append(fake_cupy.SYNCS["count"] - before)
    assert counts[0] == counts[1], counts
