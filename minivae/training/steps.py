"""The model-specific half of the fit loop: one training step, and what an epoch reports.

A step is called once per batch by :func:`minivae.training.fit.fit`.  It runs forward
and backward (the optimizer step stays with the loop), adds the batch's loss
terms to sums kept on the device (so no step waits for the GPU), and at the
end of an epoch turns the sums into the epoch's history entry together with
the test metrics.

=================  ===============================================  ==========================
step               loss of a batch of B rows                         reported per epoch
=================  ===============================================  ==========================
:class:`VAEStep`   (1/B) Σ_b [recon_b + β_eff · kl_b]                −ELBO, recon, KL (β = 1)
:class:`IWAEStep`  −(1/B) Σ_b L_k(x_b), L_k = log (1/k) Σ_i w_bi     −L_k (train and test),
                                                                    −ELBO, recon, KL
:class:`AEStep`    (1/B) Σ_b ‖x_b − f(g(x̃_b))‖²                      squared errors on clean
                                                                    and corrupted test digits
=================  ===============================================  ==========================
"""

from __future__ import annotations

import numpy as np

from ..evaluate import active_units, evaluate_elbo, iw_log_likelihood
from .fit import check_finite_loss
from ..models.autoencoder import evaluate_reconstruction
from ..models.iwae import IWAEObjective
from ..numerics import FIXED_SEED

#: Burda et al.'s threshold: unit j is active when Var_x(E_q[z_j|x]) ≥ 0.01.
ACTIVE_UNIT_THRESHOLD = 0.01


def kl_weight(beta: float, warmup_epochs: int, step: int, steps_per_epoch: int) -> float:
    r"""The KL weight β_eff of optimizer step ``step`` (1, 2, … counted over the whole run).

    A linear warm-up over W = ``warmup_epochs`` epochs of S = ``steps_per_epoch``
    steps, advanced every step::

        β_eff(step) = β · min(1, step / (W · S))

    so the first step uses β/(W·S), the last step of epoch e ≤ W uses β·e/W,
    and from the end of epoch W on the weight is β.  W = 0: β throughout.
    """
    if warmup_epochs == 0:
        return beta
    return beta * min(1.0, step / (warmup_epochs * steps_per_epoch))


class VAEStep:
    """One VAE step: z = μ + σ ε drawn, grads ← ∂ mean(recon + β_eff kl) / ∂θ.

    ``splitter`` (a :class:`~minivae.training.parallel.SplitBatchStep`) computes the same
    gradient in row blocks on threads.  β_eff follows :func:`kl_weight`.
    """

    loss_name = "neg_elbo"

    def __init__(self, model, config, x_test, steps_per_epoch: int, splitter=None):
        model.for_training()            # grads written, not added; the data was checked once
        self.model, self.config, self.x_test = model, config, x_test
        self.steps_per_epoch, self.splitter = steps_per_epoch, splitter
        fixed = config.likelihood == "gaussian" and config.gaussian_logvar is not None
        self.hint = ((f"the fixed --gaussian-logvar {config.gaussian_logvar:g} sets σ² = "
                      f"e^{config.gaussian_logvar:g}: try one nearer the data's scale, or learn "
                      f"it (leave --gaussian-logvar out); else " if fixed else "")
                     + f"try a smaller learning rate than {config.lr}"
                     + (f" or beta than {config.beta}" if config.beta != 1 else "")
                     + " or dtype float64")

    def start_epoch(self, epoch: int) -> None:
        xp, dtype = self.model.backend.xp, self.model.backend.dtype
        self.recon_sum, self.kl_sum = xp.zeros((), dtype=dtype), xp.zeros((), dtype=dtype)
        self.n_seen, self.beta_sum, self.beta = 0, 0.0, self.config.beta

    def __call__(self, x, n: int) -> None:
        c = self.config
        self.beta = beta = kl_weight(c.beta, c.kl_warmup_epochs, n, self.steps_per_epoch)
        if self.splitter is None:
            o = self.model.forward(x)                   # ε drawn, z = μ + σ ε
            self.model.backward(beta=beta)              # grads ← ∂L/∂θ
            recon, kl = o.recon, o.kl
        else:                                    # the same step, in row blocks on threads
            recon, kl = self.splitter.step(x, beta)
        self.recon_sum += recon.sum()
        self.kl_sum += kl.sum()
        self.n_seen += x.shape[0]
        self.beta_sum += beta

    def running_loss(self) -> float:
        return float(self.recon_sum + self.kl_sum) / self.n_seen

    def end_epoch(self, epoch: int) -> dict:
        """The epoch's train terms (checked finite) and the test −ELBO with z sampled."""
        recon, kl = float(self.recon_sum) / self.n_seen, float(self.kl_sum) / self.n_seen
        check_finite_loss(recon + kl, epoch, self.hint)
        test = evaluate_elbo(self.model, self.x_test, n_samples=self.config.eval_samples)
        return {"epoch": epoch, "train_neg_elbo": recon + kl, "train_recon": recon,
                "train_kl": kl, "test_neg_elbo": test["neg_elbo"], "test_recon": test["recon"],
                "test_kl": test["kl"], "beta": self.beta,
                "beta_mean": self.beta_sum / self.steps_per_epoch}

    def line(self, h: dict) -> str:
        warm = f"  β {h['beta']:.3f}" if self.config.kl_warmup_epochs else ""
        return (f"epoch {h['epoch']:3d}/{self.config.epochs}  train -ELBO "
                f"{h['train_neg_elbo']:8.3f}  test -ELBO {h['test_neg_elbo']:8.3f}  (recon "
                f"{h['test_recon']:.3f}, KL {h['test_kl']:.3f}){warm}  {h['seconds']:.1f}s")

    def final_metrics(self) -> dict:
        """The final ``"test"`` object: −ELBO terms (z sampled), active units, IW −log p(x)."""
        return final_test_metrics(self.model, self.x_test, self.config)


class IWAEStep(VAEStep):
    """One step on the importance-weighted bound: grads ← ∂/∂θ of −(1/B) Σ_b L_k(x_b).

    The epoch reports the training bound −L_k and, on the test digits, the same
    bound (a fresh draw of the k samples) beside the −ELBO terms every VAE reports.
    """

    loss_name = "neg_iw_bound"

    def __init__(self, model, config, x_test, steps_per_epoch: int):
        super().__init__(model, config, x_test, steps_per_epoch)
        self.objective = IWAEObjective(model, config.resolved_k())
        self.hint = f"try a smaller learning rate than {config.lr} or dtype float64"

    def start_epoch(self, epoch: int) -> None:
        xp, dtype = self.model.backend.xp, self.model.backend.dtype
        self.bound_sum, self.n_seen = xp.zeros((), dtype=dtype), 0

    def __call__(self, x, n: int) -> None:
        o = self.objective.forward(x)                  # k draws of ε per example
        self.objective.backward()                      # grads ← ∂L/∂θ
        self.bound_sum += o.bound.sum()
        self.n_seen += x.shape[0]

    def running_loss(self) -> float:
        return -float(self.bound_sum) / self.n_seen

    def test_bound(self, batch_size: int = 500) -> float:
        """−mean L_k over the test digits (one draw of the k samples)."""
        total = 0.0
        for start in range(0, self.x_test.shape[0], batch_size):
            xb = self.x_test[start:start + batch_size]
            total += float(self.objective.forward(xb).bound.sum())
        return -total / self.x_test.shape[0]

    def end_epoch(self, epoch: int) -> dict:
        train = -float(self.bound_sum) / self.n_seen
        check_finite_loss(train, epoch, self.hint)
        test = evaluate_elbo(self.model, self.x_test, n_samples=self.config.eval_samples)
        return {"epoch": epoch, "train_neg_iw_bound": train,
                "test_neg_iw_bound": self.test_bound(), "test_neg_elbo": test["neg_elbo"],
                "test_recon": test["recon"], "test_kl": test["kl"], "k": self.objective.k}

    def line(self, h: dict) -> str:
        return (f"epoch {h['epoch']:3d}/{self.config.epochs}  train -L_{h['k']} "
                f"{h['train_neg_iw_bound']:8.3f}  test -L_{h['k']} {h['test_neg_iw_bound']:8.3f}  "
                f"test -ELBO {h['test_neg_elbo']:8.3f}  (recon {h['test_recon']:.3f}, KL "
                f"{h['test_kl']:.3f})  {h['seconds']:.1f}s")


def final_test_metrics(model, x_test, config) -> dict:
    """The test −ELBO terms (≥ 10 draws of z per digit), active units and IW −log p(x)."""
    n_eval = max(10, config.eval_samples)
    test = evaluate_elbo(model, x_test, n_samples=n_eval)
    count, _ = active_units(model, x_test, threshold=ACTIVE_UNIT_THRESHOLD)
    test.update({"n_examples": int(x_test.shape[0]), "z": "sampled",
                 "eval_samples_per_example": n_eval, "active_units": count,
                 "active_units_threshold": ACTIVE_UNIT_THRESHOLD})
    if config.iw_samples:
        log_px = iw_log_likelihood(model, x_test, k=config.iw_samples)
        # the standard error of the mean over the test digits: how far another draw of
        # that many digits could move the number (the Monte Carlo error of each
        # digit's estimate is far smaller at the usual K; see the README)
        se = float(log_px.std(ddof=1) / np.sqrt(len(log_px))) if len(log_px) > 1 else None
        test.update({"iw_nll": float(-log_px.mean()), "iw_nll_se": se,
                     "iw_samples": config.iw_samples})
    test["units"] = "nats per example"
    return test


class AEStep:
    """One autoencoder step: grads ← ∂/∂θ of (1/B) Σ_b ‖x_b − f(g(x̃_b))‖².

    The denoising model draws a fresh x̃ ~ χ(x̃|x) inside ``forward``; the
    plain one uses x̃ = x.  ``x_test_tilde`` is the one fixed corruption of the
    test digits (None for the plain autoencoder).
    """

    loss_name = "sse"

    def __init__(self, model, config, x_test, x_test_tilde=None):
        model.for_training()            # grads written, not added; the data was checked once
        self.model, self.config = model, config
        self.x_test, self.x_test_tilde = x_test, x_test_tilde
        self.hint = f"try a smaller learning rate than {config.lr} or dtype float64"

    def start_epoch(self, epoch: int) -> None:
        be = self.model.backend
        self.sse_sum, self.n_seen = be.xp.zeros((), dtype=be.dtype), 0

    def __call__(self, x, n: int) -> None:
        o = self.model.forward(x)                # the denoising model draws x̃ ~ χ(x̃|x) here
        self.model.backward()                    # grads ← ∂L/∂θ
        self.sse_sum += o.sse.sum()
        self.n_seen += x.shape[0]

    def running_loss(self) -> float:
        return float(self.sse_sum) / self.n_seen

    def squared_errors(self) -> dict:
        """Test squared errors: on clean digits, and (denoising) on the fixed corrupted ones."""
        result = {"clean": evaluate_reconstruction(self.model, self.x_test)}
        if self.x_test_tilde is not None:
            result["corrupted"] = evaluate_reconstruction(self.model, self.x_test,
                                                          x_input=self.x_test_tilde)
        return result

    def end_epoch(self, epoch: int) -> dict:
        train = float(self.sse_sum) / self.n_seen
        check_finite_loss(train, epoch, self.hint)
        test = self.squared_errors()
        entry = {"epoch": epoch, "train_sse_per_example": train,
                 "train_mse_per_pixel": train / self.model.input_dim,
                 "test_sse_per_example": test["clean"]["sse_per_example"],
                 "test_mse_per_pixel": test["clean"]["mse_per_pixel"]}
        if "corrupted" in test:
            entry["test_corrupted_sse_per_example"] = test["corrupted"]["sse_per_example"]
            entry["test_corrupted_mse_per_pixel"] = test["corrupted"]["mse_per_pixel"]
        return entry

    def line(self, h: dict) -> str:
        text = (f"epoch {h['epoch']:3d}/{self.config.epochs}  train SSE "
                f"{h['train_sse_per_example']:8.3f}  test SSE {h['test_sse_per_example']:8.3f} "
                f"(MSE {h['test_mse_per_pixel']:.5f})")
        if "test_corrupted_sse_per_example" in h:
            text += (f"  corrupted test SSE {h['test_corrupted_sse_per_example']:8.3f} "
                     f"(MSE {h['test_corrupted_mse_per_pixel']:.5f})")
        return f"{text}  {h['seconds']:.1f}s"

    def final_metrics(self) -> dict:
        """The final ``"test"`` object (see :func:`minivae.training.train.train_autoencoder`)."""
        final = self.squared_errors()
        units = {"n_examples": int(self.x_test.shape[0]),
                 "pixels_per_example": self.model.input_dim,
                 "units": "sse_per_example: squared error summed over the pixels, mean over the "
                          "examples (the training cost); mse_per_pixel = sse_per_example / "
                          "pixels_per_example; mse is mse_per_pixel"}
        test_metrics = {**final["clean"], **units}
        if self.x_test_tilde is not None:
            r = self.x_test_tilde - self.x_test
            test_metrics["corrupted"] = {
                **final["corrupted"], "corruption": self.model.corruption.config(),
                "seed": FIXED_SEED, "input_mse_per_pixel": float((r * r).mean()),
                "what": "reconstructions of the corrupted test digits x̃, scored against the "
                        "clean digits; input_mse_per_pixel scores x̃ itself"}
        return test_metrics
