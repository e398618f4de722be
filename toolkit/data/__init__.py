"""Data: IDX files, image folders, arrays and factories; splits, preprocessing, calibration readers."""

from toolkit.data.calibration import ArrayCalibrationReader
from toolkit.data.datasets import DEFAULT_FASHION_MNIST_ROOT, DataSplits, load_idx_splits
from toolkit.data.idx import read_idx
from toolkit.data.load import load_splits

__all__ = [
    "ArrayCalibrationReader",
    "DEFAULT_FASHION_MNIST_ROOT",
    "DataSplits",
    "load_idx_splits",
    "load_splits",
    "read_idx",
]
