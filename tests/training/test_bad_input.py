"""Bad input gets a sentence, never a traceback or a silently wrong number.

KL arguments, model inputs, IDX files (gzip bombs, empty splits), crafted
checkpoint metadata, command-line bounds, the approximate-inference example;
and the tests that mutation found missing: evaluate_elbo's mean over
N · n_samples, the active-unit threshold on the variance, central differences
of non-contiguous arrays.  Each backs a row of docs/reliability.md.
"""

import contextlib
import gzip
import json
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from minivae import kl
from minivae.backend import get_backend
from minivae.training.checkpoint import CheckpointError, load_model, load_vae, read_training_checkpoint
from minivae.training.cli import main_autoencoder, main_vae
from minivae.data import DataError, Dataset, load_dataset, load_idx_dataset, read_idx
from minivae.evaluate import active_units, evaluate_elbo, iw_log_likelihood
from minivae.gradcheck import numerical_gradient
from minivae.models.autoencoder import Autoencoder
from minivae.models.vae import VAE
from minivae.training.train import ACTIVE_UNIT_THRESHOLD, VAEConfig, train_vae
from idx_files import fake_mnist, idx_bytes, write_fake_dir

ROOT = Path(__file__).resolve().parents[2]


# -- the KL divergences ------------------------------------------------------------------

def test_kl_categorical_never_stretches_the_outcome_axis():
    """One outcome (p = [1]) against two: the event sizes differ, whatever broadcasting allows."""
    with pytest.raises(ValueError, match="same number of outcomes along axis -1, got 1 and 2"):
        kl.kl_categorical(np.ones((2, 1)), [[0.5, 0.5]])
    with pytest.raises(ValueError, match="axis 2 is out of range"):
        kl.kl_categorical(np.ones((2, 1)), np.ones((2, 1)), axis=2)
    # a batch axis still broadcasts: one q against two p's
    np.testing.assert_allclose(kl.kl_categorical([[1.0, 0.0], [0.5, 0.5]], [0.5, 0.5]),
                               [np.log(2), 0.0], atol=1e-15)


ONE = np.zeros(1)
KL_CALLS = {
    "kl_categorical": lambda a: kl.kl_categorical(a, np.ones(1)),
    "kl_normal_std": lambda a: kl.kl_normal_std(a, ONE),
    "kl_normal_std_grad": lambda a: kl.kl_normal_std_grad(ONE, a),
    "kl_normal_diag": lambda a: kl.kl_normal_diag(ONE, ONE, a, ONE),
    "kl_normal_diag_grad": lambda a: kl.kl_normal_diag_grad(ONE, a, ONE, ONE),
    "kl_mvn": lambda a: kl.kl_mvn(a, np.eye(1), ONE, np.eye(1)),
    "kl_mvn_tril": lambda a: kl.kl_mvn_tril(ONE, np.eye(1), a, np.eye(1)),
    "kl_mvn_tril_grad": lambda a: kl.kl_mvn_tril_grad(a, np.eye(1), ONE, np.eye(1)),
}


@pytest.mark.parametrize("name", KL_CALLS)
@pytest.mark.parametrize("bad,message", [
    (np.array([np.nan]), "NaN or Inf"),
    (np.array([np.inf]), "NaN or Inf"),
    (np.array([1 + 0j]), "must hold real numbers, got dtype complex128"),
    (np.array(["1"]), "must hold real numbers, got dtype <U1"),
])
def test_every_kl_rejects_nan_inf_complex_and_strings(name, bad, message):
    with pytest.raises(ValueError, match=message):
        KL_CALLS[name](bad)


def test_kl_covariances_are_checked_too():
    with pytest.raises(ValueError, match="cov2 must hold real numbers"):
        kl.kl_mvn(ONE, np.eye(1), ONE, np.eye(1) + 0j)
    with pytest.raises(ValueError, match="C1 must be finite"):
        kl.kl_mvn_tril(ONE, np.full((1, 1), np.nan), ONE, np.eye(1))


def test_the_training_step_skips_the_kl_checks_and_stays_exact():
    """check=False is the same number without reading the data on the host."""
    rng = np.random.default_rng(0)
    mu, logvar = rng.standard_normal((5, 3)), rng.standard_normal((5, 3))
    assert np.array_equal(kl.kl_normal_std(mu, logvar), kl.kl_normal_std(mu, logvar, check=False))


# -- model inputs ------------------------------------------------------------------------

def _models():
    be = get_backend(seed=0)
    return VAE(6, (5,), 3, backend=be), Autoencoder(6, (5,), 3, backend=be)


@pytest.mark.parametrize("call", ["vae.forward", "vae.loss", "vae.encode", "vae.reconstruct",
                                  "ae.forward", "ae.encode", "ae.reconstruct",
                                  "evaluate_elbo", "iw_log_likelihood", "active_units"])
@pytest.mark.parametrize("x,error,message", [
    (np.full((2, 6), 0.5) + 1j, ValueError, "real numbers, got dtype complex128"),
    (np.array([["a"] * 6]), ValueError, "real numbers, got dtype <U1"),
    (np.full((2, 6), np.nan), DataError, "x contains 12 NaN"),
    (np.zeros((0, 6)), DataError, "x has no rows"),
    (np.zeros((2, 5)), DataError, "x has 5 features per example, the model expects 6"),
])
def test_model_inputs_are_checked_where_they_enter(call, x, error, message):
    vae, ae = _models()
    run = {"vae.forward": lambda: vae.forward(x), "vae.loss": lambda: vae.loss(x),
           "vae.encode": lambda: vae.encode(x), "vae.reconstruct": lambda: vae.reconstruct(x),
           "ae.forward": lambda: ae.forward(x), "ae.encode": lambda: ae.encode(x),
           "ae.reconstruct": lambda: ae.reconstruct(x),
           "evaluate_elbo": lambda: evaluate_elbo(vae, x),
           "iw_log_likelihood": lambda: iw_log_likelihood(vae, x, k=2),
           "active_units": lambda: active_units(vae, x)}[call]
    with pytest.raises(error, match=message):
        run()


def test_decoders_check_their_codes():
    vae, ae = _models()
    with pytest.raises(DataError, match="z contains 6 NaN"):
        vae.decode(np.full((2, 3), np.nan))
    with pytest.raises(DataError, match="z has 4 features per example, the model expects 3"):
        vae.decode(np.zeros((2, 4)))
    with pytest.raises(DataError, match="code has no rows"):
        ae.decode(np.zeros((0, 3)))


def test_a_data_set_with_an_empty_split_is_refused(tmp_path):
    ds = load_dataset("mnist5k")
    empty = Dataset("mnist5k", ds.x_train[:300], ds.y_train[:300], ds.x_test[:0], ds.y_test[:0])
    with pytest.raises(DataError, match="x_test of 'mnist5k' has no examples"):
        train_vae(VAEConfig(epochs=1, hidden=(16,), latent_dim=2, out=None, progress=False),
                  dataset=empty)
    arrays = fake_mnist(n_test=0)
    with pytest.raises(DataError, match="t10k-images-idx3-ubyte.gz holds no images"):
        load_idx_dataset("mnist", write_fake_dir(tmp_path, arrays))


# -- IDX files ---------------------------------------------------------------------------

def test_a_header_promising_too_much_is_refused_before_decompressing(tmp_path):
    """A 60 kB .gz whose header claims 2³² × 2 bytes (8 GiB) of images."""
    header = bytes([0, 0, 8, 3]) + (65536).to_bytes(4, "big") * 2 + (2).to_bytes(4, "big")
    path = tmp_path / "bomb-images-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header + bytes(50_000_000)))
    with pytest.raises(DataError, match="promises 8,589,934,592 bytes .* refusing to read it"):
        read_idx(path)


def test_a_gzip_bomb_after_a_valid_header_stays_in_bounded_memory(tmp_path):
    """3 bytes promised, 50 MB of zeros after them (50 kB compressed): refused, read in chunks."""
    path = tmp_path / "labels.gz"
    path.write_bytes(gzip.compress(idx_bytes(np.arange(3, dtype=np.uint8)) + bytes(50_000_000)))
    tracemalloc.start()
    try:
        with pytest.raises(DataError, match="50000000 bytes more than dimensions"):
            read_idx(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 10 * 2**20, peak                     # the old reader held all 50 MB
    with pytest.raises(DataError, match="more than 1,000 bytes more"):
        read_idx(path, max_bytes=1000)


# -- crafted checkpoints -----------------------------------------------------------------

@pytest.fixture(scope="module")
def trained_checkpoint(tmp_path_factory):
    out = tmp_path_factory.mktemp("ckpt")
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:300], ds.y_train[:300], ds.x_test[:50], ds.y_test[:50])
    train_vae(VAEConfig(epochs=2, hidden=(16,), latent_dim=2, progress=False, out=str(out)),
              dataset=small)
    return out / "checkpoint.npz"


def _crafted(src, dst, edit):
    with np.load(src) as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("__meta__")))
    edit(meta)
    np.savez(dst, __meta__=np.array(json.dumps(meta)), **arrays)
    return dst


CRAFTED = {
    "epoch is a string": (lambda m: m["training"].update(epoch="two"),
                          "epoch must be a non-negative integer, found 'two'"),
    "negative epoch": (lambda m: m["training"].update(epoch=-1),
                       "epoch must be a non-negative integer, found -1"),
    "history is a number": (lambda m: m["training"].update(history=5),
                            "history must be a list of per-epoch objects, found int"),
    "history too short": (lambda m: m["training"]["history"].pop(),
                          "history has 1 entries for 2 epochs"),
    "optimizer is null": (lambda m: m["training"].update(optimizer=None),
                          "optimizer must be an object"),
    "step count is a string": (lambda m: m["training"]["optimizer"]["scalars"].update(t="x"),
                               "optimizer scalar 't' must be a non-negative integer"),
    "rng is a list": (lambda m: m["training"].update(rng=[]), "rng must be a JSON object"),
    "data counts are strings": (lambda m: m["training"].update(data={"n_train": "300"}),
                                "data must map names to example counts"),
    "training is a list": (lambda m: m.update(training=[1]),
                           "the training state must be a JSON object, found list"),
    "extra is a list": (lambda m: m.update(extra=[]),
                        "the metadata entry 'extra' must be a JSON object, found list"),
    "train_config is a string": (lambda m: m["extra"].update(train_config="x"),
                                 "train_config must be a JSON object"),
    # issue 19, item 9: these three gave tracebacks (OverflowError; KeyError after training)
    "a negative generator state": (
        lambda m: m["training"]["rng"]["backend_rng"]["state"].update(state=-5),
        "the random generator state 'backend_rng' is not valid"),
    "an unknown bit generator": (
        lambda m: m["training"]["rng"]["shuffle"].update(bit_generator="Nope"),
        "the random generator state 'shuffle' is not valid .unknown bit generator 'Nope'"),
    "history entries without their epoch": (
        lambda m: m["training"].update(history=[{}, {}]),
        "history entry 0 is not the metrics of epoch 1"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_training_metadata_is_refused_with_a_sentence(trained_checkpoint, tmp_path, case,
                                                              capsys):
    edit, message = CRAFTED[case]
    path = _crafted(trained_checkpoint, tmp_path / "crafted.npz", edit)
    with pytest.raises(CheckpointError, match=message):
        read_training_checkpoint(path)
    assert main_vae(["--resume", str(path), "--epochs", "3", "--no-progress",
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "Traceback" not in err


def test_values_that_overflow_the_runs_dtype_are_refused_before_any_work(trained_checkpoint,
                                                                         tmp_path, capsys):
    """float64 1e300 in a checkpoint becomes Inf in float32: refused when read, not loaded."""
    with np.load(trained_checkpoint) as z:
        arrays = {k: z[k] for k in z.files}
    arrays["param/decoder.0.W"] = arrays["param/decoder.0.W"].astype(np.float64)
    arrays["param/decoder.0.W"][0, 0] = 1e300
    path = tmp_path / "big.npz"
    np.savez(path, **arrays)
    with pytest.raises(CheckpointError, match="decoder.0.W holds 1e.300, which does not fit the "
                                              "model's float32"):
        load_vae(path)
    assert main_vae(["--resume", str(path), "--epochs", "3", "--no-progress",
                     "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert "which does not fit the run's float32" in err and "Traceback" not in err
    assert not (tmp_path / "out").exists()                 # before any work
    assert load_vae(path, get_backend("numpy", dtype="float64")).params["decoder.0.W"][0, 0] \
        == 1e300                                            # float64 holds it


def test_a_crafted_model_config_is_refused_before_allocating(trained_checkpoint, tmp_path):
    huge = _crafted(trained_checkpoint, tmp_path / "huge.npz",
                    lambda m: m["model_config"].update(hidden=[10**9]))
    with pytest.raises(CheckpointError, match="asks for a width 1000000000 that none of the "
                                              "stored weights has"):
        load_vae(huge)
    many = _crafted(trained_checkpoint, tmp_path / "many.npz",
                    lambda m: m["model_config"].update(hidden=[16] * 10**6))
    with pytest.raises(CheckpointError, match="do not fit the 10 stored arrays"):
        load_model(many)


# -- command-line bounds -----------------------------------------------------------------

@pytest.mark.parametrize("main", [main_vae, main_autoencoder])
def test_huge_widths_are_refused_before_allocating(main, tmp_path, capsys):
    assert main(["--hidden", "40000000", "--epochs", "1", "--out", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: the 784-40000000-") and "GiB of memory on this" in err
    if main is main_vae:
        assert main(["--latent-dim", "10000000000", "--out", str(tmp_path)]) == 2
        assert "parameters and needs at least" in capsys.readouterr().err


def test_threads_are_bounded(capsys):
    with pytest.raises(SystemExit) as info:
        main_vae(["--threads", "65"])
    assert info.value.code == 2
    assert "argument --threads: expected an integer from 1 to 64, got 65" in capsys.readouterr().err
    with pytest.raises(ValueError, match="threads must be at most 64"):
        VAEConfig(threads=10**6).validate()


@pytest.mark.parametrize("argv,message", [
    (["--grid", "10"], "argument --grid: expected an integer from 30 to 1001, got 10"),
    (["--grid", "100000"], "argument --grid: expected an integer from 30 to 1001"),
    (["--digits", "0"], "argument --digits: expected an integer from 1 to 10, got 0"),
    (["--epochs", "x"], "argument --epochs: expected a positive integer, got 'x'"),
    (["--seed", "-1"], "argument --seed: expected a non-negative integer, got -1"),
    (["--out", ""], "argument --out: expected a directory path, got ''"),
])
def test_approximate_inference_rejects_bad_flags(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        _example("approximate_inference").main(argv)
    assert info.value.code == 2 and message in capsys.readouterr().err


def _example(name):
    """An example script imported as a module (its main() is not run on import)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_approximate_inference_turns_run_time_failures_into_one_line(tmp_path):
    afile = tmp_path / "afile"
    afile.write_text("")
    for argv, message in ((["--out", str(afile)], "it exists and is not a directory"),
                          (["--backend", "cupy", "--out", str(tmp_path / "o")], "backend")):
        r = subprocess.run([sys.executable, str(ROOT / "examples" / "approximate_inference.py"),
                            "--epochs", "1", *argv], capture_output=True, text=True, timeout=300)
        if "cupy" in argv and r.returncode == 0:
            continue                                   # a machine where CuPy runs
        assert r.returncode == 2, r.stderr
        assert r.stderr.startswith("error: ") and message in r.stderr
        assert "Traceback" not in r.stderr


# -- what mutation testing found untested -----------------------------------------------------

def _deterministic_vae():
    """A VAE whose σ is e⁻³⁰: z = μ to 1e-13, so its ELBO does not depend on ε."""
    be = get_backend("numpy", dtype="float64", seed=3)
    model = VAE(8, (6,), 3, backend=be)
    model.params["logvar_head.W"][...] = 0
    model.params["logvar_head.b"][...] = -60.0
    x = (be.uniform((30, 8)) < 0.5).astype(be.dtype)
    return model, x


def test_evaluate_elbo_averages_over_examples_and_samples():
    """n_samples passes over N examples are a mean over N · n_samples scores: dividing by N
    alone would report 3 times the −ELBO for n_samples = 3."""
    model, x = _deterministic_vae()
    o = model.forward(x, eps=np.zeros((30, 3)))
    exact = float((o.recon + o.kl).mean())
    for n_samples in (1, 3):
        for batch_size in (7, 500):
            r = evaluate_elbo(model, x, batch_size=batch_size, n_samples=n_samples)
            assert r["neg_elbo"] == pytest.approx(exact, rel=1e-9)
            assert r["recon"] + r["kl"] == pytest.approx(r["neg_elbo"], rel=1e-12)


class _FixedMeans:
    """A stand-in encoder with μ(x) of exactly known variance per unit (no network)."""

    def __init__(self, variances, n=1000):
        self.backend = get_backend("numpy", dtype="float64")
        signs = np.where(np.arange(n) % 2 == 0, 1.0, -1.0)[:, None]
        self.mu = signs * np.sqrt(np.asarray(variances))[None, :]   # mean 0, variance v_j

    def check_input(self, x):
        return x

    @contextlib.contextmanager
    def values_checked(self):
        yield self

    def encode(self, x):
        return self.mu[x[:, 0].astype(int)], None


def test_active_units_threshold_the_variance_of_the_mean_at_burdas_001():
    """Units of Var μ_j = 0.05, 0.02 are active; 0.005 is not (its std, 0.07, would be above
    0.01); 0.05 would not be at 10 × the threshold."""
    variances = [0.05, 0.02, 0.005, 0.0]
    model = _FixedMeans(variances)
    x = np.arange(1000, dtype=float)[:, None]
    count, A = active_units(model, x, batch_size=300)
    np.testing.assert_allclose(A, variances, rtol=1e-12, atol=1e-15)
    assert count == 2
    assert ACTIVE_UNIT_THRESHOLD == 0.01           # the run's threshold: Burda et al.'s


@pytest.mark.parametrize("view", ["transposed", "strided", "fortran"])
def test_numerical_gradient_of_a_non_contiguous_array(view):
    """x[::2] or x.T are perturbed where f reads them, not in a flattened copy."""
    base = np.random.default_rng(0).standard_normal((6, 4))
    x = {"transposed": base.T, "strided": base[::2], "fortran": np.asfortranarray(base)}[view]
    assert not x.flags.c_contiguous
    w = np.random.default_rng(1).standard_normal(x.shape)
    g = numerical_gradient(lambda: float((w * x ** 2).sum()), x)
    np.testing.assert_allclose(g, 2 * w * x, rtol=1e-7, atol=1e-9)
    frozen = np.zeros(3)
    frozen.flags.writeable = False
    with pytest.raises(ValueError, match="writable"):
        numerical_gradient(lambda: 0.0, frozen)
