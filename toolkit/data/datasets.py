"""Train/val/test splits of the data a run trains on: IDX files (Fashion-MNIST by default), an image folder,
an `.npz` or a factory, each read from disk only, with the preprocessing the model and the board apply."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from benchmarks.manifest import ImageStep, Preprocessing, TokenPreprocessing
from benchmarks.preprocess import image_steps, model_input
from toolkit.data.budget import LabeledRows
from toolkit.data.idx import read_idx
from toolkit.data.store import FloatView, RowStore
from toolkit.errors import DataError

__all__ = [
    "DEFAULT_FASHION_MNIST_ROOT",
    "FASHION_MNIST_LABELS",
    "DataSplits",
    "load_idx_splits",
    "channel_stats",
    "splits_from_arrays",
]

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
    """uint8 NCHW images (arrays, or `RowStore`s of a decoded folder) and int64 labels per split, plus the
    preprocessing the model expects: image `steps`, then per-channel (x / 255 - mean) / std. Text: int64
    token ids (N, L) and `tokens` (the tokenizer that made them); mean and std are empty."""

    train_x: np.ndarray | RowStore
    train_y: np.ndarray
    val_x: np.ndarray | RowStore
    val_y: np.ndarray
    test_x: np.ndarray | RowStore
    test_y: np.ndarray
    mean: tuple[float, ...]
    std: tuple[float, ...]
    labels: tuple[str, ...] = field(default_factory=tuple)
    steps: list[ImageStep] = field(default_factory=list)
    tokens: TokenPreprocessing | None = None
    vocab_size: int | None = None  # text: the tokenizer's vocabulary (token ids are below it)
    # Under a label budget (`toolkit.data.budget`): the training rows whose labels were dropped, and which
    # rows kept theirs. None: every training row is labeled.
    pool_x: np.ndarray | RowStore | None = None
    labeled: LabeledRows | None = None

    @property
    def input_shape(self) -> tuple[int, ...]:
        return tuple(self.train_x.shape[1:])

    @property
    def is_text(self) -> bool:
        return self.tokens is not None

    @property
    def preprocessing(self) -> Preprocessing | TokenPreprocessing:
        if self.tokens is not None:
            return self.tokens
        return Preprocessing(scale=1 / 255, mean=list(self.mean), std=list(self.std), steps=self.steps)

    def normalize(self, x) -> np.ndarray:
        """Stored examples -> model input, exactly as the board computes it (`model_input`): float32
        images, or int64 token ids."""
        return model_input(np.asarray(x), self.preprocessing)

    def model_input(self, x) -> np.ndarray | FloatView:
        """Float input for a whole split: normalized in memory, or batch by batch for images on disk."""
        return FloatView(x, self.preprocessing) if isinstance(x, RowStore) else self.normalize(x)


def channel_stats(x, chunk: int = 256) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Per-channel mean and std of uint8 NCHW images scaled to [0, 1], read `chunk` images at a time
    (float32 chunks, float64 sums: 256 RGB 96-px images take 28 MB instead of a float64 copy's 57)."""
    sums, squares = np.zeros(x.shape[1]), np.zeros(x.shape[1])
    for i in range(0, len(x), chunk):
        part = np.asarray(x[i : i + chunk], dtype=np.float32) / np.float32(255)
        sums += part.sum(axis=(0, 2, 3), dtype=np.float64)
        squares += np.square(part).sum(axis=(0, 2, 3), dtype=np.float64)
    n = len(x) * x.shape[2] * x.shape[3]
    mean = sums / n
    std = np.sqrt(np.maximum(squares / n - mean**2, 0.0))
    return tuple(float(m) for m in mean), tuple(max(float(s), 1e-6) for s in std)


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
    n_classes = int(max(train_y.max(), test_y.max())) + 1
    if labels is None:
        labels = FASHION_MNIST_LABELS if n_classes == 10 else tuple(str(i) for i in range(n_classes))
    tx = train_x[train_idx]
    mean, std = _scalar_stats(tx)
    return DataSplits(
        train_x=tx,
        train_y=train_y[train_idx],
        val_x=train_x[val_idx],
        val_y=train_y[val_idx],
        test_x=test_x,
        test_y=test_y,
        mean=(mean,),
        std=(std,),
        labels=tuple(labels),
        steps=image_steps(mode="L", resize=list(train_x.shape[2:])),
    )


def _scalar_stats(x: np.ndarray) -> tuple[float, float]:
    # float32 over the whole split, as the IDX path always computed it (its runs stay comparable).
    scaled = x.astype(np.float32) / 255.0
    return float(scaled.mean()), float(scaled.std())


def splits_from_arrays(
    parts: dict[str, tuple],
    *,
    labels: list[str] | None,
    steps: list[ImageStep],
    mean: list[float] | None,
    std: list[float] | None,
    where: object,
) -> DataSplits:
    """DataSplits from train/val/test (images, labels), with mean/std from the training split unless given."""
    train_x = parts["train"][0]
    n_classes = int(max(int(y.max()) for _, y in parts.values() if len(y))) + 1
    if labels is not None and len(labels) < n_classes:
        raise DataError(f"{where}: {len(labels)} label names for {n_classes} classes")
    if len(np.unique(parts["train"][1])) < 2:
        raise DataError(f"{where}: the training split holds a single class; a classifier needs two or more")
    channels = train_x.shape[1]
    if mean is None or std is None:
        got_mean, got_std = channel_stats(train_x)
        mean, std = mean or list(got_mean), std or list(got_std)
    for key, values in (("mean", mean), ("std", std)):
        if len(values) not in (1, channels):
            raise DataError(f"{where}: data.{key} has {len(values)} values for {channels}-channel images")
    return DataSplits(
        train_x=train_x,
        train_y=parts["train"][1],
        val_x=parts["val"][0],
        val_y=parts["val"][1],
        test_x=parts["test"][0],
        test_y=parts["test"][1],
        mean=tuple(float(m) for m in mean),
        std=tuple(float(s) for s in std),
        labels=tuple(labels or (str(i) for i in range(n_classes))),
        steps=steps,
    )
