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
import sys
from pathlib import Path

from .backend import BackendError
from .checkpoint import CheckpointError
from .data import BINARIZE, DATASETS
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


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {text!r}") from None
    if not value > 0 or value == float("inf"):
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


def add_common_arguments(parser: argparse.ArgumentParser, out_default: str,
                         epochs_default: int = 100) -> None:
    """The flags every training script shares: backend, data, budget, seed, output."""
    g = parser.add_argument_group("backend and data")
    g.add_argument("--backend", choices=("numpy", "cupy", "auto"), default="numpy",
                   help="array backend: numpy (CPU) or cupy (NVIDIA GPU) (default: numpy)")
    g.add_argument("--dtype", choices=("float32", "float64"), default="float32",
                   help="float type of parameters and activations (default: float32)")
    g.add_argument("--dataset", choices=DATASETS, default="mnist5k",
                   help="mnist5k: 5,000 real MNIST digits shipped inside minivae "
                        "(4,500 train / 500 test); mnist, fashion-mnist: the standard IDX "
                        "files from --data-dir, or --download (default: mnist5k)")
    g.add_argument("--data-dir", default=None,
                   help="directory with the four IDX .gz files of mnist / fashion-mnist")
    g.add_argument("--download", action="store_true",
                   help="download mnist / fashion-mnist (checksums verified) when --data-dir "
                        "is not given")
    g = parser.add_argument_group("training")
    g.add_argument("--epochs", type=positive_int, default=epochs_default,
                   help=f"(default: {epochs_default})")
    g.add_argument("--batch-size", type=positive_int, default=128, help="(default: 128)")
    g.add_argument("--optimizer", choices=("adam", "sgd"), default="adam", help="(default: adam)")
    g.add_argument("--lr", type=positive_float, default=1e-3, help="learning rate (default: 1e-3)")
    g.add_argument("--momentum", type=float, default=0.9, help="SGD momentum (default: 0.9)")
    g.add_argument("--seed", type=non_negative_int, default=0,
                   help="seeds weights, noise and shuffling (default: 0)")
    g.add_argument("--out", type=output_dir, default=out_default,
                   help=f"output directory, checked before training starts "
                        f"(default: {out_default})")
    g.add_argument("--no-progress", action="store_true", help="no progress bar within epochs")


def vae_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_vae.py",
        description="Train a variational autoencoder with hand-written gradients. Writes "
                    "metrics.json, checkpoint.npz (resumable), reconstructions.png, "
                    "samples.png, loss.png, loss_terms.png, latent_scatter.png and, for a 2-D "
                    "latent, manifold.png into --out. Ctrl-C (or SIGTERM) saves the state "
                    "after the last completed epoch and exits with status 130 (143); a run "
                    "that diverges saves the last finite epoch's state and exits with "
                    "status 2.")
    add_common_arguments(parser, out_default="runs/vae")
    g = parser.add_argument_group("model")
    g.add_argument("--hidden", type=int_list, default=(400,),
                   help="hidden widths of the encoder, comma-separated; the decoder mirrors "
                        "them (default: 400)")
    g.add_argument("--latent-dim", type=positive_int, default=20, help="dimension of z (default: 20)")
    g.add_argument("--activation", choices=("relu", "leaky_relu", "tanh", "sigmoid", "softplus"),
                   default="relu", help="(default: relu)")
    g.add_argument("--likelihood", choices=("bernoulli", "gaussian"), default="bernoulli",
                   help="p(x|z): bernoulli on logits or gaussian (default: bernoulli)")
    g.add_argument("--binarize", choices=BINARIZE, default=None,
                   help="none, dynamic (resampled every batch) or static (once, seeded) "
                        "(default: dynamic for bernoulli, none for gaussian)")
    g.add_argument("--beta", type=positive_float, default=1.0,
                   help="weight of the KL term in the training loss; 1 is the ELBO (default: 1)")
    g.add_argument("--kl-warmup-epochs", type=non_negative_int, default=0,
                   help="ramp the KL weight linearly, step by step, from 0 to --beta over this "
                        "many epochs; 0 is no warm-up. Metrics always report the true -ELBO "
                        "(default: 0)")
    g = parser.add_argument_group("evaluation and checkpoints")
    g.add_argument("--iw-samples", type=positive_int, default=0, metavar="K",
                   help="at the end, estimate -log p(x) on the test set by importance "
                        "weighting with K samples per digit (the IWAE bound; 500 or 5000 in "
                        "papers) (default: skip)")
    g.add_argument("--threads", type=integer_in(1, f"an integer from 1 to {MAX_THREADS}",
                                                 MAX_THREADS),
                   default=None, metavar="T",
                   help="NumPy: split every batch into T row blocks run on T threads, so the "
                        "elementwise work uses T cores too; ignored on CuPy. T changes results "
                        "in the last bits only (see the README) and a resumed run keeps the "
                        "stored T (default: 2 for batches of 128 or more on a multi-core "
                        "machine, else 1)")
    g.add_argument("--save-every", type=non_negative_int, default=0, metavar="N",
                   help="also write the training checkpoint every N epochs; the final one is "
                        "always written (default: 0, only the final)")
    g.add_argument("--resume", default=None, metavar="PATH",
                   help="continue the run stored in the checkpoint PATH (weights, optimizer "
                        "state, epoch, random-generator states) up to --epochs epochs in "
                        "total, writing into --out. Settings not given on the command line "
                        "are taken from the checkpoint; a given one that differs from it is "
                        "an error, except --epochs, --out, --no-progress, --save-every, "
                        "--iw-samples, --backend, --data-dir and --download")
    return parser


def _vae_config(args):
    from .train import TrainConfig

    return TrainConfig(
        backend=args.backend, dataset=args.dataset, data_dir=args.data_dir,
        download=args.download, epochs=args.epochs, batch_size=args.batch_size,
        hidden=args.hidden, latent_dim=args.latent_dim, activation=args.activation,
        likelihood=args.likelihood, binarize=args.binarize, optimizer=args.optimizer,
        lr=args.lr, momentum=args.momentum, beta=args.beta,
        kl_warmup_epochs=args.kl_warmup_epochs, seed=args.seed, dtype=args.dtype,
        out=args.out, progress=not args.no_progress, save_every=args.save_every,
        iw_samples=args.iw_samples, threads=args.threads)


def _given_flags(argv) -> set:
    """The destinations of the flags actually written on the command line (not defaults)."""
    probe = vae_parser()
    for action in probe._actions:  # a flag left out then sets nothing in the namespace
        action.default = argparse.SUPPRESS
    return set(vars(probe.parse_args(argv)))


def _resumed_config(config, path, given: set):
    """``config`` with every run-defining setting not given on the command line taken from ``path``.

    The settings of RESUME_MAY_CHANGE come from the command line (or its
    defaults); train_vae then rejects any given setting that differs from the
    stored one.
    """
    import dataclasses

    from .checkpoint import read_checkpoint
    from .train import RESUME_MAY_CHANGE, TrainConfig

    meta, _ = read_checkpoint(path)
    stored = meta.get("extra", {}).get("train_config")
    if not isinstance(stored, dict):
        raise CheckpointError(f"{str(path)!r} holds no training config, so a run cannot "
                              f"resume from it")
    try:
        resumed = TrainConfig.from_json(stored)
    except (TypeError, ValueError) as exc:
        raise CheckpointError(f"{str(path)!r}: the stored training config is not valid "
                              f"({exc})") from None
    for f in dataclasses.fields(TrainConfig):
        if f.name in RESUME_MAY_CHANGE or f.name in given:
            setattr(resumed, f.name, getattr(config, f.name))
    return resumed


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
        with sigterm_as_interrupt():
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

    from .train import figure_names, train_vae

    args = vae_parser().parse_args(argv)
    config = _vae_config(args)

    def train():
        nonlocal config
        if args.resume is not None:
            config = _resumed_config(config, args.resume, _given_flags(argv))
        return train_vae(config, resume=args.resume)

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
        print(f"test -log p(x) by importance weighting with {t['iw_samples']} samples: "
              f"{t['iw_nll']:.3f} nats per example")
    mem = metrics["memory"]
    if mem["peak_rss_mib"] is not None:
        gpu = f", CuPy pool {mem['gpu_pool_mib']:.0f} MiB" if "gpu_pool_mib" in mem else ""
        print(f"peak resident memory {mem['peak_rss_mib']:.0f} MiB{gpu}")
    files = ["metrics.json", "checkpoint.npz", *figure_names(config.latent_dim)]
    print(f"wrote {', '.join(files)} into {config.out}")
    return 0


# -- the autoencoder and the denoising autoencoder ------------------------------

AE_EPOCHS = 50  # about 8 s on one CPU core with the embedded digits


def _add_autoencoder_model_arguments(parser: argparse.ArgumentParser):
    g = parser.add_argument_group("model")
    g.add_argument("--hidden", type=int_list, default=(256,),
                   help="hidden widths of the encoder, comma-separated; the decoder mirrors "
                        "them (default: 256)")
    g.add_argument("--bottleneck", type=positive_int, default=64,
                   help="size of the code c = g(x) (default: 64)")
    g.add_argument("--activation", choices=("relu", "leaky_relu", "tanh", "sigmoid", "softplus"),
                   default="relu", help="(default: relu)")
    g.add_argument("--output", choices=("sigmoid", "linear"), default="sigmoid",
                   help="the decoder's last layer: sigmoid keeps x̂ in (0, 1) like the pixels "
                        "(default: sigmoid)")
    return g


#: How an autoencoder run ends early, for the parsers' descriptions.
_STOPS = (" Ctrl-C (or SIGTERM) saves the weights after the last completed epoch and exits "
          "with status 130 (143); a run that diverges saves the last finite weights and exits "
          "with status 2.")


def autoencoder_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_autoencoder.py",
        description="Train an autoencoder on L = 1/n Σ ‖x − f(g(x))‖² with hand-written "
                    "gradients. Writes metrics.json, checkpoint.npz, reconstructions.png and "
                    "loss.png into --out." + _STOPS)
    add_common_arguments(parser, out_default="runs/autoencoder", epochs_default=AE_EPOCHS)
    _add_autoencoder_model_arguments(parser)
    return parser


def denoising_parser() -> argparse.ArgumentParser:
    from .corruption import CORRUPTIONS, DEFAULT_LEVELS

    parser = argparse.ArgumentParser(
        prog="train_denoising.py",
        description="Train a denoising autoencoder on L = 1/n Σ ‖x − f(g(x̃))‖², x̃ ~ χ(x̃|x) "
                    "drawn afresh for every batch. Writes metrics.json, checkpoint.npz, "
                    "reconstructions.png (clean / corrupted / reconstructed) and loss.png "
                    "into --out." + _STOPS)
    add_common_arguments(parser, out_default="runs/denoising", epochs_default=AE_EPOCHS)
    g = _add_autoencoder_model_arguments(parser)
    defaults = ", ".join(f"{k} {v:g}" for k, v in DEFAULT_LEVELS.items())
    g.add_argument("--corruption", choices=tuple(CORRUPTIONS), default="gaussian",
                   help="χ(x̃|x): gaussian (x + σ n, clipped to [0, 1]), masking (a fraction ν "
                        "of the pixels set to 0) or salt-pepper (a fraction ν set to 0 or 1) "
                        "(default: gaussian)")
    g.add_argument("--noise-level", type=float, default=None,
                   help=f"σ for gaussian (≥ 0), ν for masking and salt-pepper (in [0, 1]) "
                        f"(default: {defaults})")
    g.add_argument("--no-clip", action="store_true",
                   help="gaussian only: do not clip x̃ to [0, 1]")
    return parser


def _run_autoencoder(args, corruption=None, noise_level=None, clip=True) -> int:
    from .train import AETrainConfig, train_autoencoder

    config = AETrainConfig(
        backend=args.backend, dataset=args.dataset, data_dir=args.data_dir,
        download=args.download, epochs=args.epochs, batch_size=args.batch_size,
        hidden=args.hidden, bottleneck=args.bottleneck, activation=args.activation,
        output=args.output, corruption=corruption, noise_level=noise_level, clip=clip,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, seed=args.seed,
        dtype=args.dtype, out=args.out, progress=not args.no_progress)
    metrics, status = run_guarded(
        lambda: train_autoencoder(config), args.out,
        lambda exc: " (the weights only: an autoencoder run cannot be resumed; "
                    "minivae.checkpoint.load_model reloads them)")
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
    print(f"wrote metrics.json, checkpoint.npz, reconstructions.png, loss.png into {args.out}")
    return 0


def main_autoencoder(argv=None) -> int:
    args = autoencoder_parser().parse_args(argv)
    return _run_autoencoder(args)


def main_denoising(argv=None) -> int:
    args = denoising_parser().parse_args(argv)
    return _run_autoencoder(args, corruption=args.corruption, noise_level=args.noise_level,
                            clip=not args.no_clip)
