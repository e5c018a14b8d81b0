"""Optimizers against their update formulas written out by hand, and their input checks."""

import contextlib

import numpy as np
import pytest

from conftest import to_np
from minivae import fast
from minivae.optim import SGD, Adam, make_optimizer


def _quadratic(be):
    """f(θ) = ½ ‖θ − t‖², ∇f = θ − t."""
    theta = be.to_device([[3.0, -2.0], [0.5, 4.0]])
    target = be.to_device([[1.0, 1.0], [-1.0, 0.0]])
    grad = be.xp.zeros_like(theta)
    return {"w": theta}, {"w": grad}, target


def test_adam_matches_the_formula_for_three_steps(be64):
    params, grads, target = _quadratic(be64)
    theta = to_np(params["w"]).copy()
    m = v = np.zeros_like(theta)
    opt = Adam(params, grads, lr=0.1, betas=(0.8, 0.9), eps=1e-8)
    for t in range(1, 4):
        g = theta - to_np(target)
        m = 0.8 * m + 0.2 * g
        v = 0.9 * v + 0.1 * g * g
        theta = theta - 0.1 * (m / (1 - 0.8 ** t)) / (np.sqrt(v / (1 - 0.9 ** t)) + 1e-8)
        grads["w"][...] = params["w"] - target
        opt.step()
        np.testing.assert_allclose(to_np(params["w"]), theta, rtol=1e-12)
    assert opt.t == 3


def test_adam_first_step_moves_each_coordinate_by_lr(be64):
    params, grads, target = _quadratic(be64)
    before = to_np(params["w"]).copy()
    grads["w"][...] = params["w"] - target
    Adam(params, grads, lr=0.01).step()
    np.testing.assert_allclose(np.abs(to_np(params["w"]) - before), 0.01, rtol=1e-6)


def test_sgd_momentum_matches_the_formula(be64):
    params, grads, target = _quadratic(be64)
    theta = to_np(params["w"]).copy()
    vel = np.zeros_like(theta)
    opt = SGD(params, grads, lr=0.1, momentum=0.5)
    for _ in range(3):
        vel = 0.5 * vel + (theta - to_np(target))
        theta = theta - 0.1 * vel
        grads["w"][...] = params["w"] - target
        opt.step()
        np.testing.assert_allclose(to_np(params["w"]), theta, rtol=1e-12)


@pytest.mark.parametrize("name", ["adam", "sgd"])
def test_optimizers_minimize_a_quadratic_in_place(be64, name):
    params, grads, target = _quadratic(be64)
    w = params["w"]
    opt = make_optimizer(name, params, grads, lr=0.05)
    for _ in range(500):
        grads["w"][...] = params["w"] - target
        opt.step()
    assert params["w"] is w  # updated in place: the model's own array
    np.testing.assert_allclose(to_np(w), to_np(target), atol=1e-3)


def test_state_dict_round_trip(be64):
    params, grads, target = _quadratic(be64)
    opt = Adam(params, grads, lr=0.1)
    grads["w"][...] = params["w"] - target
    opt.step()
    state = {k: (v.copy() if hasattr(v, "copy") else v) for k, v in opt.state_dict().items()}
    params2, grads2, _ = _quadratic(be64)
    opt2 = Adam(params2, grads2, lr=0.1)
    opt2.load_state_dict(state)
    assert opt2.t == 1
    np.testing.assert_array_equal(to_np(opt2.m["w"]), to_np(opt.m["w"]))


@pytest.mark.parametrize("lr", [0, -1e-3, float("nan"), float("inf"), True])
def test_non_positive_learning_rate_is_rejected(be64, lr):
    params, grads, _ = _quadratic(be64)
    with pytest.raises(ValueError, match="lr must be a positive finite number"):
        Adam(params, grads, lr=lr)


def test_other_bad_arguments(be64):
    params, grads, _ = _quadratic(be64)
    with pytest.raises(ValueError, match="momentum must be in"):
        SGD(params, grads, lr=0.1, momentum=1.0)
    with pytest.raises(ValueError, match="beta1 must be in"):
        Adam(params, grads, betas=(1.0, 0.9))
    with pytest.raises(ValueError, match="same keys"):
        Adam(params, {"v": grads["w"]})
    with pytest.raises(ValueError, match="unknown optimizer 'rmsprop'"):
        make_optimizer("rmsprop", params, grads, lr=0.1)


def _adam_as_written(p, g, m, v, t, lr, beta1, beta2, eps):
    """Kingma & Ba's Algorithm 1, one step, new arrays: the test's own copy of the formula."""
    m = beta1 * m + (1 - beta1) * g
    v = beta2 * v + (1 - beta2) * g * g
    return p - lr * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps), m, v


@pytest.mark.parametrize("formula", [False, True], ids=["fast twin", "formula"])
def test_adam_step_equals_the_paper_over_many_steps(be64, formula):
    """Adam.step, as its fast twin (folded bias corrections, scratch buffers, fused on CuPy)
    and as the formula the library writes (minivae.fast.formulas_only), against the paper."""
    shapes = {"W": (7, 5), "b": (5,)}
    params = {k: be64.standard_normal(s) for k, s in shapes.items()}
    grads = {k: be64.xp.zeros(s) for k, s in shapes.items()}
    ref = {k: (to_np(p).copy(), np.zeros(s), np.zeros(s)) for (k, p), s in
           zip(params.items(), shapes.values())}
    opt = Adam(params, grads, lr=0.01, betas=(0.8, 0.95), eps=1e-6)
    rng = np.random.default_rng(0)
    with fast.formulas_only() if formula else contextlib.nullcontext():
        for t in range(1, 51):
            for k in params:
                g = rng.standard_normal(shapes[k]) * 10.0 ** rng.integers(-4, 2)
                grads[k][...] = be64.to_device(g)
                p, m, v = ref[k]
                ref[k] = _adam_as_written(p, g, m, v, t, 0.01, 0.8, 0.95, 1e-6)
            opt.step()
    assert opt.t == 50
    for k in params:
        np.testing.assert_allclose(to_np(params[k]), ref[k][0], rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(to_np(opt.m[k]), ref[k][1], rtol=1e-12, atol=1e-300)
        np.testing.assert_allclose(to_np(opt.v[k]), ref[k][2], rtol=1e-12, atol=1e-300)


def test_the_formula_is_what_runs_inside_formulas_only(monkeypatch):
    """formulas_only() really bypasses the twin: a twin that breaks the update is not called."""
    params = {"w": np.ones(3)}
    grads = {"w": np.ones(3)}
    monkeypatch.setitem(fast._TWINS["adam_step"], "numpy", lambda opt: None)
    Adam(params, grads, lr=0.1).step()
    assert params["w"].tolist() == [1.0, 1.0, 1.0]          # the (broken) twin ran
    with fast.formulas_only():
        Adam(params, grads, lr=0.1).step()
    np.testing.assert_allclose(params["w"], 0.9)            # the formula ran


def test_two_threads_give_bit_identical_updates():
    from minivae.backend import get_backend
    from minivae.models.vae import VAE

    results = []
    for threads in (1, 2):
        be = get_backend("numpy", seed=3)
        model = VAE(30, (20,), 4, backend=be)
        opt = Adam(model.params, model.grads, lr=1e-2, threads=threads)
        x = (be.uniform((16, 30)) < 0.5).astype(be.dtype)
        for _ in range(5):
            model.zero_grad()
            model.forward(x)
            model.backward()
            opt.step()
        assert len(opt._workspace.shares) == threads
        results.append({k: p.copy() for k, p in model.params.items()})
    for k in results[0]:
        assert np.array_equal(results[0][k], results[1][k]), k


def test_the_flat_update_gives_the_bits_of_the_update_per_parameter():
    """A packed model's Adam runs over the flat arrays (one item per thread); the same model
    with its parameters in separate arrays runs per parameter: the same bits either way."""
    from minivae.backend import get_backend
    from minivae.models.vae import VAE

    results = []
    for flat in (True, False):
        be = get_backend("numpy", seed=3)
        model = VAE(30, (20,), 4, backend=be)
        params, grads = model.params, model.grads
        if not flat:                       # separate copies, the model's dicts left alone
            params = {k: p.copy() for k, p in model.params.items()}
        opt = Adam(params, grads, lr=1e-2, threads=2)
        if not flat:
            opt.m = {k: np.zeros_like(p) for k, p in params.items()}
            opt.v = {k: np.zeros_like(p) for k, p in params.items()}
        rng = np.random.default_rng(0)
        for _ in range(5):
            for g in grads.values():
                g[...] = rng.standard_normal(g.shape)
            opt.step()
        items = [len(share) for share in opt._workspace.shares]
        assert items == [1, 1] if flat else sum(items) == len(params), items
        results.append({k: p.copy() for k, p in params.items()})
    for k in results[0]:
        assert np.array_equal(results[0][k], results[1][k]), k


def test_balanced_groups_split_by_size():
    from minivae.fast import _balanced_groups

    params = {"a": np.zeros(100), "b": np.zeros(60), "c": np.zeros(50), "d": np.zeros(5)}
    groups = _balanced_groups(params, 2)
    assert sorted(sum(groups, [])) == ["a", "b", "c", "d"]
    sizes = sorted(sum(params[k].size for k in g) for g in groups)
    assert sizes == [105, 110]
    assert _balanced_groups({}, 2) == [[]]
    with pytest.raises(ValueError, match="threads must be a positive integer"):
        Adam(params, {k: np.zeros_like(v) for k, v in params.items()}, threads=0)
    with pytest.raises(ValueError, match="unknown fast twin 'softmax'"):
        fast.twin("softmax")
