"""Calibration data for every quantizer, through one reader: `get_next() -> dict | None`."""

from __future__ import annotations

import numpy as np

__all__ = ["ArrayCalibrationReader"]


class ArrayCalibrationReader:
    """Yields `{input_name: batch}` from an array, then `None` (ORT's CalibrationDataReader): float rows as
    float32, token ids as the integers they are."""

    def __init__(self, x: np.ndarray, *, input_name: str = "input", batch_size: int = 1) -> None:
        x = x if np.issubdtype(x.dtype, np.integer) else x.astype(np.float32)
        self.x, self.input_name, self.batch_size = x, input_name, batch_size
        self._pos = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._pos >= len(self.x):
            return None
        batch = self.x[self._pos : self._pos + self.batch_size]
        self._pos += self.batch_size
        return {self.input_name: batch}

    def rewind(self) -> None:
        self._pos = 0

    def __iter__(self):
        self.rewind()
        while (item := self.get_next()) is not None:
            yield item
