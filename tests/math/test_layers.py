"""Layers: every backward pass against central differences in float64, on every backend."""

import numpy as np
import pytest

from conftest import to_np
from minivae.backend import get_backend
from minivae.gradcheck import check_module
from minivae.layers import (ACTIVATIONS, MLP, Dense, LeakyReLU, ReLU, Sigmoid, Softplus, Tanh,
                            make_activation, sigmoid, softplus)

TOL = 1e-6


def _input(be, shape=(6, 5)):
    x = be.standard_normal(shape)
    # keep ReLU inputs away from the kink at 0, where the derivative jumps
    return x + 0.1 * be.xp.sign(x)


@pytest.mark.parametrize("make", [
    lambda be: Dense(5, 4, be),
    lambda be: Dense(5, 4, be, init="he"),
    lambda be: ReLU(), lambda be: LeakyReLU(0.2), lambda be: Tanh(),
    lambda be: Sigmoid(), lambda be: Softplus(),
    lambda be: MLP([5, 7, 3], "relu", be),
    lambda be: MLP([5, 4, 4, 2], "tanh", be, final_activation="sigmoid"),
], ids=["dense", "dense-he", "relu", "leaky_relu", "tanh", "sigmoid", "softplus", "mlp-relu",
        "mlp-tanh-sigmoid"])
def test_backward_matches_central_differences(be64, make):
    module = make(be64)
    errors = check_module(module, _input(be64))
    assert max(errors.values()) <= TOL, errors


def test_gradcheck_catches_a_wrong_backward(be64):
    class BrokenDense(Dense):
        def backward(self, dy):
            dx = super().backward(dy)
            self.grads["W"] *= 1.01  # a 1 % error in ∂L/∂W
            return dx

    errors = check_module(BrokenDense(5, 4, be64), _input(be64))
    assert errors["W"] > 1e-3 and errors["x"] <= TOL


def test_gradients_accumulate_until_zeroed(be64):
    layer = Dense(3, 2, be64)
    x, dy = be64.standard_normal((4, 3)), be64.standard_normal((4, 2))
    layer.forward(x)
    layer.backward(dy)
    once = to_np(layer.grads["W"]).copy()
    layer.backward(dy)
    np.testing.assert_allclose(to_np(layer.grads["W"]), 2 * once, rtol=1e-12)
    layer.zero_grad()
    assert not to_np(layer.grads["W"]).any()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_write_grads_writes_the_gradients_over_anything(backend_name, dtype):
    """backward under write_grads must equal zero_grad + backward, whatever the arrays held."""
    be = get_backend(backend_name, dtype=dtype, seed=5)
    mlp = MLP([5, 4, 3], "relu", be)
    x, dy = _input(be), be.standard_normal((6, 3))
    mlp.forward(x)
    mlp.zero_grad()
    dx_ref = to_np(mlp.backward(dy))
    ref = {k: to_np(g).copy() for k, g in mlp.grads.items()}
    for g in mlp.grads.values():
        g.fill(float("nan"))                       # stale garbage must not leak through
    mlp.for_training()
    assert all(layer.write_grads for layer in mlp.layers)      # every sub-module follows
    dx = to_np(mlp.backward(dy))
    mlp.for_training(write_grads=False, check_values=True)
    np.testing.assert_array_equal(dx, dx_ref)
    for k, g in mlp.grads.items():
        np.testing.assert_allclose(to_np(g), ref[k], rtol=1e-6 if be.dtype == np.float32 else 1e-14,
                                   err_msg=k)
    mlp.backward(dy)                               # and the default still adds on top
    for k, g in mlp.grads.items():
        np.testing.assert_allclose(to_np(g), 2 * ref[k], rtol=1e-5 if be.dtype == np.float32 else 1e-13,
                                   err_msg=k)


def test_dense_stores_weights_in_out_and_computes_affine_map(be64):
    layer = Dense(3, 2, be64)
    assert layer.params["W"].shape == (3, 2) and layer.params["b"].shape == (2,)
    x = be64.standard_normal((4, 3))
    expected = to_np(x) @ to_np(layer.params["W"]) + to_np(layer.params["b"])
    np.testing.assert_allclose(to_np(layer.forward(x)), expected, rtol=1e-12)


def test_glorot_and_he_init_ranges(be32):
    glorot = to_np(Dense(300, 100, be32).params["W"])
    he = to_np(Dense(300, 100, be32, init="he").params["W"])
    a_glorot, a_he = np.sqrt(6 / 400), np.sqrt(6 / 300)
    assert glorot.dtype == np.float32
    assert np.abs(glorot).max() <= a_glorot and np.abs(glorot).max() > 0.95 * a_glorot
    # U(-a, a) has variance a²/3
    assert abs(he.var() / (a_he ** 2 / 3) - 1) < 0.05


def test_activations_values(be64):
    x = be64.to_device([[-2.0, -0.5, 0.5, 3.0]])
    xn = to_np(x)
    np.testing.assert_allclose(to_np(ReLU().forward(x)), np.maximum(xn, 0))
    np.testing.assert_allclose(to_np(LeakyReLU(0.1).forward(x)), np.where(xn > 0, xn, 0.1 * xn))
    np.testing.assert_allclose(to_np(Tanh().forward(x)), np.tanh(xn))
    np.testing.assert_allclose(to_np(Sigmoid().forward(x)), 1 / (1 + np.exp(-xn)))
    np.testing.assert_allclose(to_np(Softplus().forward(x)), np.log1p(np.exp(xn)))


def test_sigmoid_and_softplus_are_stable_for_huge_inputs():
    x = np.array([-1000.0, -40.0, 0.0, 40.0, 1000.0])
    with np.errstate(over="raise", invalid="raise", divide="raise"):
        s, sp = sigmoid(x), softplus(x)
    np.testing.assert_allclose(s, [0.0, np.exp(-40.0), 0.5, 1.0, 1.0], rtol=1e-12, atol=0)
    np.testing.assert_allclose(sp, [0.0, np.exp(-40.0), np.log(2), 40.0, 1000.0], rtol=1e-12, atol=0)


def test_activations_keep_float32(be32):
    x = be32.standard_normal((3, 4))
    for name in ACTIVATIONS:
        act = make_activation(name)
        assert act.forward(x).dtype == np.float32, name
        assert act.backward(x).dtype == np.float32, name


def test_mlp_structure_and_param_names(be32):
    mlp = MLP([784, 400, 20], "relu", be32)
    assert [type(l).__name__ for l in mlp.layers] == ["Dense", "ReLU", "Dense"]
    assert set(mlp.params) == {"0.W", "0.b", "2.W", "2.b"} == set(mlp.grads)
    assert mlp.params["0.W"] is mlp.layers[0].params["W"]  # the same array, not a copy
    assert mlp.num_params() == 784 * 400 + 400 + 400 * 20 + 20


def test_bad_construction_and_order_errors(be32):
    with pytest.raises(ValueError, match="n_in must be a positive integer"):
        Dense(0, 3, be32)
    with pytest.raises(ValueError, match="unknown activation 'swish'"):
        make_activation("swish")
    with pytest.raises(ValueError, match="at least an input and an output"):
        MLP([5], "relu", be32)
    with pytest.raises(RuntimeError, match="before forward"):
        Dense(2, 2, be32).backward(be32.zeros((1, 2)))
    with pytest.raises(ValueError, match="alpha"):
        LeakyReLU(1.5)


def test_need_dx_false_skips_only_the_input_gradient(be64):
    mlp = MLP([5, 4, 3], "relu", be64)
    x, dy = _input(be64), be64.standard_normal((6, 3))
    mlp.forward(x)
    assert mlp.backward(dy) is not None
    full = {k: to_np(g).copy() for k, g in mlp.grads.items()}
    mlp.zero_grad()
    mlp.forward(x)
    assert mlp.backward(dy, need_dx=False) is None
    for k, g in mlp.grads.items():
        np.testing.assert_array_equal(to_np(g), full[k])
