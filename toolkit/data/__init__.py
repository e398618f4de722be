"""Data loading: IDX files (MNIST/Fashion-MNIST), splits, normalization, calibration readers."""

from toolkit.data.calibration import ArrayCalibrationReader
from toolkit.data.datasets import DEFAULT_FASHION_MNIST_ROOT, DataSplits, load_idx_splits
from toolkit.data.idx import read_idx

__all__ = [
    "ArrayCalibrationReader",
    "DEFAULT_FASHION_MNIST_ROOT",
    "DataSplits",
    "load_idx_splits",
    "read_idx",
]
