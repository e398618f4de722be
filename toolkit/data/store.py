"""Decoded images on disk: uint8 rows of one shape in a raw file, read by index, plus their lazy float view.

Reads use `os.pread`, not a memory map: mapped pages stay resident and count as the process's memory,
so an epoch over a folder larger than RAM would grow RSS to the whole cache.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from benchmarks.manifest import Preprocessing
from benchmarks.preprocess import to_float

__all__ = ["RowStore", "FloatView", "take_rows"]


class RowStore:
    """`shape[0]` uint8 rows of `shape[1:]` in `path`; indexing returns an in-memory array."""

    dtype = np.dtype(np.uint8)

    def __init__(self, path: str | Path, shape: tuple[int, ...], rows: np.ndarray | None = None) -> None:
        self.path, self._shape = Path(path), tuple(shape)
        # `rows` selects and orders rows of the file (a split of one cache); None: all of them.
        self.rows = np.arange(shape[0]) if rows is None else np.asarray(rows, dtype=np.int64)
        self._row_bytes = int(np.prod(shape[1:]))
        self._fd: int | None = None
        self._pid = -1

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.rows), *self._shape[1:])

    @property
    def ndim(self) -> int:
        return len(self._shape)

    def __len__(self) -> int:
        return len(self.rows)

    def subset(self, index) -> RowStore:
        """The rows at `index` (an array of positions in this store), without reading them."""
        return RowStore(self.path, self._shape, self.rows[index])

    def __getitem__(self, key) -> np.ndarray:
        picked = self.rows[key]
        if np.ndim(picked) == 0:
            return self._read(np.asarray([picked]))[0]
        return self._read(np.asarray(picked))

    def _read(self, rows: np.ndarray) -> np.ndarray:
        out = np.empty((len(rows), *self._shape[1:]), np.uint8)
        if len(rows) == 0:
            return out
        fd = self._open()
        flat = out.reshape(len(rows), -1)
        for i, r in enumerate(rows.tolist()):
            flat[i] = np.frombuffer(os.pread(fd, self._row_bytes, r * self._row_bytes), np.uint8)
        return out

    def _open(self) -> int:
        # One descriptor per process: a DataLoader worker forked from us must not share the parent's.
        if self._fd is None or self._pid != os.getpid():
            self._fd, self._pid = os.open(self.path, os.O_RDONLY), os.getpid()
        return self._fd

    def __getstate__(self) -> dict:
        return dict(self.__dict__, _fd=None, _pid=-1)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        arr = self[:]
        return arr if dtype is None else arr.astype(dtype)


class FloatView:
    """uint8 images (array or `RowStore`) seen as float32 model input, normalized batch by batch."""

    def __init__(self, images, pre: Preprocessing) -> None:
        self.images, self.pre = images, pre

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(self.images.shape)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, key) -> np.ndarray:
        x = np.asarray(self.images[key])
        return to_float(x, self.pre, channel_axis=0 if x.ndim == 3 else 1)  # one image, or a batch


def take_rows(x, idx: np.ndarray):
    """Rows `idx` of an in-memory array, or of a `RowStore` (a store of the same files, those rows only)."""
    return x.subset(idx) if isinstance(x, RowStore) else x[idx]
