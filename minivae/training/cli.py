"""Command-line front ends: argparse → config → library call.

``examples/train_vae.py`` is ``main_vae``; the parser pieces are shared so the
other example scripts accept the same flags where they apply.  Every failure a
user can cause or meet ends the program with one line and a status, never a
traceback (:func:`run_guarded`):

=====================================================  ======  =================================
what happened                                          status  what was saved
=====================================================  ======  =================================
bad input: flags, data, checkpoint, ``--out``, memory  2       nothing
training diverged (NaN or Inf)                         2       the last finite epoch's state
the disk filled up, or another OSError                 2       files written before are intact
Ctrl-C (SIGINT)                                        130     the last completed epoch's state
SIGTERM                                                143     the last completed epoch's state
=====================================================  ======  =================================
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import sys
import warnings
from pathlib import Path

from ..backend import BackendError
from .checkpoint import CheckpointError
from .interrupts import Terminated, sigterm_as_interrupt
from .parallel import MAX_THREADS

#: The exit status of a run stopped by each signal: 128 + the signal's number.
EXIT_STATUS = {"SIGINT": 130, "SIGTERM": 143}


def integer_in(minimum: int, expected: str, maximum: int | None = None):
    """An argparse type: an integer in [minimum, maximum], else an error saying what was expected."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None
        if value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected {expected}, got {value}")
        return value
    return parse


positive_int = integer_in(1, "a positive integer")
non_negative_int = integer_in(0, "a non-negative integer")


def output_dir(text: str) -> str:
    """An argparse type: a directory path, not the empty string."""
    if not text.strip():
        raise argparse.ArgumentTypeError(f"expected a directory path, got {text!r}")
    return text


def _float(text: str, expected: str) -> float:
    """``float(text)``, or the argparse error "expected <expected>, got '<text>'"."""
    try:
        return float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {expected}, got {text!r}") from None


def positive_float(text: str) -> float:
    value = _float(text, "a positive number")
    if not value > 0 or not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text}")
    return value


def int_list(text: str) -> tuple:
    """'400' → (400,); '512,256' → (512, 256)."""
    try:
        values = tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected positive widths, got {text!r}")
    return values


def finite_float(text: str) -> float:
    """An argparse type: a finite number."""
    value = _float(text, "a number")
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text}")
    return value


#: How the command line parses each ``kind`` of setting (see :func:`minivae.training.config.setting`).
KINDS = {"count": positive_int, "count0": non_negative_int, "positive": positive_float,
         "number": finite_float, "widths": int_list, "dir": output_dir, "text": str,
         "threads": integer_in(1, f"an integer from 1 to {MAX_THREADS}", MAX_THREADS)}

#: The settings every training script offers, in the order ``--help`` lists them.
SHARED = ("backend", "dtype", "dataset", "data_dir", "download", "epochs", "batch_size",
          "optimizer", "lr", "momentum", "seed", "out", "overwrite", "progress")
VAE_SETTINGS = SHARED + ("hidden", "latent_dim", "activation", "likelihood", "gaussian_logvar",
                         "binarize", "init", "posterior", "objective", "k", "beta",
                         "kl_warmup_epochs",
                         "eval_samples", "iw_samples", "threads", "save_every")
AE_SETTINGS = SHARED + ("hidden", "bottleneck", "activation", "output")
DAE_SETTINGS = AE_SETTINGS + ("corruption", "noise_level", "clip")


def _shown(default) -> str:
    """A default as ``--help`` shows it: ``512,256`` for widths, ``0.001`` for a float."""
    if isinstance(default, tuple):
        return ",".join(map(str, default))
    return f"{default:g}" if isinstance(default, float) else str(default)


def add_settings(parser: argparse.ArgumentParser, config_class, names) -> None:
    """Add a flag for each setting ``names`` of ``config_class``, generated from its field.

    The flag is ``--`` and the name with ``-`` for ``_`` (or the field's own
    ``flag``); its default, choices, parser and help all come from the field,
    so they are the library's.  A ``"switch"`` is a flag without a value.
    """
    fields = {f.name: f for f in dataclasses.fields(config_class)}
    groups = {}
    for name in names:
        f, m = fields[name], fields[name].metadata
        if m["group"] not in groups:
            groups[m["group"]] = parser.add_argument_group(m["group"])
        group = groups[m["group"]]
        flag = m["flag"] or "--" + name.replace("_", "-")
        if m["kind"] == "switch":
            group.add_argument(flag, dest=name, default=f.default, help=m["help"],
                               action="store_false" if f.default else "store_true")
            continue
        shown = "" if f.default is None or "default:" in m["help"] \
            else f" (default: {_shown(f.default)})"
        options = {"choices": m["choices"]} if m["choices"] is not None else {}
        if m["kind"] is not None:
            options["type"] = KINDS[m["kind"]]
        if m["metavar"] is not None:
            options["metavar"] = m["metavar"]
        group.add_argument(flag, dest=name, default=f.default, help=m["help"] + shown, **options)


def config_from_args(config_class, args):
    """The ``config_class`` instance the parsed ``args`` describe (settings not offered: defaults)."""
    names = {f.name for f in dataclasses.fields(config_class)}
    return config_class(**{k: v for k, v in vars(args).items() if k in names})


def vae_parser() -> argparse.ArgumentParser:
    from .config import VAEConfig

    parser = argparse.ArgumentParser(
        prog="train_vae.py",
        description="Train a variational autoencoder with hand-written gradients. Writes "
                    "metrics.json, checkpoint.npz (resumable), reconstructions.png, "
                    "samples.png, loss.png, loss_terms.png, latent_scatter.png and, for a 2-D "
                    "latent, manifold.png into --out. Ctrl-C (or SIGTERM) saves the state "
                    "after the last completed epoch and exits with status 130 (143); a run "
                    "that diverges saves the last finite epoch's state and exits with "
                    "status 2.")
    add_settings(parser, VAEConfig, VAE_SETTINGS)
    parser.add_argument("--resume", default=None, metavar="PATH",
                        help="continue the run stored in the checkpoint PATH (weights, "
                             "optimizer state, epoch, random-generator states) up to --epochs "
                             "epochs in total. Every setting not given on the command line is "
                             "taken from the checkpoint (--out, --epochs, --data-dir and "
                             "--iw-samples included); a given one that differs from it is an "
                             "error, except --epochs, --out, --no-progress, --save-every, "
                             "--iw-samples, --backend, --data-dir, --download and --overwrite")
    return parser


def _negative_values_joined(parser, argv) -> list:
    """``argv`` with ``--flag -1e5`` written ``--flag=-1e5`` for flags that take a value.

    argparse reads a token that starts with ``-`` as an option unless it looks like a plain
    negative number (``-3``, ``-0.5``), so ``--gaussian-logvar -1e5`` would be refused.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    joined, i = [], 0
    while i < len(argv):
        action = parser._option_string_actions.get(argv[i])
        if action is not None and action.nargs is None and i + 1 < len(argv) \
                and argv[i + 1].startswith("-") and _is_number(argv[i + 1]):
            joined.append(f"{argv[i]}={argv[i + 1]}")
            i += 2
            continue
        joined.append(argv[i])
        i += 1
    return joined


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _parse(parser, argv):
    return parser.parse_args(_negative_values_joined(parser, argv))


def _given_flags(argv) -> set:
    """The destinations of the flags actually written on the command line (not defaults)."""
    probe = vae_parser()
    for action in probe._actions:  # a flag left out then sets nothing in the namespace
        action.default = argparse.SUPPRESS
    return set(vars(_parse(probe, argv)))


def run_guarded(train, out, resume_hint=None):
    """Run ``train()``; return ``(metrics, 0)``, or ``(None, status)`` after printing one line.

    SIGTERM is handled like Ctrl-C while it runs.  Every way a run can end
    early is turned into a sentence on stderr and the status of the module
    docstring's table.  ``resume_hint(exc)``, when given, adds to the message
    of an interrupted run how to continue it.
    """
    from .train import TrainingDiverged, TrainingInterrupted

    def error(message) -> tuple:
        print(f"error: {message}", file=sys.stderr)
        return None, 2

    try:
        # NumPy's overflow warnings (with file paths) would print before the one-line error
        # of a run that diverges; the run's own checks say what went wrong and where
        with sigterm_as_interrupt(), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            return train(), 0
    except (ValueError, BackendError, CheckpointError, TrainingDiverged) as exc:
        return error(exc)
    except MemoryError as exc:
        return error(f"out of memory{f' ({exc})' if str(exc) else ''}; choose smaller widths "
                     f"(--hidden, --latent-dim) or a smaller --batch-size")
    except OSError as exc:      # a full disk, a directory that vanished: files written before stay
        return error(exc)
    except TrainingInterrupted as exc:
        if exc.path is None:
            print(f"\ninterrupted ({exc.signal}): the state after epoch {exc.epoch} could not be "
                  f"saved ({exc.save_error})", file=sys.stderr)
        else:
            hint = resume_hint(exc) if resume_hint is not None else ""
            print(f"\ninterrupted ({exc.signal}): the state after epoch {exc.epoch} is saved in "
                  f"{exc.path}{hint}", file=sys.stderr)
        return None, EXIT_STATUS[exc.signal]
    except KeyboardInterrupt as exc:
        name = "SIGTERM" if isinstance(exc, Terminated) else "SIGINT"
        earlier = Path(out) / "checkpoint.npz"
        left = f"; {earlier} is as an earlier save left it" if earlier.is_file() else ""
        print(f"\ninterrupted ({name}) before this run saved anything{left}", file=sys.stderr)
        return None, EXIT_STATUS[name]


def main_vae(argv=None) -> int:
    import shlex

    from .checkpoint import read_training_checkpoint
    from .config import VAEConfig
    from .resume import resumed_config
    from .train import figure_names, train_vae

    args = _parse(vae_parser(), argv)
    config = config_from_args(VAEConfig, args)

    def train():
        nonlocal config
        ckpt = None
        if args.resume is not None:            # read once; the settings worked out once
            ckpt = read_training_checkpoint(args.resume)
            config = resumed_config(config, ckpt, given=_given_flags(argv))
        return train_vae(config, resume=ckpt)

    def resume_hint(exc) -> str:
        return (f"; continue with: python examples/train_vae.py --resume "
                f"{shlex.quote(str(exc.path))} --epochs {config.epochs} --out "
                f"{shlex.quote(str(config.out))}")

    metrics, status = run_guarded(train, args.out, resume_hint)
    if metrics is None:
        return status
    t = metrics["test"]
    print(f"test (z sampled, {t['n_examples']} digits): -ELBO {t['neg_elbo']:.3f} = "
          f"recon {t['recon']:.3f} + KL {t['kl']:.3f} nats per example; "
          f"{t['active_units']} of {config.latent_dim} latent units active")
    if "iw_nll" in t:
        se = f" ± {t['iw_nll_se']:.3f} (standard error over the digits)" \
            if t.get("iw_nll_se") is not None else ""
        print(f"test -log p(x) by importance weighting with {t['iw_samples']} samples: "
              f"{t['iw_nll']:.3f}{se} nats per example")
    mem = metrics["memory"]
    if mem["peak_rss_mib"] is not None:
        gpu = f", CuPy pool {mem['gpu_pool_mib']:.0f} MiB" if "gpu_pool_mib" in mem else ""
        print(f"peak resident memory {mem['peak_rss_mib']:.0f} MiB{gpu}")
    files = ["metrics.json", "checkpoint.npz", *figure_names(config.latent_dim)]
    print(f"wrote {', '.join(files)} into {config.out}")
    return 0


# -- the autoencoder and the denoising autoencoder ------------------------------

#: How an autoencoder run ends early, for the parsers' descriptions.
_STOPS = (" Ctrl-C (or SIGTERM) saves the weights after the last completed epoch and exits "
          "with status 130 (143); a run that diverges saves the last finite weights and exits "
          "with status 2.")


def autoencoder_parser() -> argparse.ArgumentParser:
    from .config import AEConfig

    parser = argparse.ArgumentParser(
        prog="train_autoencoder.py",
        description="Train an autoencoder on L = 1/n Σ ‖x − f(g(x))‖² with hand-written "
                    "gradients. Writes metrics.json, checkpoint.npz, reconstructions.png and "
                    "loss.png into --out." + _STOPS)
    add_settings(parser, AEConfig, AE_SETTINGS)
    return parser


def denoising_parser() -> argparse.ArgumentParser:
    from .config import DAEConfig

    parser = argparse.ArgumentParser(
        prog="train_denoising.py",
        description="Train a denoising autoencoder on L = 1/n Σ ‖x − f(g(x̃))‖², x̃ ~ χ(x̃|x) "
                    "drawn afresh for every batch. Writes metrics.json, checkpoint.npz, "
                    "reconstructions.png (clean / corrupted / reconstructed) and loss.png "
                    "into --out." + _STOPS)
    add_settings(parser, DAEConfig, DAE_SETTINGS)
    return parser


def _run_autoencoder(config) -> int:
    from .train import train_autoencoder

    metrics, status = run_guarded(
        lambda: train_autoencoder(config), config.out,
        lambda exc: " (the weights only: an autoencoder run cannot be resumed; "
                    "minivae.training.checkpoint.load_model reloads them)")
    if metrics is None:
        return status
    t = metrics["test"]
    print(f"test ({t['n_examples']} clean digits): squared error {t['sse_per_example']:.3f} per "
          f"example, MSE {t['mse_per_pixel']:.5f} per pixel")
    if "corrupted" in t:
        c = t["corrupted"]
        print(f"test (the same digits corrupted, against the clean ones): squared error "
              f"{c['sse_per_example']:.3f} per example, MSE {c['mse_per_pixel']:.5f} per pixel "
              f"(the corrupted input itself: MSE {c['input_mse_per_pixel']:.5f})")
    print(f"wrote metrics.json, checkpoint.npz, reconstructions.png, loss.png into {config.out}")
    return 0


def main_autoencoder(argv=None) -> int:
    from .config import AEConfig
    return _run_autoencoder(config_from_args(AEConfig, _parse(autoencoder_parser(), argv)))


def main_denoising(argv=None) -> int:
    from .config import DAEConfig
    return _run_autoencoder(config_from_args(DAEConfig, _parse(denoising_parser(), argv)))
