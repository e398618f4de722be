"""Train/val/test splits of an IDX image folder (Fashion-MNIST by default), read from disk only."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from toolkit.data.idx import read_idx
from toolkit.errors import DataError

__all__ = ["DEFAULT_FASHION_MNIST_ROOT", "FASHION_MNIST_LABELS", "DataSplits", "load_idx_splits"]

# Debian's `dataset-fashion-mnist` package installs the 70k images here.
DEFAULT_FASHION_MNIST_ROOT = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_LABELS = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
_FILES = {
    "train_x": "train-images-idx3-ubyte",
    "train_y": "train-labels-idx1-ubyte",
    "test_x": "t10k-images-idx3-ubyte",
    "test_y": "t10k-labels-idx1-ubyte",
}


@dataclass
class DataSplits:
    """uint8 NCHW images and int64 labels per split, plus the normalization the model expects."""

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray
    test_y: np.ndarray
    mean: float
    std: float
    labels: tuple[str, ...] = field(default_factory=tuple)

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    def normalize(self, x: np.ndarray) -> np.ndarray:
        """uint8 images -> float32 model input: (x / 255 - mean) / std."""
        return ((x.astype(np.float32) / 255.0 - self.mean) / self.std).astype(np.float32)


def _find(root: Path, stem: str) -> Path:
    for name in (stem + ".gz", stem):
        if (root / name).is_file():
            return root / name
    raise DataError(f"{root / stem}[.gz]: file not found (expected an IDX data set folder)")


def _read_pair(root: Path, xkey: str, ykey: str) -> tuple[np.ndarray, np.ndarray]:
    xpath, ypath = _find(root, _FILES[xkey]), _find(root, _FILES[ykey])
    x, y = read_idx(xpath), read_idx(ypath)
    if x.ndim != 3 or x.dtype != np.uint8:
        raise DataError(f"{xpath}: expected uint8 images of shape (N, H, W), got {x.dtype} {x.shape}")
    if y.ndim != 1 or len(y) != len(x):
        raise DataError(f"{ypath}: expected {len(x)} labels to match {xpath.name}, got shape {y.shape}")
    return x[:, None, :, :], y.astype(np.int64)


def load_idx_splits(
    root: str | Path = DEFAULT_FASHION_MNIST_ROOT,
    *,
    val_size: int = 5000,
    seed: int = 0,
    limit_train: int | None = None,
    limit_test: int | None = None,
    labels: tuple[str, ...] | None = None,
) -> DataSplits:
    """Read the four IDX files in `root`, hold out `val_size` training images (seeded), compute mean/std."""
    root = Path(root)
    train_x, train_y = _read_pair(root, "train_x", "train_y")
    test_x, test_y = _read_pair(root, "test_x", "test_y")
    if val_size >= len(train_x):
        raise DataError(f"{root}: val_size={val_size} leaves no training images (have {len(train_x)})")
    order = np.random.default_rng(seed).permutation(len(train_x))
    val_idx, train_idx = order[:val_size], order[val_size:]
    if limit_train is not None:
        train_idx = train_idx[:limit_train]
    if limit_test is not None:
        test_x, test_y = test_x[:limit_test], test_y[:limit_test]
    tx = train_x[train_idx]
    scaled = tx.astype(np.float32) / 255.0
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    if labels is None:
        labels = FASHION_MNIST_LABELS if n_classes == 10 else tuple(str(i) for i in range(n_classes))
    return DataSplits(
        train_x=tx,
        train_y=train_y[train_idx],
        val_x=train_x[val_idx],
        val_y=train_y[val_idx],
        test_x=test_x,
        test_y=test_y,
        mean=float(scaled.mean()),
        std=float(scaled.std()),
        labels=tuple(labels),
    )
