"""The autoencoder and the denoising autoencoder: gradients, the cost's convention, training,
the command lines, checkpoints and every bad-input error."""

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import to_np
from minivae.training.checkpoint import CheckpointError, load_model, load_vae, save_checkpoint
from minivae.training.cli import main_autoencoder, main_denoising
from minivae.corruption import CORRUPTIONS, corrupt_fixed, make_corruption
from minivae.data import Dataset
from minivae.gradcheck import check_gradients
from minivae.likelihoods import Gaussian, SquaredError
from minivae.models.autoencoder import Autoencoder, evaluate_reconstruction
from minivae.models.denoising import DenoisingAutoencoder
from minivae.training.train import AEConfig, train_autoencoder

ROOT = Path(__file__).resolve().parents[2]
TOL = 1e-6
OUTPUTS = {"metrics.json", "checkpoint.npz", "reconstructions.png", "loss.png"}
ERROR_KEYS = {"sse_per_example", "mse_per_pixel", "mse"}


def _check_ae(model, x, x_tilde=None):
    """Relative error of every parameter's gradient of the batch cost, x̃ held fixed."""
    kw = {} if x_tilde is None else {"x_tilde": x_tilde}
    model.zero_grad()
    model.forward(x, **kw)
    model.backward()
    analytic = {k: g.copy() for k, g in model.grads.items()}
    return check_gradients(lambda: model.loss(x, **kw), model.params, analytic)


# -- the cost ---------------------------------------------------------------------

def test_squared_error_value_gradient_and_its_gaussian_reading(be64):
    x, out = be64.uniform((5, 7)), be64.standard_normal((5, 7))
    cost = SquaredError()
    e = cost.loss(x, out)
    np.testing.assert_allclose(to_np(e), ((to_np(x) - to_np(out)) ** 2).sum(axis=1), rtol=1e-12)
    w = be64.standard_normal((5,))
    cost.loss(x, out)
    errors = check_gradients(lambda: float((w * cost.loss(x, out)).sum()), {"out": out},
                             {"out": cost.backward(w)})
    assert errors["out"] <= TOL
    # ‖x − x̂‖² = −log N(x; x̂, ½ I) − (D/2) log π
    nll = -to_np(Gaussian(logvar=math.log(0.5), backend=be64).log_prob(x, out))
    np.testing.assert_allclose(to_np(e), nll - 7 / 2 * math.log(math.pi), rtol=1e-12)


def test_the_cost_sums_over_pixels_and_averages_over_examples(be64):
    model = Autoencoder(6, (5,), 3, backend=be64)
    x = be64.uniform((4, 6))
    o = model.forward(x)
    x_hat = to_np(model.reconstruct(x))
    per_example = ((to_np(x) - x_hat) ** 2).sum(axis=1)
    np.testing.assert_allclose(to_np(o.sse), per_example, rtol=1e-12)
    assert model.loss(x) == pytest.approx(per_example.mean(), rel=1e-12)
    ev = evaluate_reconstruction(model, x, batch_size=3)   # batched: same numbers
    assert ev["sse_per_example"] == pytest.approx(per_example.mean(), rel=1e-12)
    assert ev["mse_per_pixel"] == ev["mse"] == pytest.approx(per_example.mean() / 6, rel=1e-12)
    assert 0 < x_hat.min() and x_hat.max() < 1                # sigmoid output


# -- gradients (float64, central differences) ---------------------------------------

@pytest.mark.parametrize("hidden,activation,output", [
    ((5,), "relu", "sigmoid"),
    ((5,), "tanh", "linear"),
    ((5, 4), "softplus", "sigmoid"),
    ((4, 5), "leaky_relu", "linear"),
    ((5,), "sigmoid", "sigmoid"),
])
def test_autoencoder_gradient_matches_central_differences(be64, hidden, activation, output):
    model = Autoencoder(6, hidden, 3, activation, output, backend=be64)
    errors = _check_ae(model, be64.uniform((7, 6)))
    assert set(errors) == set(model.params) and len(errors) == 4 * (len(hidden) + 1)
    assert max(errors.values()) <= TOL, errors


@pytest.mark.parametrize("output", ["sigmoid", "linear"])
@pytest.mark.parametrize("name", list(CORRUPTIONS))
def test_denoising_gradient_through_every_corruption(be64, name, output):
    model = DenoisingAutoencoder(6, (5,), 3, "tanh", output, corruption=name, noise_level=0.4,
                                 backend=be64)
    x = be64.uniform((7, 6))
    x_tilde = model.corrupt(x)
    assert not np.array_equal(to_np(x_tilde), to_np(x))
    errors = _check_ae(model, x, x_tilde)
    assert max(errors.values()) <= TOL, errors


def test_denoising_backward_uses_the_x_tilde_drawn_in_forward(be64):
    """forward draws x̃ itself; backward must differentiate the cost at that very x̃."""
    model = DenoisingAutoencoder(6, (5,), 3, "tanh", corruption="salt-pepper", noise_level=0.5,
                                 backend=be64)
    x = be64.uniform((7, 6))
    model.zero_grad()
    o = model.forward(x)
    model.backward()
    analytic = {k: g.copy() for k, g in model.grads.items()}
    assert max(_check_ae(model, x, o.x_input).values()) <= TOL
    for k in analytic:
        np.testing.assert_allclose(to_np(analytic[k]), to_np(model.grads[k]), rtol=1e-10)


def test_denoising_target_is_the_clean_x_and_noise_is_fresh_per_batch(be64):
    model = DenoisingAutoencoder(6, (5,), 3, corruption="masking", noise_level=0.5, backend=be64)
    x = 0.5 + 0.5 * be64.uniform((20, 6))
    a, b = model.forward(x), model.forward(x)
    assert be64.is_device_array(a.x_input)
    assert not np.array_equal(to_np(a.x_input), to_np(b.x_input))
    x_hat = to_np(a.out)
    np.testing.assert_allclose(to_np(a.sse), ((to_np(x) - x_hat) ** 2).sum(axis=1), rtol=1e-12)
    np.testing.assert_allclose(x_hat, to_np(model.reconstruct(a.x_input)), rtol=1e-12)
    # with no noise the denoising autoencoder is the autoencoder (same seed, same weights)
    be_a, be_b = (type(be64)(be64.name, "float64", seed=3) for _ in range(2))
    dae = DenoisingAutoencoder(6, (5,), 3, corruption="masking", noise_level=0.0, backend=be_a)
    ae = Autoencoder(6, (5,), 3, backend=be_b)
    assert dae.loss(x) == ae.loss(x)


# -- training ---------------------------------------------------------------------


def _small(**kw):
    base = dict(epochs=30, hidden=(128,), bottleneck=32, batch_size=64, progress=False, out=None)
    base.update(kw)
    return AEConfig(**base)


def test_training_learns_and_denoising_beats_the_plain_autoencoder(small_digits):
    """Pinned numbers (seed 0, NumPy): measured AE test MSE 0.0235 (0.137 after epoch 1);
    on digits with half their pixels masked, AE 0.0395 vs DAE 0.0304."""
    m, ae = train_autoencoder(_small(), dataset=small_digits, return_model=True)
    first, last = m["history"][0]["test_mse_per_pixel"], m["test"]["mse"]
    mean_image = float(((small_digits.x_test - small_digits.x_train.mean(0)) ** 2).mean())
    assert first > 0.1 and last < 0.03 < mean_image, (first, last, mean_image)
    d, dae = train_autoencoder(_small(corruption="masking", noise_level=0.5),
                               dataset=small_digits, return_model=True)
    # both are scored on the same fixed corruption of the test digits
    x_tilde = corrupt_fixed(make_corruption("masking", 0.5), small_digits.x_test)
    dae_on_masked = d["test"]["corrupted"]["mse"]
    assert dae_on_masked == pytest.approx(
        evaluate_reconstruction(dae, small_digits.x_test, x_input=x_tilde)["mse"], rel=1e-6)
    ae_on_masked = evaluate_reconstruction(ae, small_digits.x_test, x_input=x_tilde)["mse"]
    assert dae_on_masked < 0.035 and dae_on_masked < 0.9 * ae_on_masked, (dae_on_masked,
                                                                            ae_on_masked)


def test_training_writes_every_output(tmp_path, small_digits, backend_name):
    m = train_autoencoder(_small(epochs=2, corruption="gaussian", backend=backend_name,
                                 out=str(tmp_path)), dataset=small_digits)
    assert OUTPUTS <= {p.name for p in tmp_path.iterdir()}
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["test"] == m["test"]
    t = saved["test"]
    assert ERROR_KEYS <= set(t) and ERROR_KEYS <= set(t["corrupted"])
    assert t["mse"] == t["mse_per_pixel"] == pytest.approx(t["sse_per_example"] / 784)
    assert t["corrupted"]["corruption"] == {"name": "gaussian", "level": 0.3, "clip": True}
    x_tilde = corrupt_fixed(make_corruption("gaussian", 0.3), small_digits.x_test)
    assert t["corrupted"]["input_mse_per_pixel"] == pytest.approx(
        float(((x_tilde - small_digits.x_test) ** 2).mean()), rel=1e-5)
    assert saved["config"]["noise_level"] == 0.3 and saved["config"]["hidden"] == [128]
    assert [h["epoch"] for h in saved["history"]] == [1, 2]
    assert {"train_sse_per_example", "test_sse_per_example", "test_mse_per_pixel",
            "test_corrupted_sse_per_example", "test_corrupted_mse_per_pixel"} <= set(
        saved["history"][0])
    for name in ("reconstructions.png", "loss.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_same_seed_same_run(small_digits):
    a = train_autoencoder(_small(epochs=1, corruption="salt-pepper", seed=3), dataset=small_digits)
    b = train_autoencoder(_small(epochs=1, corruption="salt-pepper", seed=3), dataset=small_digits)
    c = train_autoencoder(_small(epochs=1, corruption="salt-pepper", seed=4), dataset=small_digits)
    assert a["test"] == b["test"]
    assert a["history"][0]["train_sse_per_example"] != c["history"][0]["train_sse_per_example"]


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_divergence_is_reported_not_hidden(small_digits):
    from minivae.training.train import TrainingDiverged

    with pytest.raises(TrainingDiverged, match="smaller learning rate"):
        train_autoencoder(_small(epochs=2, output="linear", optimizer="sgd", lr=1e3),
                          dataset=small_digits)


# -- checkpoints ------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["Autoencoder", "DenoisingAutoencoder"])
def test_checkpoint_round_trip_through_load_model(tmp_path, be32, kind):
    if kind == "Autoencoder":
        model = Autoencoder(784, (32,), 4, "tanh", "linear", backend=be32)
    else:
        model = DenoisingAutoencoder(784, (32,), 4, corruption="gaussian", noise_level=0.2,
                                     backend=be32)
        model.corruption.clip = False
    save_checkpoint(tmp_path / "m.npz", model)
    loaded = load_model(tmp_path / "m.npz", backend=be32)
    assert type(loaded).__name__ == kind and loaded.config() == model.config()
    x = be32.uniform((5, 784))
    np.testing.assert_array_equal(to_np(loaded.reconstruct(x)), to_np(model.reconstruct(x)))
    with pytest.raises(CheckpointError, match=f"holds a '{kind}', not a VAE"):
        load_vae(tmp_path / "m.npz")


def test_load_model_reads_vaes_and_names_unknown_models(tmp_path):
    from minivae.models.vae import VAE

    vae = VAE(784, 16, 2)
    save_checkpoint(tmp_path / "vae.npz", vae)
    assert load_model(tmp_path / "vae.npz").config() == vae.config()

    class Mystery(Autoencoder):
        pass

    save_checkpoint(tmp_path / "x.npz", Mystery(784, 8, 2))
    with pytest.raises(CheckpointError, match="holds a 'Mystery' model; load_model knows VAE, "
                                              "Autoencoder, DenoisingAutoencoder"):
        load_model(tmp_path / "x.npz")


# -- bad input ----------------------------------------------------------------------

def test_a_bottleneck_of_zero_is_rejected_everywhere(capsys):
    with pytest.raises(ValueError, match="bottleneck must be a positive integer, got 0"):
        Autoencoder(784, (16,), 0)
    with pytest.raises(ValueError, match="bottleneck must be a positive integer, got 0"):
        DenoisingAutoencoder(784, (16,), 0)
    with pytest.raises(ValueError, match="bottleneck must be a positive integer, got 0"):
        train_autoencoder(_small(bottleneck=0))
    for main in (main_autoencoder, main_denoising):
        with pytest.raises(SystemExit) as info:
            main(["--bottleneck", "0"])
        assert info.value.code == 2
        assert "--bottleneck: expected a positive integer, got 0" in capsys.readouterr().err


@pytest.mark.parametrize("corruption,level,message", [
    ("masking", "1.5", r"masking noise level nu must be in [0, 1], got 1.5"),
    ("masking", "-0.2", r"masking noise level nu must be in [0, 1], got -0.2"),
    ("salt-pepper", "2", r"salt-and-pepper noise level nu must be in [0, 1], got 2.0"),
    ("gaussian", "-0.1", "Gaussian noise level sigma must be a finite number ≥ 0, got -0.1"),
])
def test_bad_noise_levels_stop_the_command_line_with_a_message(corruption, level, message,
                                                                capsys):
    assert main_denoising(["--corruption", corruption, f"--noise-level={level}",
                           "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err


def test_unknown_corruption_is_rejected(capsys):
    with pytest.raises(SystemExit) as info:
        main_denoising(["--corruption", "blur"])
    assert info.value.code == 2 and "invalid choice: 'blur'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="unknown corruption 'blur'"):
        train_autoencoder(_small(corruption="blur"))
    with pytest.raises(ValueError, match="unknown corruption 'blur'"):
        DenoisingAutoencoder(784, (16,), 4, corruption="blur")


@pytest.mark.parametrize("field,value,message", [
    ("output", "tanh", r"unknown output 'tanh'; expected one of \('sigmoid', 'linear'\)"),
    ("noise_level", 0.3, "noise_level=0.3 needs a corruption"),
    ("hidden", (64, 0), "hidden must be one or more positive integers"),
    ("lr", -1.0, "lr must be a positive finite number"),
])
def test_bad_configuration_is_rejected(field, value, message):
    with pytest.raises(ValueError, match=message):
        train_autoencoder(_small(**{field: value}))


def test_bad_model_input_is_rejected(be32):
    model = DenoisingAutoencoder(784, (16,), 4, backend=be32)
    with pytest.raises(ValueError, match="x has 783 features per example, the model expects 784"):
        model.forward(np.zeros((2, 783)))
    with pytest.raises(ValueError, match="x_input must have the shape of x"):
        model.forward(np.zeros((3, 784)), x_tilde=np.zeros((2, 784)))
    with pytest.raises(ValueError, match="noise_level goes with a corruption name"):
        DenoisingAutoencoder(784, (16,), 4, corruption=make_corruption("masking"), noise_level=0.1)
    with pytest.raises(ValueError, match="unknown output 'relu'"):
        Autoencoder(784, (16,), 4, output="relu")


def test_pixels_outside_the_unit_interval_are_rejected_with_a_sigmoid_output(small_digits):
    bad = Dataset("mnist5k", small_digits.x_train * 255, small_digits.y_train,
                  small_digits.x_test, small_digits.y_test)
    with pytest.raises(ValueError, match=r"outside \[0, 1\]"):
        train_autoencoder(_small(), dataset=bad)


# -- the example scripts -----------------------------------------------------------

@pytest.mark.parametrize("script,extra", [
    ("train_autoencoder.py", []),
    ("train_denoising.py", ["--corruption", "salt-pepper", "--noise-level", "0.25"]),
])
def test_example_scripts_run_and_write(tmp_path, script, extra):
    r = subprocess.run([sys.executable, str(ROOT / "examples" / script), "--epochs", "1",
                        "--hidden", "16", "--bottleneck", "2", "--no-progress", "--out",
                        str(tmp_path), *extra], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert OUTPUTS <= {p.name for p in tmp_path.iterdir()}
    m = json.loads((tmp_path / "metrics.json").read_text())
    assert ERROR_KEYS <= set(m["test"]) and m["config"]["bottleneck"] == 2
    assert "epoch   1/1" in r.stdout and "test (500 clean digits)" in r.stdout
    if extra:
        assert m["test"]["corrupted"]["corruption"] == {"name": "salt-pepper", "level": 0.25}
        assert ERROR_KEYS <= set(m["test"]["corrupted"])
        assert type(load_model(tmp_path / "checkpoint.npz")).__name__ == "DenoisingAutoencoder"
    else:
        assert "corrupted" not in m["test"]
        assert type(load_model(tmp_path / "checkpoint.npz")).__name__ == "Autoencoder"
