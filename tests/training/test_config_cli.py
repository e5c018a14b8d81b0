"""One source of settings: the command line is generated from the config classes.

Also the two behaviours of issue 11 that live at that edge: the Gaussian
likelihood's learned variance, usable from the command line, and a progress
bar only where it can be drawn.
"""

import dataclasses
import io
import json
import math

import numpy as np
import pytest

from minivae.training.checkpoint import read_checkpoint
from minivae.training.cli import (AE_SETTINGS, DAE_SETTINGS, VAE_SETTINGS, autoencoder_parser,
                         config_from_args, denoising_parser, main_vae, vae_parser)
from minivae.training.config import AEConfig, DAEConfig, VAEConfig
from minivae.training.train import train_vae

PARSERS = [(vae_parser, VAEConfig, VAE_SETTINGS),
           (autoencoder_parser, AEConfig, AE_SETTINGS),
           (denoising_parser, DAEConfig, DAE_SETTINGS)]


@pytest.mark.parametrize("make_parser,config_class,names", PARSERS)
def test_no_flags_give_the_library_defaults(make_parser, config_class, names):
    parser = make_parser()
    assert config_from_args(config_class, parser.parse_args([])) == config_class()
    for f in dataclasses.fields(config_class):
        if f.name in names:
            assert parser.get_default(f.name) == f.default, f.name


def test_every_setting_is_offered_where_it_applies():
    vae = {f.name for f in dataclasses.fields(VAEConfig)}
    ae = {f.name for f in dataclasses.fields(AEConfig)}
    assert set(VAE_SETTINGS) == vae
    assert set(DAE_SETTINGS) == ae
    assert set(AE_SETTINGS) == ae - {"corruption", "noise_level", "clip"}
    # the defaults that used to disagree: the autoencoders' epochs
    assert AEConfig().epochs == DAEConfig().epochs == \
        autoencoder_parser().get_default("epochs") == denoising_parser().get_default("epochs")


def test_flags_reach_the_config():
    args = vae_parser().parse_args(
        ["--hidden", "64,32", "--no-progress", "--init", "he", "--likelihood", "gaussian",
         "--gaussian-logvar", "-2.5", "--iw-samples", "0", "--threads", "3", "--lr", "3e-4"])
    c = config_from_args(VAEConfig, args)
    assert (c.hidden, c.progress, c.init, c.likelihood, c.gaussian_logvar, c.iw_samples,
            c.threads, c.lr) == ((64, 32), False, "he", "gaussian", -2.5, 0, 3, 3e-4)
    d = config_from_args(DAEConfig, denoising_parser().parse_args(
        ["--corruption", "masking", "--noise-level", "0.4", "--no-clip"]))
    assert (d.corruption, d.noise_level, d.clip) == ("masking", 0.4, False)
    assert config_from_args(AEConfig, autoencoder_parser().parse_args([])).corruption is None


def test_the_help_shows_the_library_defaults():
    text = autoencoder_parser().format_help()
    assert "(default: 50)" in text and "(default: runs/autoencoder)" in text
    assert "(default: torch)" in vae_parser().format_help()


# -- the Gaussian likelihood ---------------------------------------------------------------

def _collapsed_neg_elbo(ds) -> float:
    """−log p(x) per test digit of the best model that learned nothing: every reconstruction
    the mean training image, one σ² fitted to the test digits, KL 0."""
    s = float(((ds.x_test - ds.x_train.mean(axis=0)) ** 2).mean())
    return ds.x_train.shape[1] / 2 * (math.log(2 * math.pi * s) + 1)


def test_gaussian_likelihood_learns_its_variance_and_beats_a_collapsed_model(small_digits):
    config = dict(epochs=20, likelihood="gaussian", hidden=(128,), latent_dim=8,
                  progress=False, out=None)
    learned, model = train_vae(VAEConfig(**config), dataset=small_digits, return_model=True)
    start = VAEConfig(**config).likelihood_options(small_digits.x_train)["logvar"]
    end = float(model.likelihood.logvar[0])
    fixed = train_vae(VAEConfig(**config, gaussian_logvar=0.0), dataset=small_digits)
    collapsed = _collapsed_neg_elbo(small_digits)
    # measured (seed 0): collapsed 56.7; learned -88.2 (log σ² -2.695 -> -2.754, after rising
    # while the reconstructions are still worse than the mean image); σ² = 1 at 10 epochs: 746.6
    assert end < start - 0.03
    assert learned["test"]["neg_elbo"] < collapsed - 100, (learned["test"], collapsed)
    assert fixed["test"]["neg_elbo"] > collapsed + 500
    assert learned["test"]["active_units"] >= 4


def test_gaussian_from_the_command_line_learned_and_fixed(tmp_path, capsys):
    for extra, learn in (([], True), (["--gaussian-logvar", "-3"], False)):
        out = tmp_path / ("learned" if learn else "fixed")
        assert main_vae(["--likelihood", "gaussian", "--epochs", "1", "--hidden", "32",
                         "--latent-dim", "2", "--no-progress", "--out", str(out), *extra]) == 0
        meta, params = read_checkpoint(out / "checkpoint.npz")
        options = meta["model_config"]["likelihood_options"]
        assert options["learn_logvar"] is learn and ("likelihood.logvar" in params) is learn
        stored = json.loads((out / "metrics.json").read_text())["config"]
        assert stored["gaussian_logvar"] == (None if learn else -3.0)
        if not learn:
            assert options["logvar"] == -3.0
    with pytest.raises(SystemExit):
        main_vae(["--gaussian-logvar", "inf"])
    capsys.readouterr()
    assert main_vae(["--gaussian-logvar", "-3", "--out", str(tmp_path / "x")]) == 2
    assert "goes with likelihood='gaussian'" in capsys.readouterr().err


def test_a_learned_gaussian_run_resumes_bit_identically(tmp_path, small_digits):
    def config(epochs, out):
        return VAEConfig(epochs=epochs, likelihood="gaussian", hidden=(32,), latent_dim=4,
                           progress=False, out=str(out))
    _, straight = train_vae(config(4, tmp_path / "a"), dataset=small_digits, return_model=True)
    train_vae(config(2, tmp_path / "b"), dataset=small_digits)
    _, resumed = train_vae(config(4, tmp_path / "c"), dataset=small_digits, return_model=True,
                           resume=tmp_path / "b" / "checkpoint.npz")
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])
    assert "likelihood.logvar" in straight.params


# -- the progress bar -------------------------------------------------------------------------

class _Terminal(io.StringIO):
    def isatty(self):
        return True


@pytest.mark.parametrize("terminal", [False, True])
def test_a_progress_bar_only_on_a_terminal(small_digits, monkeypatch, capsys, terminal):
    stream = _Terminal() if terminal else io.StringIO()
    monkeypatch.setattr("sys.stderr", stream)
    train_vae(VAEConfig(epochs=2, hidden=(16,), latent_dim=2, out=None, progress=True),
              dataset=small_digits)
    lines = [line for line in capsys.readouterr().out.splitlines() if line.startswith("epoch")]
    assert len(lines) == 2                          # one line per epoch, always, on stdout
    drawn = stream.getvalue()
    if terminal:
        assert "\r" in drawn and "epoch 1/2" in drawn
    else:
        assert drawn == ""


@pytest.mark.parametrize("settings,message", [
    ({"objective": "iwae", "beta": 2.0}, "the iwae objective has none"),
    ({"objective": "iwae", "kl_warmup_epochs": 3}, "the iwae objective has none"),
    ({"objective": "iwae", "threads": 2}, "runs serially"),
    ({"objective": "iwae", "k": 0}, "k must be a positive integer"),
    ({"k": 5}, "goes with objective='iwae'"),
    ({"objective": "iwal"}, "unknown objective"),
    ({"posterior": "full", "latent_dim": 1}, "latent_dim ≥ 2"),
    ({"posterior": "tilted"}, "unknown posterior"),
])
def test_objective_and_posterior_settings_are_checked(settings, message):
    with pytest.raises(ValueError, match=message):
        VAEConfig(**settings).validate()


def test_iwae_and_full_flags_reach_the_config_and_bad_ones_exit_2(tmp_path, capsys):
    c = config_from_args(VAEConfig, vae_parser().parse_args(
        ["--objective", "iwae", "--k", "7", "--posterior", "full"]))
    assert (c.objective, c.resolved_k(), c.posterior) == ("iwae", 7, "full")
    assert VAEConfig(objective="iwae").resolved_k() == 5
    assert main_vae(["--k", "3", "--out", str(tmp_path)]) == 2
    assert "error: k=3 goes with objective='iwae'" in capsys.readouterr().err
