"""The fit loop: epochs of minibatch steps, the same for every model.

The whole of the algorithm, for any model::

    for epoch in 1 … E:
        for x_batch in batches:               # shuffled, on the device
            step(x_batch, n)                  # forward; backward: grads ← ∂L/∂θ
            optimizer.step()                  # θ ← update(θ, grads)
        entry = step.end_epoch(epoch)         # the epoch's train loss and test metrics

What the loss is (the −ELBO of a VAE, β-weighted; the squared error of an
autoencoder), what is summed and what is reported lives in the model's
*step* (:mod:`minivae.training.steps`).  :func:`fit` adds what every run needs around
it: a progress bar on a terminal, a check that the loss and the state stayed
finite, a snapshot of the state after every epoch (kept by :class:`LastGood`,
saved when the run stops early), and periodic checkpoints.
"""

from __future__ import annotations

import math
import sys
import time
from pathlib import Path

from .interrupts import interrupts_deferred, signal_name
from ..validation import first_nonfinite


class TrainingDiverged(FloatingPointError):
    """The loss, the parameters or the optimizer's state became NaN or infinite.

    ``epoch`` is the epoch in which it happened.  When the run writes files,
    the last finite state was saved first: ``path`` is that checkpoint and
    ``saved_epoch`` the epochs it holds (``path`` is None when nothing could be
    written, and ``save_error`` then says why).
    """

    def __init__(self, message: str, epoch: int | None = None, path=None,
                 saved_epoch: int | None = None, save_error: str | None = None):
        super().__init__(message)
        self.epoch, self.saved_epoch, self.save_error = epoch, saved_epoch, save_error
        self.path = None if path is None else Path(path)

    def after_save(self, path, saved_epoch: int, save_error: str | None) -> "TrainingDiverged":
        """The same error, its message saying what was saved."""
        if path is not None:
            note = (f"; the state after epoch {saved_epoch}, the last finite one, is saved in "
                    f"{path}")
        else:
            note = f"; the last finite state could not be saved ({save_error})"
        return TrainingDiverged(f"{self}{note}", self.epoch, path, saved_epoch, save_error)


class TrainingInterrupted(KeyboardInterrupt):
    """Ctrl-C (or SIGTERM) during training; the state after the last completed epoch was saved.

    ``path`` is the checkpoint written, ``epoch`` the number of epochs it holds;
    ``train_vae(config, resume=path)`` continues from there.  ``signal`` is
    ``"SIGINT"`` or ``"SIGTERM"``.  When the save itself failed (a full disk),
    ``path`` is None and ``save_error`` says why.
    """

    def __init__(self, path, epoch: int, signal: str = "SIGINT", save_error: str | None = None):
        what = (f"the state after epoch {epoch} is saved in {path}" if path is not None
                else f"the state after epoch {epoch} could not be saved ({save_error})")
        super().__init__(f"training interrupted ({signal}); {what}")
        self.path = None if path is None else Path(path)
        self.epoch, self.signal, self.save_error = int(epoch), signal, save_error


class LastGood:
    """The last state of a run known to be good, saved when the run stops early.

    Used as ``with LastGood(out, save, epoch, snapshot) as last:`` around a fit
    loop, which calls ``last.keep(epoch, snapshot)`` after every epoch that
    passed the checks.  When the block raises TrainingDiverged or
    KeyboardInterrupt and the run writes files, ``save(snapshot)`` writes the
    kept state, with Ctrl-C and SIGTERM held back (a second Ctrl-C must not cut
    this save short), and the error is raised again saying what was saved: a
    TrainingDiverged naming the file, or a :class:`TrainingInterrupted`.  An
    OSError of that save (a full disk) goes into the message instead of hiding
    why the run stopped.
    """

    def __init__(self, out, save, epoch: int, snapshot):
        self.out, self.save = out, save
        self.keep(epoch, snapshot)

    def keep(self, epoch: int, snapshot) -> None:
        self.epoch, self.snapshot = epoch, snapshot

    def __enter__(self):
        return self

    def __exit__(self, kind, exc, tb):
        if self.out is None or not isinstance(exc, (TrainingDiverged, KeyboardInterrupt)):
            return False
        with interrupts_deferred(deliver=False):
            try:
                path, error = self.save(self.snapshot), None
            except OSError as save_error:
                path, error = None, str(save_error)
        if isinstance(exc, TrainingDiverged):
            raise exc.after_save(path, self.epoch, error) from None
        raise TrainingInterrupted(path, self.epoch, signal_name(exc), error) from None


def check_finite_loss(loss: float, epoch: int, hint: str) -> None:
    """Raise TrainingDiverged when an epoch's mean training loss is NaN or infinite."""
    if not math.isfinite(loss):
        raise TrainingDiverged(f"the training loss became {loss} in epoch {epoch}; {hint}",
                               epoch=epoch)


def check_finite_state(epoch: int, arrays: dict, what: str, hint: str) -> None:
    """Raise TrainingDiverged naming the first entry of ``arrays`` that holds NaN or Inf."""
    bad = first_nonfinite(arrays)
    if bad is not None:
        raise TrainingDiverged(
            f"after epoch {epoch} the {what} {bad[0]} holds {bad[1]} NaN or Inf values although "
            f"the training loss was finite (an update overflowed); {hint}", epoch=epoch)


#: The progress bar's running loss is read (a device → host copy on a GPU) at
#: most this often, in seconds, however short the steps are.
POSTFIX_EVERY_S = 2.0


class _Progress:
    """A tqdm bar over one epoch's batches on stderr, or nothing.

    There is a bar only when ``enabled`` and stderr is a terminal: in a log
    file a bar is a line of carriage returns, and the loop prints one line per
    epoch anyway.  The bar shows the step's running loss, read at most every
    :data:`POSTFIX_EVERY_S` seconds.
    """

    def __init__(self, total: int, epoch: int, epochs: int, enabled: bool):
        stream = sys.stderr
        self.bar = None
        if enabled and stream is not None and stream.isatty():
            from tqdm import tqdm
            self.bar = tqdm(total=total, desc=f"epoch {epoch}/{epochs}", leave=False,
                            unit="batch", file=stream, dynamic_ncols=True)
        self.shown = time.perf_counter()

    def advance(self, step) -> None:
        if self.bar is None:
            return
        self.bar.update(1)
        now = time.perf_counter()
        if now - self.shown >= POSTFIX_EVERY_S:
            self.bar.set_postfix({step.loss_name: f"{step.running_loss():.2f}"})
            self.shown = now

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        if self.bar is not None:
            self.bar.close()


def fit(step, optimizer, batches, last: LastGood, take_snapshot, *, epochs: int,
        start: int = 0, history=None, progress: bool = True, save=None,
        save_every: int = 0) -> list:
    """Train from epoch ``start`` + 1 to ``epochs``; return the history, one entry per epoch.

    ``step`` is the model's step (:mod:`minivae.training.steps`): ``step(x, n)`` runs
    forward and backward on batch ``x`` (optimizer step n of the run, counted
    from 1), ``end_epoch(epoch)`` checks the train loss and returns the
    epoch's entry, ``line(entry)`` the line printed for it.  After every epoch
    ``take_snapshot(epoch, history)`` copies the state to the host; its
    parameters and optimizer state must be finite, else TrainingDiverged, and
    ``last`` keeps it.  With ``save`` and ``save_every`` N > 0, every N-th
    epoch's snapshot is also saved (but the last epoch's: the caller saves it).
    """
    history = list(history or [])
    for epoch in range(start + 1, epochs + 1):
        t0 = time.perf_counter()
        step.start_epoch(epoch)
        with _Progress(len(batches), epoch, epochs, progress) as bar:
            for i, x in enumerate(batches, start=1):
                step(x, (epoch - 1) * len(batches) + i)    # forward, backward: grads ← ∂L/∂θ
                optimizer.step()                            # θ ← update(θ, grads)
                bar.advance(step)
        entry = step.end_epoch(epoch)
        entry["seconds"] = time.perf_counter() - t0
        history.append(entry)
        snap = take_snapshot(epoch, history)
        check_finite_state(epoch, snap.params, "parameter", step.hint)
        check_finite_state(epoch, snap.optimizer_state, "optimizer state", step.hint)
        last.keep(epoch, snap)
        # printed once the epoch is safe in the snapshot: a Ctrl-C after this
        # line is seen saves this epoch
        print(step.line(entry), flush=True)
        if save is not None and save_every and epoch % save_every == 0 and epoch < epochs:
            save(snap)
    return history
