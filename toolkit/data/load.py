"""`load_splits`: the one entry point that reads a run's data, by `data.kind` (`toolkit.data.kinds`); the
image kinds' readers: idx, image_folder, npz and factory."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from benchmarks.preprocess import image_steps
from toolkit.data.budget import apply_label_budget
from toolkit.data.datasets import DataSplits, load_idx_splits, splits_from_arrays
from toolkit.data.kinds import FACTORY_SPEC, DataKind, data_kind, register_data_kind
from toolkit.data.split import stratified_split
from toolkit.data.store import take_rows

__all__ = [
    "load_splits",
    "IdxOptions",
    "FolderOptions",
    "ArraysOptions",
    "FactoryOptions",
    "DEFAULT_IDX_ROOT",
]

DEFAULT_IDX_ROOT = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
Layout = Literal["NCHW", "NHWC", "NHW"]  # of npz/factory arrays (NHW: gray, no channel axis)
PositiveInt = Annotated[int, Field(ge=1)]


class IdxOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    val_size: int = Field(5000, ge=1)  # training images held out for validation


class FolderOptions(BaseModel):
    """Decoded to gray or RGB (None: gray when every image is), resized ([H, W], or one number for the
    shorter side), center-cropped; the same steps go into the manifest for the board."""

    model_config = ConfigDict(extra="forbid")

    color: Literal["L", "RGB"] | None = None
    resize: list[PositiveInt] | None = Field(None, min_length=1, max_length=2)
    center_crop: list[PositiveInt] | None = Field(None, min_length=2, max_length=2)

    @field_validator("resize", "center_crop", mode="before")
    @classmethod
    def _square(cls, v):
        return [v, v] if isinstance(v, int) and not isinstance(v, bool) else v


class ArraysOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layout: Layout = "NCHW"


class FactoryOptions(ArraysOptions):
    factory: str = Field(pattern=FACTORY_SPEC.pattern)  # "package.module:function" returning the splits


def load_splits(data, seed: int) -> DataSplits:
    """The train/val/test splits `data` (a `DataConfig`) describes, with their preprocessing; under
    `data.label_budget`, train holds the labeled rows and `pool_x` the others, without labels."""
    splits = data_kind(data.kind).read(data, seed)
    if data.label_budget is None:
        return splits
    return apply_label_budget(splits, data.label_budget, data.root or data.kind)


def _idx(data, seed: int) -> DataSplits:
    return load_idx_splits(
        data.root,
        val_size=data.options.val_size,
        seed=seed,
        limit_train=data.limit_train,
        limit_test=data.limit_test,
        labels=tuple(data.labels) if data.labels else None,
    )


def _arrays(data, seed: int) -> DataSplits:
    """An .npz file's arrays, or a factory's (`package.module:function`)."""
    from toolkit.data.arrays import load_factory, load_npz

    options = data.options
    where = data.root if data.kind == "npz" else options.factory
    parts, labels = (
        load_npz(Path(data.root), options.layout)
        if data.kind == "npz"
        else load_factory(options.factory, options.layout)
    )
    parts = _split_off(parts, data, seed, where)
    x = parts["train"][0]
    steps = image_steps(mode="L" if x.shape[1] == 1 else "RGB", resize=list(x.shape[2:]))
    return _finish(parts, data, labels, steps, where)


def _folder(data, seed: int) -> DataSplits:
    from toolkit.data.folder import load_folder

    parts, classes, steps = load_folder(
        Path(data.root),
        color=data.options.color,
        resize=data.options.resize,
        center_crop=data.options.center_crop,
        val_fraction=data.val_fraction,
        test_fraction=data.test_fraction,
        seed=seed,
        cache_dir=data.cache_dir,
    )
    return _finish(parts, data, data.labels or classes, steps, data.root)


def _split_off(parts: dict, data, seed: int, where) -> dict:
    """Split val and test off the training arrays where the source did not provide them."""
    missing = {n: getattr(data, f"{n}_fraction") for n in ("val", "test") if n not in parts}
    if not missing:
        return parts
    x, y = parts.pop("train")
    idx = stratified_split(y, missing, seed, where)
    return dict(parts, **{name: (x[i], y[i]) for name, i in idx.items()})


def _finish(parts: dict, data, labels, steps, where) -> DataSplits:
    """Apply the limits and build the splits (mean/std from the training split unless configured)."""
    if data.limit_train is not None:
        x, y = parts["train"]
        keep = np.random.default_rng(0).permutation(len(y))[: data.limit_train]
        keep.sort()
        parts["train"] = (take_rows(x, keep), y[keep])
    if data.limit_test is not None:
        x, y = parts["test"]
        parts["test"] = (take_rows(x, np.arange(min(len(y), data.limit_test))), y[: data.limit_test])
    return splits_from_arrays(parts, labels=labels, steps=steps, mean=data.mean, std=data.std, where=where)


register_data_kind(DataKind("idx", _idx, options=IdxOptions, default_root=DEFAULT_IDX_ROOT))
register_data_kind(DataKind("image_folder", _folder, options=FolderOptions))
register_data_kind(DataKind("npz", _arrays, options=ArraysOptions))
register_data_kind(DataKind("factory", _arrays, options=FactoryOptions, root=False))
