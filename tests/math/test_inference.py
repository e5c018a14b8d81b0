r"""The grid posterior: log p(x) = ELBO + KL(q(z|x) ‖ p(z|x)), checked three ways.

1. A linear-Gaussian decoder, where everything has a closed form: p(x) is normal,
   p(z|x) is normal, so the grid's log p(x) and KL(q ‖ p(z|x)) must match
   scipy.stats and :func:`minivae.kl.kl_mvn`.
2. A small VAE (untrained, float64), where the identity must hold to the grid's
   error on q alone (about 1e-9, see minivae/inference.py), and log p(x) and the
   ELBO must match Monte Carlo estimates within 5 standard errors.
3. Bad input.
"""

import math

import numpy as np
import pytest
from scipy import stats

from minivae.backend import get_backend
from minivae.inference import float64_copy, posterior_grid, vae_log_likelihood, vae_posterior_grid
from minivae.kl import kl_mvn
from minivae.models.vae import VAE

# ---------------------------------------------------------------------------
# 1. Linear-Gaussian: p(z) = N(0, I), p(x|z) = N(W z + b, s² I)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def linear_gaussian():
    rng = np.random.default_rng(0)
    D, s2 = 5, 0.3
    W = rng.standard_normal((D, 2))
    b = rng.standard_normal(D)
    x = W @ np.array([0.7, -1.2]) + b + math.sqrt(s2) * rng.standard_normal(D)
    # Exact posterior: precision I + WᵀW/s², mean S Wᵀ(x − b)/s²
    S = np.linalg.inv(np.eye(2) + W.T @ W / s2)
    m = S @ W.T @ (x - b) / s2
    log_px = stats.multivariate_normal(b, W @ W.T + s2 * np.eye(D)).logpdf(x)

    def log_lik(Z):
        r = x - (Z @ W.T + b)
        return -0.5 * (D * math.log(2 * math.pi * s2) + (r * r).sum(axis=1) / s2)

    # A diagonal q near (not at) the posterior: the KL to p(z|x) is positive
    mu_q, logvar_q = m + np.array([0.05, -0.1]), np.log(0.8 * np.diag(S))
    return dict(log_lik=log_lik, m=m, S=S, log_px=log_px, mu_q=mu_q, logvar_q=logvar_q)


def test_linear_gaussian_grid_matches_the_closed_forms(linear_gaussian):
    """Tolerance 1e-8: the posterior is Gaussian, the box holds it to e^{−30} of its peak
    density (mass outside ~1e-13) and cells are ~σ/20 wide, where the midpoint rule's
    error on a Gaussian is ~exp(−2π²·400)."""
    lg = linear_gaussian
    g = posterior_grid(lg["log_lik"], lg["mu_q"], lg["logvar_q"], n=301)
    exact_kl = float(kl_mvn(lg["mu_q"], np.diag(np.exp(lg["logvar_q"])), lg["m"], lg["S"]))
    assert g.log_px == pytest.approx(lg["log_px"], abs=1e-8)
    assert g.kl_q_posterior == pytest.approx(exact_kl, abs=1e-8)
    assert exact_kl > 0.05
    assert g.elbo == pytest.approx(lg["log_px"] - exact_kl, abs=1e-8)
    assert abs(g.elbo + g.kl_q_posterior - g.log_px) < 1e-9
    assert g.posterior_edge_mass < 1e-12 and g.q_mass == pytest.approx(1, abs=1e-12)


def test_linear_gaussian_posterior_table_is_the_exact_density(linear_gaussian):
    lg = linear_gaussian
    g = posterior_grid(lg["log_lik"], lg["mu_q"], lg["logvar_q"], n=101)
    exact = stats.multivariate_normal(lg["m"], lg["S"]).logpdf(
        np.stack(np.meshgrid(g.post.z1, g.post.z2), -1))
    np.testing.assert_allclose(g.log_posterior, exact, atol=1e-8)


# ---------------------------------------------------------------------------
# 2. A small VAE
# ---------------------------------------------------------------------------

def test_a_full_q_at_the_tilted_posterior_closes_the_gap_a_diagonal_q_cannot(linear_gaussian):
    """The linear-Gaussian posterior N(m, S) is tilted (S has off-diagonal terms).  A full q
    with L = chol(S) is that posterior: KL(q ‖ p(z|x)) = 0 and ELBO = log p(x) on the grid.
    The best diagonal q (the precision's diagonal, the KL(q‖p)-optimal choice) stays short."""
    lg = linear_gaussian
    L = np.linalg.cholesky(lg["S"])
    assert abs(L[1, 0]) > 0.05 * L[1, 1]                     # really tilted
    full = posterior_grid(lg["log_lik"], lg["m"], 2 * np.log(np.diag(L)), n=301,
                          tril_q=L[1, 0])
    np.testing.assert_allclose(full.scale_q, L, rtol=1e-14)
    assert abs(full.kl_q_posterior) < 1e-8
    assert full.elbo == pytest.approx(lg["log_px"], abs=1e-8)
    best_diag_var = 1 / np.diag(np.linalg.inv(lg["S"]))
    diag = posterior_grid(lg["log_lik"], lg["m"], np.log(best_diag_var), n=301)
    closed = kl_mvn(lg["m"], np.diag(best_diag_var), lg["m"], lg["S"])
    assert diag.kl_q_posterior == pytest.approx(float(closed), rel=1e-6) and closed > 1e-3


@pytest.fixture(scope="module")
def small_full_vae():
    be = get_backend("numpy", dtype="float64", seed=3)
    model = VAE(input_dim=12, hidden=(8,), latent_dim=2, backend=be, posterior="full")
    for k, p in model.params.items():
        if k.startswith("decoder"):
            p *= 3.0
    from minivae.models.posterior import TRIL_SCALE
    lean = np.random.default_rng(2).normal(size=(8, 1)) / TRIL_SCALE        # a visible lean
    model.params["tril_head.W"][...] = lean
    x = (np.random.default_rng(1).random(12) < 0.5).astype(np.float64)
    return model, x


def test_identity_and_importance_weighting_with_a_full_posterior(small_full_vae):
    from minivae.evaluate import iw_log_likelihood

    model, x = small_full_vae
    g = vae_posterior_grid(model, x, n=301)
    assert abs(g.tril_q) > 0.05
    s = g.summary()
    assert abs(s["identity_residual"]) < 1e-9 and s["kl_q_posterior"] > 0
    # importance weighting from the full q converges to the grid's log p(x)
    log_px = iw_log_likelihood(model, np.repeat(x[None], 20, axis=0), k=5000)
    se = log_px.std(ddof=1) / math.sqrt(len(log_px))
    assert abs(log_px.mean() - g.log_px) < 5 * se + 1e-3, (log_px.mean(), g.log_px, se)


@pytest.fixture(scope="module")
def small_vae():
    be = get_backend("numpy", dtype="float64", seed=3)
    model = VAE(input_dim=12, hidden=(8,), latent_dim=2, backend=be)
    for k, p in model.params.items():        # sharpen the decoder: a posterior unlike the prior
        if k.startswith("decoder"):
            p *= 3.0
    x = (np.random.default_rng(1).random(12) < 0.5).astype(np.float64)
    return model, x


def test_identity_log_px_equals_elbo_plus_kl_on_a_small_vae(small_vae):
    """ELBO + KL − log p(x) is the grid's error on integrals of the Gaussian q alone
    (minivae/inference.py): ≤ 1e-9 with q's ±8σ inside the box and ≥ 1 cell per σ."""
    model, x = small_vae
    g = vae_posterior_grid(model, x, n=301)
    s = g.summary()
    assert s["q_grid"]["cells_per_sigma_q"] >= 1
    assert abs(s["identity_residual"]) < 1e-9
    assert s["kl_q_posterior"] > 0.01 and s["elbo"] < s["log_px"]
    assert s["posterior_edge_mass"] < 1e-9


def test_log_px_is_stable_under_refinement(small_vae):
    """The posterior of a ReLU decoder has kinks, so the midpoint rule is O(h²) there:
    301 and 451 cells per axis on the same box agree to 4e-6 (measured); allow 2e-5.
    (E_q[log p(x|z)] on q's much wider box converges more slowly, ~3e-4 here, where q
    is far from the posterior; the Monte Carlo test below checks it.)"""
    model, x = small_vae
    g = vae_posterior_grid(model, x, n=301)
    finer = vae_posterior_grid(model, x, n=451, n_q=301, box=g.post.box)
    assert finer.log_px == pytest.approx(g.log_px, abs=2e-5)
    assert finer.posterior_edge_mass < 1e-9


def test_log_px_and_elbo_match_monte_carlo(small_vae):
    """log p(x) = log E_{p(z)}[p(x|z)] and ELBO = E_q[log p(x|z)] − KL(q ‖ p(z)), estimated
    from 200,000 draws each; tolerance 5 standard errors (the log of the mean by the delta
    method: se(log m̂) = se(m̂)/m̂)."""
    model, x = small_vae
    g = vae_posterior_grid(model, x, n=301)
    n = 200_000
    rng = np.random.default_rng(7)
    w = np.exp(vae_log_likelihood(model, x)(rng.standard_normal((n, 2))))   # p(x|z), z ~ p(z)
    se_log = w.std(ddof=1) / math.sqrt(n) / w.mean()
    assert abs(g.log_px - math.log(w.mean())) <= 5 * se_log
    out = model.forward(np.repeat(x[None], n, axis=0), eps=model.backend.to_device(
        rng.standard_normal((n, 2))))
    elbo_samples = -(out.recon + out.kl)                  # the VAE's own one-sample ELBO
    se = elbo_samples.std(ddof=1) / math.sqrt(n)
    assert abs(g.elbo - elbo_samples.mean()) <= 5 * se


def test_a_float32_model_is_evaluated_in_float64():
    be = get_backend("numpy", dtype="float32", seed=0)
    model = VAE(input_dim=6, hidden=(5,), latent_dim=2, backend=be)
    twin = float64_copy(model)
    assert twin.backend.dtype == np.float64 and twin is not model
    for k in model.params:
        np.testing.assert_array_equal(twin.params[k], model.params[k].astype(np.float64))
    x = np.array([1, 0, 1, 1, 0, 0], dtype=np.float64)
    assert vae_posterior_grid(model, x, n=61).log_px == pytest.approx(
        vae_posterior_grid(twin, x, n=61).log_px, abs=1e-12)


# ---------------------------------------------------------------------------
# 3. Bad input
# ---------------------------------------------------------------------------

def test_only_a_two_dimensional_latent_is_tabulated():
    be = get_backend("numpy", dtype="float64")
    model = VAE(input_dim=4, hidden=(3,), latent_dim=3, backend=be)
    with pytest.raises(ValueError, match="latent_dim 2, got 3"):
        vae_posterior_grid(model, np.zeros(4))
    with pytest.raises(ValueError, match="2-D latent"):
        posterior_grid(lambda Z: np.zeros(len(Z)), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="n must be an integer"):
        posterior_grid(lambda Z: np.zeros(len(Z)), np.zeros(2), np.zeros(2), n=1)


# ---------------------------------------------------------------------------
# 4. The example, end to end, small
# ---------------------------------------------------------------------------

def test_the_example_writes_its_figure_and_numbers(tmp_path, capsys):
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "approximate_inference.py"
    main = runpy.run_path(str(script), run_name="approximate_inference")["main"]
    assert main(["--epochs", "1", "--digits", "2", "--grid", "61", "--out", str(tmp_path)]) == 0
    for name in ("posterior.png", "posterior_full.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    numbers = json.loads((tmp_path / "numbers.json").read_text())
    assert set(numbers["runs"]) == {"diagonal", "full"}
    for family, run in numbers["runs"].items():
        assert len(run["digits"]) == 2
        for d in run["digits"]:
            assert abs(d["identity_residual"]) < 1e-8 and d["kl_q_posterior"] > 0
            assert (d["tril_q"] == 0) == (family == "diagonal")
    out = capsys.readouterr().out
    assert "ELBO+KL−log p(x)" in out and "side by side" not in out and "full q" in out


def test_the_examples_convergence_check_always_uses_another_grid(tmp_path):
    """--grid 30 checked the grid against itself (max(30, 20) = 30): a change of exactly 0."""
    import json
    import runpy
    from pathlib import Path

    script = Path(__file__).resolve().parents[2] / "examples" / "approximate_inference.py"
    ns = runpy.run_path(str(script), run_name="approximate_inference")
    sizes = {n: ns["check_grid_size"](n) for n in range(30, ns["MAX_GRID"] + 1)}
    assert all(m < n for n, m in sizes.items()) and sizes[30] == 20 and sizes[45] == 30
    assert ns["main"](["--epochs", "1", "--digits", "1", "--grid", "30", "--posterior",
                       "diagonal", "--out", str(tmp_path)]) == 0
    d = json.loads((tmp_path / "numbers.json").read_text())["runs"]["diagonal"]["digits"][0]
    assert d["grid_change_log_px"] != 0.0
