"""Every line of the VAE's backward, checked in front of the reader: the lecture's board work, runnable.

    python examples/derivation.py

On a tiny VAE in float64 (D = 6 pixels, H = 5 hidden units, d = 3 latent
dimensions, B = 4 examples, ε held fixed) this walks the backward pass of
``minivae/models/vae.py`` (and of ``minivae/models/iwae.py``) one line at a
time: each line calls what that line of the library calls, and prints the
line's formula, one entry of what the code computes, the same entry by central
differences of the loss seen as a function of that line's variable, and the
largest relative disagreement over all entries, ‖code − numeric‖ / (‖code‖ + ‖numeric‖).
At the end the gradients of the walk are compared with the library's own
``backward``: they must be the same bits.

Three walks: the ELBO with a diagonal q(z|x) = N(μ, diag σ²), the ELBO with a
full-covariance q = N(μ, C Cᵀ), C = diag(σ) + T, and the IWAE bound with k = 3.
Correct lines agree to about 1e-8 (the T head's small gradients to 3e-7); a wrong
line is off by O(1).
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

from minivae.backend import get_backend
from minivae.gradcheck import numerical_gradient, relative_error
from minivae.models.iwae import IWAEObjective
from minivae.models.posterior import TRIL_SCALE, Posterior
from minivae.models.vae import VAE
from minivae.numerics import log_mean_exp, log_normal_std

D, H, d, B, K = 6, 5, 3, 4, 3
BETA = 0.7          # any β: the walk checks the β-weighted loss
#: Central differences with h = 1e-6 agree with a correct line to ~1e-8 here (see
#: minivae/gradcheck.py), the T head's weights to ~3e-7 (their gradients are 100 times
#: smaller, c = 0.01, so the rounding of the differences weighs more); a wrong line is
#: off by O(1).
TOLERANCE = 1e-6


def _setup(posterior: str, seed: int = 7):
    be = get_backend("numpy", dtype="float64", seed=seed)
    model = VAE(D, (H,), d, "tanh", backend=be, posterior=posterior)
    if model.tril_head is not None:             # T starts at 0; give it values worth checking
        for p in model.tril_head.params.values():
            p[...] = 10 * be.standard_normal(p.shape)
    x = (be.uniform((B, D)) < 0.5).astype(be.dtype)
    return be, model, x


def _row(formula, code, numeric):
    code, numeric = np.asarray(code, dtype=float), np.asarray(numeric, dtype=float)
    return {"formula": formula, "code": float(code.ravel()[0]),
            "numeric": float(numeric.ravel()[0]), "error": relative_error(code, numeric)}


def _param_rows(model, analytic, loss, names):
    return [_row(f"∂L/∂{name}", analytic[name], numerical_gradient(loss, model.params[name]))
            for name in names]


def walk_elbo(posterior: str) -> tuple[list, bool]:
    """The lines of ``VAE.backward`` for the β-weighted −ELBO; returns (rows, same_bits)."""
    be, model, x = _setup(posterior)
    xp, lik = be.xp, model.likelihood
    eps = be.standard_normal((B, d))
    model.zero_grad()
    model.forward(x, eps=eps)
    q, _ = model._cache
    h = model.encoder.forward(x)
    # -- the code, line by line as vae.py runs it -------------------------------------
    dlogp = xp.full((B,), -1.0 / B)                                   # ∂L/∂log p_b
    dout = lik.backward(dlogp)                                        # ∂L/∂out
    dz = model.decoder.backward(dout)                                 # ∂L/∂z
    dmu_z, dlogvar_z, dtril_z = q.sample_backward(dz, eps)
    dkl_dmu, dkl_dlogvar, dkl_dtril = q.kl_grad()
    dmu = dmu_z + (BETA / B) * dkl_dmu
    dlogvar = dlogvar_z + (BETA / B) * dkl_dlogvar
    dtril = None if dtril_z is None else dtril_z + (BETA / B) * dkl_dtril
    dh = model.mu_head.backward(dmu) + model.logvar_head.backward(dlogvar)
    if dtril is not None:
        dh += model.tril_head.backward(TRIL_SCALE * dtril)
    model.encoder.backward(dh, need_dx=False)
    walked = {k: g.copy() for k, g in model.grads.items()}

    # -- the loss as a function of each line's variable, ε held fixed -----------------
    mu, logvar = q.mu.copy(), q.logvar.copy()
    tril = None if q.tril is None else q.tril.copy()
    kl_mean = float(q.kl().mean())

    def recon(out):
        return float(-lik.log_prob(x, out).mean())

    def loss_q(mu, logvar, tril):
        p = Posterior(mu, logvar, tril)
        return recon(model.decoder.forward(p.sample(eps))) + BETA * float(p.kl().mean())

    def loss_h(h):
        t = None if tril is None else TRIL_SCALE * model.tril_head.forward(h)
        return loss_q(model.mu_head.forward(h), model.logvar_head.forward(h), t)

    out, z = model.decoder.forward(q.sample(eps)), q.sample(eps)
    logp = lik.log_prob(x, out).copy()
    rows = [
        _row("∂L/∂log p_b = −1/B", dlogp,
             numerical_gradient(lambda: float(-logp.mean()) + BETA * kl_mean, logp)),
        _row("∂L/∂out = ∂L/∂log p · (x − σ(out))", dout,
             numerical_gradient(lambda: recon(out) + BETA * kl_mean, out)),
        _row("∂L/∂z = (decoder backward of ∂L/∂out)", dz,
             numerical_gradient(lambda: recon(model.decoder.forward(z)), z)),
        _row("∂L/∂μ = ∂L/∂z · 1 + (β/B) μ", dmu,
             numerical_gradient(lambda: loss_q(mu, logvar, tril), mu)),
        _row("∂L/∂logvar = ∂L/∂z ⊙ ½σε + (β/B) ½(σ² − 1)", dlogvar,
             numerical_gradient(lambda: loss_q(mu, logvar, tril), logvar)),
    ]
    if tril is not None:
        rows.append(_row("∂L/∂T_ij = ∂L/∂z_i ε_j + (β/B) T_ij", dtril,
                         numerical_gradient(lambda: loss_q(mu, logvar, tril), tril)))
    rows.append(_row("∂L/∂h = ∂L/∂μ W_μᵀ + ∂L/∂logvar W_vᵀ" + (" + c ∂L/∂T W_Tᵀ" if tril is
                                                               not None else ""),
                     dh, numerical_gradient(lambda: loss_h(h), h)))
    names = ["mu_head.W", "logvar_head.W"] + (["tril_head.W"] if tril is not None else []) + \
        ["encoder.0.W", "decoder.2.W"]
    rows += _param_rows(model, walked, lambda: model.loss(x, beta=BETA, eps=eps), names)

    model.zero_grad()                           # the library's own backward, for comparison
    model.forward(x, eps=eps)
    model.backward(beta=BETA)
    same = all(np.array_equal(walked[k], g) for k, g in model.grads.items())
    return rows, same


def walk_iwae() -> tuple[list, bool]:
    """The lines of ``IWAEObjective.backward`` for −(1/B) Σ_b L_k(x_b), k = 3."""
    be, model, x = _setup("diagonal", seed=8)
    xp, lik = be.xp, model.likelihood
    objective = IWAEObjective(model, K)
    eps = be.standard_normal((B, K, d))
    model.zero_grad()
    objective.forward(x, eps=eps)
    q, _, z, w_tilde = objective._cache
    # -- the code, line by line as iwae.py runs it ------------------------------------
    dlogp = (-w_tilde / B).reshape(-1)                                # ∂L/∂log p(x|z_bi)
    dout = lik.backward(dlogp)
    dz = model.decoder.backward(dout)
    dz += (-dlogp)[:, None] * z                                       # the prior's −½‖z‖²
    dmu, dlogvar, dtril = q.sample_backward(dz.reshape(B, K, d), eps)
    dlogvar -= 0.5 / B                                                # −log q's ½ per logvar
    model.encoder_backward(dmu, dlogvar, dtril)
    walked = {k: g.copy() for k, g in model.grads.items()}

    # -- the loss as a function of each line's variable -------------------------------
    mu, logvar = q.mu.copy(), q.logvar.copy()
    xk = xp.repeat(x, K, axis=0)
    log_q = q.log_prob_of_eps(eps)                                    # (B, k), fixed by ε

    def loss_logp(logp, z):                       # −mean_b log (1/k) Σ_i w_bi
        log_w = logp.reshape(B, K) + log_normal_std(z).reshape(B, K) - log_q
        return float(-log_mean_exp(log_w, axis=1).mean())

    def loss_q(mu, logvar):
        p = Posterior(mu, logvar)
        zz = p.sample(eps)
        log_w = (lik.log_prob(xk, model.decoder.forward(zz.reshape(B * K, d))).reshape(B, K)
                 + log_normal_std(zz) - p.log_prob_of_eps(eps))
        return float(-log_mean_exp(log_w, axis=1).mean())

    z = z.copy()
    out = model.decoder.forward(z)
    logp = lik.log_prob(xk, out).copy()
    rows = [
        _row("∂L/∂log p(x|z_bi) = −w̃_bi/B,  w̃ = softmax_i(log w)", dlogp,
             numerical_gradient(lambda: loss_logp(logp, z), logp)),
        _row("∂L/∂out_bi = ∂L/∂log p_bi · (x_b − σ(out_bi))", dout,
             numerical_gradient(lambda: loss_logp(lik.log_prob(xk, out), z), out)),
        _row("∂L/∂z_bi = (decoder backward) + (w̃_bi/B) z_bi", dz,
             numerical_gradient(lambda: loss_logp(lik.log_prob(xk, model.decoder.forward(z)), z),
                                z)),
        _row("∂L/∂μ_b = Σ_i ∂L/∂z_bi", dmu, numerical_gradient(lambda: loss_q(mu, logvar), mu)),
        _row("∂L/∂logvar_b = Σ_i ∂L/∂z_bi ⊙ ½σε_bi − ½/B", dlogvar,
             numerical_gradient(lambda: loss_q(mu, logvar), logvar)),
    ]
    rows += _param_rows(model, walked, lambda: objective.loss(x, eps=eps),
                        ["mu_head.W", "logvar_head.W", "encoder.0.W", "decoder.2.W"])

    model.zero_grad()
    objective.forward(x, eps=eps)
    objective.backward()
    same = all(np.array_equal(walked[k], g) for k, g in model.grads.items())
    return rows, same


WALKS = {
    "VAE, diagonal q(z|x) = N(μ, diag σ²): L = (1/B) Σ_b [−log p(x_b|z_b) + β KL_b]":
        lambda: walk_elbo("diagonal"),
    "VAE, full q(z|x) = N(μ, C Cᵀ), C = diag(σ) + T: the same L":
        lambda: walk_elbo("full"),
    f"IWAE, k = {K}: L = −(1/B) Σ_b log (1/k) Σ_i w_bi,  w = p(x|z) p(z) / q(z|x)":
        walk_iwae,
}


def main(argv=None) -> int:
    argparse.ArgumentParser(       # no options: --help says what the script does, typos stop
        description=__doc__.split("\n\n")[0],
        epilog="Exit status 0 when every line agrees, 1 when one does not.").parse_args(argv)
    print(f"A tiny VAE in float64: D = {D}, H = {H}, d = {d}, B = {B}, β = {BETA}; ε held fixed.")
    print("Each line: its formula; one entry as the code computes it and by central "
          "differences;\nthe relative error ‖code − numeric‖ / (‖code‖ + ‖numeric‖) over all "
          "its entries.\n")
    worst, all_same = 0.0, True
    for title, walk in WALKS.items():
        rows, same = walk()
        print(title)
        print(f"  {'line':<56} {'code':>13} {'numeric':>13} {'rel. error':>10}")
        for r in rows:
            print(f"  {r['formula']:<56} {r['code']:13.8f} {r['numeric']:13.8f} "
                  f"{r['error']:10.1e}")
            worst = max(worst, r["error"])
        print(f"  the walk's gradients are the library's backward, bit for bit: {same}\n")
        all_same &= same
    ok = worst < TOLERANCE and all_same
    print(f"largest relative error {worst:.1e}: "
          + ("every line agrees with its central difference" if ok else "A LINE DISAGREES"))
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
