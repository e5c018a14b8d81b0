"""Tests for four bugs an adversarial pass planted and the suite did not catch (issue 19, item 14).

Each test names the bug it catches; each was run against the planted bug and failed.
"""

import numpy as np
import pytest

from minivae.backend import get_backend


def test_the_learned_gaussian_log_variance_gradient_is_added_not_written(be64):
    """Bug: ``grads["logvar"] += ds`` written as ``= ds`` (every other test zeroes first)."""
    from minivae.likelihoods import Gaussian

    lik = Gaussian(logvar=-0.5, learn_logvar=True, backend=be64)
    x, out = be64.uniform((5, 4)), be64.uniform((5, 4))
    w = be64.to_device(np.full(5, -0.2))
    lik.log_prob(x, out)
    lik.zero_grad()
    lik.backward(w)
    one = float(be64.to_numpy(lik.grads["logvar"])[0])
    lik.grads["logvar"][...] = 7.0                      # whatever another use put there
    lik.log_prob(x, out)
    lik.backward(w)
    assert float(be64.to_numpy(lik.grads["logvar"])[0]) == pytest.approx(7.0 + one, rel=1e-12)
    assert one != 0


def test_the_kl_of_a_tril_factor_never_reads_its_upper_triangle(be64):
    """Bug: ``kl_mvn_tril_std`` reading C's upper triangle (every test passed a lower one)."""
    from minivae.kl import kl_mvn_tril, kl_mvn_tril_grad, kl_mvn_tril_std, kl_mvn_tril_std_grad

    rng = np.random.default_rng(3)
    C = np.tril(rng.normal(size=(4, 3, 3)) * 0.3) + 1.5 * np.eye(3)
    garbage = C + np.triu(rng.normal(size=(4, 3, 3)) * 5, k=1)    # the same factor, noise above
    mu = rng.normal(size=(4, 3))
    d = be64.to_device
    for f in (kl_mvn_tril_std, kl_mvn_tril_std_grad):
        clean, dirty = f(d(mu), d(C)), f(d(mu), d(garbage))
        for a, b in zip(clean if isinstance(clean, tuple) else (clean,),
                        dirty if isinstance(dirty, tuple) else (dirty,)):
            np.testing.assert_array_equal(be64.to_numpy(a), be64.to_numpy(b))
    # (the general kl_mvn_tril refuses an upper triangle instead: its factors are checked)
    mu2, C2 = rng.normal(size=(4, 3)), np.tril(rng.normal(size=(4, 3, 3))) + 2 * np.eye(3)
    for f in (kl_mvn_tril, kl_mvn_tril_grad):
        with pytest.raises(ValueError, match="C1 must be lower triangular"):
            f(d(mu), d(garbage), d(mu2), d(C2))


def test_the_reported_standard_error_is_the_standard_deviation_over_root_n(monkeypatch):
    """Bug: ``iw_nll_se`` without the 1/√n (no test checked its value)."""
    import minivae.training.steps as steps
    from minivae.models.vae import VAE
    from minivae.training.config import VAEConfig

    log_px = np.array([-90.0, -100.0, -95.0, -105.0, -85.0, -97.0])
    monkeypatch.setattr(steps, "iw_log_likelihood", lambda *a, **k: log_px)
    be = get_backend("numpy", seed=0)
    model = VAE(6, (5,), 2, backend=be)
    x = (be.uniform((6, 6)) < 0.5).astype(be.dtype)
    test = steps.final_test_metrics(model, x, VAEConfig(iw_samples=10, eval_samples=1))
    assert test["iw_nll"] == pytest.approx(95.333333333, rel=1e-9)
    assert test["iw_nll_se"] == pytest.approx(np.std(log_px, ddof=1) / np.sqrt(6), rel=1e-12)


def test_a_resume_without_a_generator_state_reseeds_from_seed_and_epoch(tmp_path, capsys):
    """Bug: the generator seeded from the seed alone when the checkpoint holds no state of it
    (a CuPy run resumed on NumPy), so a resumed run would replay the first epoch's draws."""
    from minivae.data import Minibatches, load_dataset
    from minivae.models.vae import VAE
    from minivae.optim import Adam
    from minivae.training.checkpoint import read_training_checkpoint
    from minivae.training.config import VAEConfig
    from minivae.training.resume import restore
    from minivae.training.train import train_vae

    ds = load_dataset("mnist5k")
    config = VAEConfig(epochs=2, hidden=(16,), latent_dim=2, seed=11, progress=False,
                       out=str(tmp_path))
    train_vae(config)
    ckpt = read_training_checkpoint(tmp_path / "checkpoint.npz")
    ckpt.training["rng"]["backend_rng"] = None               # as a CuPy run stores it
    be = get_backend("numpy", seed=11)
    model = VAE(784, (16,), 2, backend=be)
    batches = Minibatches(ds.x_train, be, 128, shuffle=True, seed=11)
    epoch, _ = restore(model, Adam(model.params, model.grads), batches, ckpt, config,
                       len(ds.x_train), "the checkpoint")
    assert epoch == 2 and "re-seeded from (seed, epoch)" in capsys.readouterr().err
    expected = np.random.default_rng([11, 2]).standard_normal(6)
    np.testing.assert_array_equal(be.rng.standard_normal(6, dtype=np.float64), expected)
    assert not np.array_equal(np.random.default_rng(11).standard_normal(6), expected)


def test_a_snapshot_does_not_alias_the_live_history():
    """A snapshot's history is its own list: what the loop appends later is not in it."""
    from minivae.data import Minibatches
    from minivae.models.vae import VAE
    from minivae.optim import Adam
    from minivae.training.resume import take_snapshot

    be = get_backend("numpy", seed=0)
    model = VAE(6, (5,), 2, backend=be)
    batches = Minibatches(np.zeros((4, 6), np.float32), be, 2, shuffle=True, seed=0)
    history = [{"epoch": 1, "train_neg_elbo": 5.0}]
    snap = take_snapshot(model, Adam(model.params, model.grads), batches, 1, history)
    history.append({"epoch": 2, "train_neg_elbo": 4.0})
    history[0]["epoch"] = 99
    assert snap.history == [{"epoch": 1, "train_neg_elbo": 5.0}]
