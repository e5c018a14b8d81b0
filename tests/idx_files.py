"""Small IDX files written by hand, for the loaders' tests (nothing is downloaded)."""

import gzip
import pathlib
import struct

import numpy as np

IDX_CODES = {np.dtype(np.uint8): 0x08, np.dtype(np.int8): 0x09, np.dtype(np.int16): 0x0B,
             np.dtype(np.int32): 0x0C, np.dtype(np.float32): 0x0D, np.dtype(np.float64): 0x0E}


def idx_bytes(array, type_code=None) -> bytes:
    """The IDX encoding of ``array``, written by hand (big-endian header and data)."""
    array = np.asarray(array)
    code = IDX_CODES[array.dtype] if type_code is None else type_code
    header = bytes([0, 0, code, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_idx(path, array, gz=None, **kw) -> pathlib.Path:
    path = pathlib.Path(path)
    raw = idx_bytes(array, **kw)
    gz = path.suffix == ".gz" if gz is None else gz
    path.write_bytes(gzip.compress(raw) if gz else raw)
    return path


def fake_mnist(n_train=7, n_test=3, seed=0):
    """Tiny uint8 images (n, 28, 28) and labels, as IDX would hold them."""
    rng = np.random.default_rng(seed)
    return {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }


def write_fake_dir(directory, arrays, gz=True, skip=()):
    directory = pathlib.Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    for stem, arr in arrays.items():
        name = stem + ".gz" if gz else stem
        if name not in skip and stem not in skip:
            write_idx(directory / name, arr, gz=gz)
    return directory
