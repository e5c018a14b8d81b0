"""Downloads of the IDX files of MNIST and Fashion-MNIST, verified by their published MD5s."""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import logging
import os
import pathlib
import tempfile
import urllib.error
import urllib.request

from .dataset import DataError
from .idx import CHUNK, IDX_FILES

log = logging.getLogger(__name__)

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


def _default_cache_dir(name: str) -> pathlib.Path:
    """``$MINIVAE_DATA/<name>``, or ``~/.cache/minivae/<name>`` without the variable."""
    base = os.environ.get("MINIVAE_DATA") or "~/.cache/minivae"
    return pathlib.Path(base).expanduser() / name


def _md5_of_file(path: pathlib.Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(CHUNK), b""):
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
            for chunk in iter(lambda: resp.read(CHUNK), b""):
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


