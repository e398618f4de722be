"""The manifest's preprocessing, applied by these functions in training, calibration, parity and on the board.

numpy only at import; Pillow is imported by the functions that decode images (`edgekd[predict]` on a board).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from benchmarks.errors import InputError, first_line
from benchmarks.manifest import (
    CenterCropStep,
    ConvertStep,
    ImageStep,
    Preprocessing,
    ResizeStep,
    TokenPreprocessing,
)

__all__ = [
    "IMAGE_SUFFIXES",
    "image_steps",
    "decode_image",
    "apply_steps",
    "to_float",
    "model_input",
    "parse_preprocessing",
]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".webp")


def image_steps(
    *, mode: str, resize: Sequence[int] | None = None, center_crop: Sequence[int] | None = None
) -> list[ImageStep]:
    """The ordered steps from decoded image to uint8 array: convert, then resize, then center crop."""
    steps: list[ImageStep] = [ConvertStep(op="convert", mode=mode)]
    if resize:
        steps.append(ResizeStep(op="resize", size=list(resize)))
    if center_crop:
        steps.append(CenterCropStep(op="center_crop", size=list(center_crop)))
    return steps


def decode_image(path: str | Path, steps: Sequence[ImageStep]) -> np.ndarray:
    """Decode one image file and apply `steps`: uint8 (C, H, W); `ValueError` naming the file otherwise."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.load()
            return apply_steps(img, steps, where=path)
    except (OSError, UnidentifiedImageError, Image.DecompressionBombError, SyntaxError) as e:
        reason = first_line(e)
        raise InputError(f"{path}: cannot decode image ({reason[:160]})") from None


def apply_steps(img, steps: Sequence[ImageStep], *, where: str | Path = "image") -> np.ndarray:
    """A PIL image through `steps` in order -> uint8 (C, H, W)."""
    from PIL import Image

    for step in steps:
        if step.op == "convert":
            img = _eight_bit(img, where)
            if img.mode == "P" and "transparency" in img.info:
                img = img.convert("RGBA")  # Pillow asks for this before dropping a palette's alpha
            img = img.convert(step.mode)
        elif step.op == "resize":
            resample = getattr(Image.Resampling, step.interpolation.upper())
            img = img.resize(_resized(img.size, step.size), resample)
        elif step.op == "center_crop":
            img = _center_crop(img, step.size, where)
    arr = np.asarray(img, dtype=np.uint8)
    return arr[None] if arr.ndim == 2 else np.ascontiguousarray(arr.transpose(2, 0, 1))


def _eight_bit(img, where: str | Path):
    """16-bit gray scaled to 8 bits (Pillow's own convert would clip it to 0 or 255); 32-bit refused."""
    from PIL import Image

    if img.mode.startswith("I;16"):
        return Image.fromarray((np.asarray(img, dtype=np.uint16) >> 8).astype(np.uint8))
    if img.mode in ("I", "F"):
        raise InputError(f"{where}: 32-bit {img.mode} images are not supported; save them as 8 or 16 bits")
    return img


def _resized(size: tuple[int, int], target: Sequence[int]) -> tuple[int, int]:
    """Pillow's (W, H) for `target` [H, W], or with one number the shorter side scaled to it."""
    w, h = size
    if len(target) == 2:
        return target[1], target[0]
    short = target[0]
    return (short, max(1, round(h * short / w))) if w <= h else (max(1, round(w * short / h)), short)


def _center_crop(img, size: Sequence[int], where: str | Path):
    h, w = size
    if img.height < h or img.width < w:
        raise InputError(f"{where}: image is {img.height}x{img.width}, smaller than center_crop {h}x{w}")
    top, left = (img.height - h) // 2, (img.width - w) // 2
    return img.crop((left, top, left + w, top + h))


def to_float(x: np.ndarray, pre: Preprocessing, *, channel_axis: int = 1) -> np.ndarray:
    """uint8 images -> float32 model input: (x * scale - mean) / std per channel along `channel_axis`."""
    shape = [1] * x.ndim
    shape[channel_axis] = -1
    mean = np.asarray(pre.mean, dtype=np.float32).reshape(shape)
    std = np.asarray(pre.std, dtype=np.float32).reshape(shape)
    return ((x.astype(np.float32) * np.float32(pre.scale) - mean) / std).astype(np.float32)


def parse_preprocessing(data: dict) -> Preprocessing | TokenPreprocessing:
    """The manifest's `input.preprocessing` object (images, or `kind: tokens`) from its dict."""
    return (TokenPreprocessing if data.get("kind") == "tokens" else Preprocessing).model_validate(data)


def model_input(
    x: np.ndarray, pre: Preprocessing | TokenPreprocessing, *, channel_axis: int = 1
) -> np.ndarray:
    """Stored examples -> what the files take: uint8 images normalized (`to_float`), token ids as int64
    (each backend casts them to its file's int type)."""
    if isinstance(pre, TokenPreprocessing):
        return np.asarray(x, dtype=np.int64)
    return to_float(x, pre, channel_axis=channel_axis)
