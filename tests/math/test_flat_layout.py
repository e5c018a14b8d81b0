"""The flat layout: a model's parameters in one array, its gradients in another.

Module.pack_parameters lays them out so (the models call it in their constructors), Adam
lays out its moments the same way, and fast.tiled finds the one array behind a dict, which
the Adam twins update in one pass (one launch on a GPU) instead of one per parameter.
"""

import numpy as np
import pytest

from conftest import to_np
from minivae import fast
from minivae.backend import get_backend
from minivae.layers import MLP
from minivae.likelihoods import Gaussian
from minivae.models.autoencoder import Autoencoder
from minivae.models.vae import VAE
from minivae.optim import Adam


def _flat(arrays: dict):
    return fast.tiled(arrays.values())


@pytest.mark.parametrize("make", [
    lambda be: VAE(12, (7, 5), 3, backend=be),
    lambda be: VAE(12, (7,), 3, backend=be, posterior="full"),
    lambda be: VAE(12, (7,), 3, backend=be,
                   likelihood=Gaussian(learn_logvar=True, backend=be)),
    lambda be: Autoencoder(12, (7,), 3, backend=be),
], ids=["vae", "vae-full", "vae-gaussian-learned", "autoencoder"])
def test_every_model_keeps_its_parameters_and_gradients_in_one_array_each(make):
    model = make(get_backend("numpy", dtype="float64", seed=0))
    params, grads = _flat(model.params), _flat(model.grads)
    assert params is not None and grads is not None
    assert params.size == grads.size == model.num_params()
    assert not np.shares_memory(params, grads)
    for module in model.modules_within():          # every sub-module holds the same views
        for name, arrays in (("params", module.params), ("grads", module.grads)):
            for a in arrays.values():
                assert any(a is b for b in getattr(model, name).values()), (module, name)


def test_packing_keeps_every_value_and_the_forward_pass():
    be = get_backend("numpy", dtype="float64", seed=1)
    mlp = MLP([5, 4, 3], "tanh", be)
    assert _flat(mlp.params) is None                   # an MLP alone is not packed
    before = {k: p.copy() for k, p in mlp.params.items()}
    x = be.standard_normal((6, 5))
    y = mlp.forward(x).copy()
    layers = [layer for layer in mlp.layers if layer.params]
    assert mlp.pack_parameters() is mlp
    flat = _flat(mlp.params)
    assert flat is not None and flat.size == sum(p.size for p in before.values())
    for k, p in mlp.params.items():
        np.testing.assert_array_equal(p, before[k])
    np.testing.assert_array_equal(mlp.forward(x), y)
    assert layers[0].params["W"] is mlp.params["0.W"]  # the layer computes with the view
    flat[:] = 0.5                                      # so a write to the flat array reaches it
    assert (layers[1].params["b"] == 0.5).all()
    mlp.backward(be.standard_normal((6, 3)))           # and backward writes into the flat grads
    assert np.abs(_flat(mlp.grads)).sum() > 0


def test_the_learned_gaussian_variance_is_a_view_that_adam_moves():
    be = get_backend("numpy", dtype="float64", seed=2)
    model = VAE(6, (4,), 2, backend=be, likelihood=Gaussian(learn_logvar=True, backend=be))
    assert model.likelihood.logvar is model.params["likelihood.logvar"]
    opt = Adam(model.params, model.grads, lr=0.1)
    model.forward(be.uniform((5, 6)))
    model.backward()
    opt.step()
    assert float(model.likelihood.logvar[0]) != 0.0    # the step reached the array it reads


def test_tiled_finds_only_arrays_that_cover_one_array_end_to_end_in_order():
    flat = np.arange(10.0)
    a, b = flat[:4].reshape(2, 2), flat[4:]
    assert fast.tiled([a, b]) is flat
    assert fast.tiled([b, a]) is None                  # out of order
    assert fast.tiled([a]) is None                     # does not reach the end
    assert fast.tiled([flat[:4], flat[5:]]) is None    # a gap
    assert fast.tiled([flat[:4], flat[3:]]) is None    # an overlap
    assert fast.tiled([np.zeros(4), np.zeros(6)]) is None
    square = np.arange(9.0)
    assert fast.tiled([square.reshape(3, 3).T]) is None  # not C-contiguous
    assert fast.tiled([]) is None


def test_flat_like_copies_or_zeros_and_keeps_mixed_dtypes_apart():
    arrays = {"W": np.ones((2, 3)), "b": np.full(3, 2.0)}
    copies = fast.flat_like(arrays)
    assert fast.tiled(copies.values()) is not None
    assert copies["W"].shape == (2, 3) and (copies["b"] == 2).all()
    zeros = fast.flat_like(arrays, copy=False)
    assert fast.tiled(zeros.values()) is not None and not zeros["W"].any()
    mixed = fast.flat_like({"a": np.ones(2), "b": np.ones(2, dtype=np.float32)})
    assert fast.tiled(mixed.values()) is None
    assert mixed["b"].dtype == np.float32 and (mixed["a"] == 1).all()


def test_flat_like_and_tiled_refuse_what_is_not_arrays():
    with pytest.raises(TypeError, match="dict of arrays, got list"):
        fast.flat_like([np.zeros(2)])
    with pytest.raises(TypeError, match="some values are not arrays"):
        fast.flat_like({"a": [1.0, 2.0]})
    with pytest.raises(TypeError, match="some items are not arrays"):
        fast.tiled([np.zeros(2), 3.0])


def test_adam_lays_out_its_moments_as_the_model_lays_out_its_parameters():
    model = VAE(8, (5,), 2, backend=get_backend("numpy", seed=0))
    opt = Adam(model.params, model.grads)
    for moments in (opt.m, opt.v):
        assert _flat(moments) is not None
        assert [a.shape for a in moments.values()] == [p.shape for p in model.params.values()]


def test_the_gpu_adam_of_a_packed_model_is_one_launch(cupy_kernels, monkeypatch):
    """One launch over the flat arrays, and the same update as one launch per parameter."""
    launches = []
    kernel = cupy_kernels("adam")
    monkeypatch.setattr(fast, "_compiled",
                        lambda name: (lambda *a: launches.append(a) or kernel(*a)))
    results = []
    for packed in (True, False):
        be = get_backend("cupy", dtype="float64", seed=0)
        model = VAE(8, (5,), 2, backend=be)
        params = model.params if packed else {k: p.copy() for k, p in model.params.items()}
        opt = Adam(params, model.grads, lr=0.01)
        if not packed:
            opt.m = {k: be.xp.zeros_like(p) for k, p in params.items()}
            opt.v = {k: be.xp.zeros_like(p) for k, p in params.items()}
        for g in model.grads.values():
            g[...] = be.standard_normal(g.shape)
        del launches[:]
        opt.step()
        assert len(launches) == (1 if packed else len(params))
        results.append({k: to_np(p) for k, p in params.items()})
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k])
