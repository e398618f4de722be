"""Image folders (`root/<class>/*.png|jpg|...`, optionally under `train/`, `val/`, `test/`), decoded once.

Decoding goes into a uint8 cache file keyed by the file list, sizes, mtimes and the preprocessing, so later
epochs and stages read rows instead of decoding JPEGs again, and a folder larger than RAM still trains.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from benchmarks.files import atomic_path, user_cache, write_text_atomic
from benchmarks.manifest import ImageStep
from benchmarks.preprocess import IMAGE_SUFFIXES, decode_image, image_steps
from toolkit.data.split import stratified_split
from toolkit.data.store import RowStore
from toolkit.errors import DataError, first_line

__all__ = ["FolderSplit", "find_images", "folder_splits", "decode_cached", "default_cache_dir"]

SPLIT_NAMES = ("train", "val", "test")
_GRAY_MODES = {"1", "L", "LA", "I", "I;16", "I;16B", "I;16L", "F"}


@dataclass
class FolderSplit:
    """Image files and their class indices (into `classes`)."""

    files: list[Path]
    targets: np.ndarray


def _class_dirs(root: Path) -> list[Path]:
    return sorted(d for d in root.iterdir() if d.is_dir() and not d.name.startswith("."))


def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


def find_images(root: Path, classes: list[str] | None = None) -> tuple[FolderSplit, list[str]]:
    """Files under `root/<class>/` and the class names (sorted folder names unless `classes` is given)."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    dirs = _class_dirs(root)
    names = [d.name for d in dirs]
    if classes is None:
        if len(dirs) < 2:
            what = f"only one class folder ({names[0]!r})" if dirs else "no class folders"
            raise DataError(f"{root}: {what}; an image folder needs one sub-folder per class, at least two")
        classes = names
    files, targets = [], []
    for d in dirs:
        if d.name not in classes:
            raise DataError(f"{d}: class {d.name!r} is not among the training classes {classes[:5]}…"[:300])
        found = _images_in(d)
        if not found:
            raise DataError(f"{d}: class folder holds no images ({'/'.join(IMAGE_SUFFIXES)})")
        files += found
        targets += [classes.index(d.name)] * len(found)
    return FolderSplit(files, np.asarray(targets, dtype=np.int64)), classes


def folder_splits(
    root: Path, *, val_fraction: float, test_fraction: float, seed: int
) -> tuple[dict[str, FolderSplit], list[str]]:
    """train/val/test from sub-folders where present, the rest split off `train` (seeded, stratified)."""
    if not root.is_dir():
        raise DataError(f"{root}: image folder not found")
    has = {name: (root / name).is_dir() for name in SPLIT_NAMES}
    if (has["val"] or has["test"]) and not has["train"]:
        # Otherwise val/ or test/ would be read as a class and its images trained on.
        raise DataError(f"{root}: has val/ or test/ but no train/; put the training images in train/<class>/")
    train, classes = find_images(root / "train" if has["train"] else root)
    splits = {"train": train}
    for name in ("val", "test"):
        if has[name]:
            splits[name] = find_images(root / name, classes)[0]
    missing = [n for n in ("val", "test") if n not in splits]
    if missing:
        fractions = {"val": val_fraction, "test": test_fraction}
        splits.update(_stratified(splits.pop("train"), {n: fractions[n] for n in missing}, seed, root))
    return splits, classes


def _stratified(
    split: FolderSplit, fractions: dict[str, float], seed: int, root: Path
) -> dict[str, FolderSplit]:
    parts = stratified_split(split.targets, fractions, seed, root)
    return {n: FolderSplit([split.files[i] for i in idx], split.targets[idx]) for n, idx in parts.items()}


def default_cache_dir() -> Path:
    return user_cache("decoded")


def color_mode(files: list[Path]) -> str:
    """`L` when every image is gray, else `RGB` (headers only: nothing is decoded)."""
    from PIL import Image

    for path in files:
        try:
            with Image.open(path) as img:
                if img.mode not in _GRAY_MODES:
                    return "RGB"
        except (OSError, SyntaxError, Image.DecompressionBombError) as e:
            reason = first_line(e, limit=160)
            raise DataError(f"{path}: cannot read image ({reason})") from None
    return "L"


def _cache_key(files: list[Path], steps: list[ImageStep]) -> str:
    h = hashlib.sha256(json.dumps([s.model_dump() for s in steps]).encode())
    for path in files:
        st = path.stat()
        h.update(f"{path.resolve()}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:32]


def decode_cached(files: list[Path], steps: list[ImageStep], cache_dir: Path) -> RowStore:
    """`files` decoded through `steps` into one uint8 cache file (built once, rebuilt when they change)."""
    key = _cache_key(files, steps)
    data, meta = cache_dir / f"{key}.u8", cache_dir / f"{key}.json"
    if meta.is_file() and data.is_file():
        try:
            shape = tuple(int(d) for d in json.loads(meta.read_text())["shape"])
        except (ValueError, KeyError, TypeError):
            shape = ()  # an unreadable record of the cache: rebuilt below
        if shape and data.stat().st_size == int(np.prod(shape)):
            return RowStore(data, shape)
    with atomic_path(data) as tmp:
        shape = _decode_into(tmp, files, steps)
    # The metadata is written last: a cache without it (a killed build) is rebuilt, never read.
    write_text_atomic(meta, json.dumps({"shape": list(shape), "files": len(files)}))
    return RowStore(data, shape)


def _decode_into(dst: Path, files: list[Path], steps: list[ImageStep]) -> tuple[int, ...]:
    first: tuple[Path, tuple[int, ...]] | None = None
    with open(dst, "wb") as f:
        for path in files:
            try:
                arr = decode_image(path, steps)
            except ValueError as e:
                raise DataError(str(e)) from None
            if first is None:
                first = (path, arr.shape)
            elif arr.shape != first[1]:
                raise DataError(
                    f"{path}: image is {_hw(arr.shape)}, {first[0].name} is {_hw(first[1])}; "
                    "set data.resize (and data.center_crop) to train on images of mixed sizes"
                )
            f.write(arr.tobytes())
    return (len(files), *first[1])


def _hw(shape: tuple[int, ...]) -> str:
    return f"{shape[1]}x{shape[2]} ({shape[0]} channel{'s' * (shape[0] > 1)})"


def load_folder(
    root: Path,
    *,
    color: str | None,
    resize: list[int] | None,
    center_crop: list[int] | None,
    val_fraction: float,
    test_fraction: float,
    seed: int,
    cache_dir: Path | None,
) -> tuple[dict[str, tuple[RowStore, np.ndarray]], list[str], list[ImageStep]]:
    """Each split's decoded images (one cache per split) and labels, the class names and the image steps."""
    splits, classes = folder_splits(root, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
    mode = color or color_mode([f for s in splits.values() for f in s.files])
    steps = image_steps(mode=mode, resize=resize, center_crop=center_crop)
    cache = cache_dir or default_cache_dir()
    out = {name: (decode_cached(s.files, steps, cache), s.targets) for name, s in splits.items()}
    shapes = {name: rows.shape[1:] for name, (rows, _) in out.items()}
    if len(set(shapes.values())) > 1:
        raise DataError(f"{root}: splits decode to different sizes {shapes}; set data.resize")
    return out, classes, steps
