"""IDX reader, splits and calibration reader, on files the tests create."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from tests.conftest import FASHION_MNIST, write_idx
from toolkit.data import ArrayCalibrationReader, load_idx_splits, read_idx
from toolkit.errors import DataError


def test_read_idx_roundtrip_gz_and_raw(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    for gz in (True, False):
        p = write_idx(tmp_path / f"a{gz}", arr, gz=gz)
        if gz:
            p = p.rename(p.with_suffix(".gz"))
        np.testing.assert_array_equal(read_idx(p), arr)


BAD_IDX = [
    ("missing", None, "file not found"),
    ("magic", b"\x01\x02\x08\x01\x00\x00\x00\x01\x05", "bad magic number"),
    ("type", b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "unknown IDX type byte 0x07"),
    ("short", b"\x00\x00\x08\x02\x00\x00\x00\x02", "truncated IDX header"),
    ("size", b"\x00\x00\x08\x01\x00\x00\x00\x03\x05", "expected 3 data bytes for shape (3,), got 1"),
]


@pytest.mark.parametrize("name,content,message", BAD_IDX, ids=[b[0] for b in BAD_IDX])
def test_read_idx_bad_input_names_file(tmp_path, name, content, message):
    path = tmp_path / f"{name}.idx"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(DataError) as err:
        read_idx(path)
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_truncated_gzip_is_a_data_error(tmp_path):
    path = tmp_path / "broken.gz"
    path.write_bytes(gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x04abcd")[:-6])
    with pytest.raises(DataError, match="broken.gz: cannot read"):
        read_idx(path)


def test_splits_are_seeded_disjoint_and_normalized(idx_folder):
    a = load_idx_splits(idx_folder, val_size=10, seed=3, labels=("a", "b", "c"))
    b = load_idx_splits(idx_folder, val_size=10, seed=3)
    assert (
        a.train_x.shape == (50, 1, 8, 8)
        and a.val_x.shape == (10, 1, 8, 8)
        and a.test_x.shape == (20, 1, 8, 8)
    )
    np.testing.assert_array_equal(a.val_y, b.val_y)
    assert b.labels == ("0", "1", "2") and a.labels == ("a", "b", "c")
    xn = a.normalize(a.train_x)
    assert xn.dtype == np.float32
    assert abs(float(xn.mean())) < 1e-4 and abs(float(xn.std()) - 1) < 1e-4


def test_split_errors_name_the_file(idx_folder):
    (idx_folder / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-labels-idx1-ubyte\[.gz\]: file not found"):
        load_idx_splits(idx_folder, val_size=10)


def test_label_count_mismatch(idx_folder):
    write_idx(idx_folder / "train-labels-idx1-ubyte.gz", np.zeros(59, np.uint8))
    with pytest.raises(DataError, match="expected 60 labels"):
        load_idx_splits(idx_folder, val_size=10)


def test_calibration_reader_yields_batches_then_none():
    r = ArrayCalibrationReader(np.ones((5, 1, 2, 2)), input_name="x", batch_size=2)
    sizes = [len(r.get_next()["x"]) for _ in range(3)]
    assert sizes == [2, 2, 1] and r.get_next() is None
    assert [len(b["x"]) for b in r] == [2, 2, 1]


@pytest.mark.skipif(not FASHION_MNIST.is_dir(), reason="dataset-fashion-mnist not installed (make data)")
def test_real_fashion_mnist_has_70k_images():
    s = load_idx_splits(FASHION_MNIST, val_size=5000)
    assert (len(s.train_y), len(s.val_y), len(s.test_y)) == (55000, 5000, 10000)
    assert s.labels[0] == "T-shirt/top" and 0.28 < s.mean[0] < 0.29 and 0.35 < s.std[0] < 0.36
    assert len(s.mean) == len(s.std) == 1 and [st.op for st in s.steps] == ["convert", "resize"]
