"""IDX files: the format MNIST and Fashion-MNIST are distributed in, read as a bounded stream."""

from __future__ import annotations

import gzip
import math
import pathlib
import zlib

import numpy as np

from .dataset import IMAGE_SHAPE, N_CLASSES, DataError, Dataset, scale_pixels

#: The data sets read from IDX files.
IDX_DATASETS = ("mnist", "fashion-mnist")

#: The four files of an IDX data set, in the order train images, train
#: labels, test images, test labels.  The un-gzipped names are accepted too.
IDX_FILES = (
    "train-images-idx3-ubyte.gz",
    "train-labels-idx1-ubyte.gz",
    "t10k-images-idx3-ubyte.gz",
    "t10k-labels-idx1-ubyte.gz",
)

#: Bytes read (or hashed) at a time.
CHUNK = 1 << 20

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
            chunk = self.read(CHUNK)
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
    if images.ndim != 3 or images.shape[1:] != IMAGE_SHAPE or images.dtype != np.uint8:
        raise DataError(f"{images_path}: expected uint8 images of shape (n, 28, 28), "
                        f"found {images.dtype} {images.shape}")
    if labels.ndim != 1:
        raise DataError(f"{labels_path}: expected a 1-D label vector, found shape {labels.shape}")
    if labels.dtype.kind not in "iu":     # floats: NaN would become -2**63, 3.7 would become 3
        raise DataError(f"{labels_path}: labels must be stored as integers, found {labels.dtype}")
    if len(images) != len(labels):
        raise DataError(f"{images_path} holds {len(images)} images but {labels_path} "
                        f"holds {len(labels)} labels")
    if len(images) == 0:
        raise DataError(f"{images_path} holds no images; a data set needs at least one "
                        f"training and one test image")
    if labels.size and (labels.min() < 0 or labels.max() >= N_CLASSES):
        raise DataError(f"{labels_path}: labels must be 0..9, found "
                        f"{labels.min()}..{labels.max()}")
    return scale_pixels(images), labels.astype(np.int64)


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
    if name not in IDX_DATASETS:
        raise DataError(f"load_idx_dataset reads {' or '.join(map(repr, IDX_DATASETS))}, "
                        f"got {name!r}")
    train_x, train_y, test_x, test_y = _find_idx_files(pathlib.Path(data_dir).expanduser())
    x_train, y_train = _idx_split(train_x, train_y)
    x_test, y_test = _idx_split(test_x, test_y)
    return Dataset(name=name, x_train=x_train, y_train=y_train, x_test=x_test, y_test=y_test)


