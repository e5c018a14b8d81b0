"""The split-batch step: the same gradients and the same training as the serial step."""

import numpy as np
import pytest

from minivae.backend import get_backend
from minivae.data import Dataset, load_dataset
from minivae.models.vae import VAE
from minivae.training.parallel import SplitBatchStep, make_replica
from minivae.training.resources import resolve_threads, splitter_for
from minivae.training.train import VAEConfig, train_vae


@pytest.mark.parametrize("threads,rows", [(2, 17), (3, 30), (2, 2), (2, 1)])
def test_split_step_equals_the_serial_step(threads, rows):
    be = get_backend("numpy", dtype="float64", seed=0)
    model = VAE(30, (20, 10), 4, "tanh", backend=be)
    x = (be.uniform((rows, 30)) < 0.5).astype(be.dtype)
    state = be.rng.bit_generator.state
    recon, kl = SplitBatchStep(model, threads).step(x, beta=0.7)
    split = {k: g.copy() for k, g in model.grads.items()}
    be.rng.bit_generator.state = state          # the serial step draws the same ε
    model.zero_grad()
    o = model.forward(x)
    model.backward(beta=0.7)
    # the same ε, so the same numbers up to the order of floating-point sums
    np.testing.assert_allclose(recon, o.recon, rtol=1e-12)
    np.testing.assert_allclose(kl, o.kl, rtol=1e-12)
    for k, g in model.grads.items():
        np.testing.assert_allclose(split[k], g, rtol=1e-12, atol=1e-15)


def test_replica_shares_weights_not_gradients():
    model = VAE(30, (20,), 4, backend=get_backend("numpy", seed=0))
    twin = make_replica(model)
    assert twin.encoder.layers[0].params["W"] is model.encoder.layers[0].params["W"]
    # every parameter, in the layers and in the flat dict, is the model's own array
    assert twin.params.keys() == model.params.keys()
    assert all(twin.params[k] is model.params[k] for k in model.params)
    assert all(twin.grads[k] is not model.grads[k] for k in model.grads)
    assert all(not np.shares_memory(twin.grads[k], model.grads[k]) for k in model.grads)


def test_training_with_split_batches_matches_serial_training():
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:1200], ds.y_train[:1200], ds.x_test[:200],
                    ds.y_test[:200])
    runs = [train_vae(VAEConfig(epochs=3, batch_size=512, hidden=(64,), latent_dim=8,
                                  threads=t, progress=False, out=None), dataset=small)
            for t in (1, 2)]
    for a, b in zip(runs[0]["history"], runs[1]["history"]):
        assert a["train_neg_elbo"] == pytest.approx(b["train_neg_elbo"], rel=1e-4)
    assert runs[0]["test"]["neg_elbo"] == pytest.approx(runs[1]["test"]["neg_elbo"], rel=1e-3)


def test_automatic_choice_and_errors():
    be = get_backend("numpy", seed=0)
    model = VAE(30, (20,), 4, backend=be)
    import os
    two = 2 if (os.cpu_count() or 1) >= 2 else 1
    assert resolve_threads(VAEConfig(batch_size=64), model) == 1
    assert resolve_threads(VAEConfig(batch_size=1024), model) == two
    assert resolve_threads(VAEConfig(batch_size=1024, threads=3), model) == 3
    learned = VAE(30, (20,), 4, likelihood="gaussian", backend=be)
    learned.likelihood.params["logvar"] = learned.likelihood.logvar  # as learn_logvar=True does
    assert resolve_threads(VAEConfig(batch_size=1024, likelihood="gaussian"), learned) == 1
    # splitter_for takes the resolved count: None and 1 are the serial step
    assert splitter_for(VAEConfig(batch_size=1024, threads=1), model) is None
    assert splitter_for(VAEConfig(batch_size=1024), model) is None
    assert len(splitter_for(VAEConfig(batch_size=64, threads=2), model).replicas) == 2
    with pytest.raises(ValueError, match="without parameters"):
        SplitBatchStep(learned, 2)
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        VAEConfig(threads=0).validate()


def _blas_threads():
    from threadpoolctl import threadpool_info
    return [p["num_threads"] for p in threadpool_info() if p["user_api"] == "blas"]


@pytest.mark.parametrize("threads", [1, 2])
def test_fit_holds_blas_at_one_thread_between_split_steps(threads, monkeypatch):
    """The epoch's test −ELBO between split steps runs on one BLAS thread, so that BLAS's
    own threads never start and spin on the blocks' cores; the serial step keeps BLAS's
    threads, and after training (the final evaluation) BLAS has them back."""
    from threadpoolctl import threadpool_limits
    from minivae.training import steps

    seen = {}
    end_epoch = steps.VAEStep.end_epoch

    def recording(self, epoch):
        seen[epoch] = _blas_threads()
        return end_epoch(self, epoch)

    monkeypatch.setattr(steps.VAEStep, "end_epoch", recording)
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:300], ds.y_train[:300], ds.x_test[:50],
                    ds.y_test[:50])
    with threadpool_limits(2, user_api="blas"):
        before = _blas_threads()
        train_vae(VAEConfig(epochs=2, batch_size=128, hidden=(32,), latent_dim=4,
                            threads=threads, progress=False, out=None), dataset=small)
        assert _blas_threads() == before              # given back after fit
    if not before:
        pytest.skip("threadpoolctl sees no BLAS library here")
    expected = [1] * len(before) if threads == 2 else before
    assert seen == {1: expected, 2: expected}


def test_adam_gets_two_threads_only_beside_the_split_step(monkeypatch):
    """Beside a serial step BLAS's own threads spin on the other cores after backward, so
    the trainer gives Adam one thread there; the split step holds BLAS, and Adam keeps 2."""
    from minivae.training import resources, train

    model = VAE(30, (20,), 4, backend=get_backend("numpy", seed=0))
    assert resources.optimizer_for(VAEConfig(), model).threads == 1
    assert resources.optimizer_for(VAEConfig(), model, split=True).threads is None  # 2 cores: 2
    assert resources.optimizer_for(VAEConfig(optimizer="sgd"), model).__class__.__name__ == "SGD"
    seen = []

    def recording(config, model, split=False):
        seen.append(split)
        return resources.optimizer_for(config, model, split=split)

    monkeypatch.setattr(train, "optimizer_for", recording)
    ds = load_dataset("mnist5k")
    small = Dataset("mnist5k", ds.x_train[:300], ds.y_train[:300], ds.x_test[:50],
                    ds.y_test[:50])
    for threads, extra in ((2, {}), (1, {}), (None, {"objective": "iwae", "k": 2})):
        train_vae(VAEConfig(epochs=1, batch_size=128, hidden=(16,), latent_dim=2,
                            threads=threads, progress=False, out=None, **extra), dataset=small)
    assert seen == [True, False, False]        # split; serial; IWAE never splits
