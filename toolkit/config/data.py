"""`data:`: where the examples come from (a registered data kind and its own fields) and how they split."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_serializer,
    model_validator,
)

from toolkit.config.fields import first_error
from toolkit.data.budget import LabelBudget
from toolkit.data.kinds import DATA_KINDS
from toolkit.errors import InputError


def _data_kind(name: str) -> str:
    if name not in DATA_KINDS:
        raise InputError(f"unknown data kind {name!r}; known: {', '.join(DATA_KINDS.names())}")
    return name


DataKindName = Annotated[str, AfterValidator(_data_kind)]


class DataConfig(BaseModel):
    """Where the images come from (`kind`), how they split, and the preprocessing they get. A kind with
    fields of its own (`DataKind.options`) takes them here too; they are read as `options`."""

    model_config = ConfigDict(extra="allow")
    _options: Any = PrivateAttr(None)  # the kind's own fields, validated (`options`)

    kind: DataKindName = "idx"  # a registered data kind (toolkit.data.kinds)
    # a folder, or the .npz / .csv file; idx: Fashion-MNIST from Debian by default; rotten_tomatoes and
    # bbc_news: the files `make text-data` extracts
    root: Path | None = None
    labels: list[str] | None = None  # class names; image folders use their folder names
    mean: list[float] | None = Field(None, min_length=1)  # per channel, of x / 255; None: from train
    std: list[Annotated[float, Field(gt=0)]] | None = Field(None, min_length=1)
    # image_folder/npz/factory/text without val/test: the fractions split off train, per class (seeded)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    cache_dir: Path | None = None  # decoded-image cache; None: $XDG_CACHE_HOME/edgekd/decoded
    workers: int = Field(0, ge=0)  # DataLoader worker processes reading training batches
    limit_train: int | None = Field(None, ge=1)
    limit_test: int | None = Field(None, ge=1)
    # Keep N labels per class (or a fraction) of the training split; the other rows become an unlabeled
    # pool whose labels no training path sees (`toolkit/data/budget.py`).
    label_budget: LabelBudget | None = None
    # Besides these, each kind's own fields (its `DataKind.options`), e.g. image_folder's resize, npz's
    # layout, text kinds' tokenizer and seq_len: `toolkit/data/load.py`, `toolkit/data/text.py`.

    @model_validator(mode="after")
    def _kind_needs(self):
        kind = DATA_KINDS.get(self.kind)
        if self.root is None:
            self.root = kind.default_root
        if kind.root and self.root is None:
            raise InputError(f"kind {self.kind} needs root")
        if kind.text and (self.mean is not None or self.std is not None):
            raise InputError("mean and std apply to images, not text")
        return self

    @model_validator(mode="after")
    def _kind_options(self):
        """The keys that are not common fields are the kind's own, checked by its options model."""
        extra = self.__pydantic_extra__ or {}
        model = DATA_KINDS.get(self.kind).options
        own = sorted(model.model_fields) if model is not None else []
        unknown = [k for k in extra if k not in own]
        if unknown:
            fields = f" (its own: {', '.join(own)})" if own else ""
            raise InputError(
                f"unknown key {unknown[0]!r}: not a field of data nor of kind {self.kind}{fields}"
            )
        if model is not None:
            try:
                self._options = model.model_validate(extra)
            except ValidationError as e:
                raise InputError(f"kind {self.kind}: {first_error(e)}") from None
        extra.clear()  # read as `options` only; written back next to the common fields (`_with_options`)
        return self

    @model_serializer(mode="wrap")
    def _with_options(self, handler, info):
        """The kind's own fields written flat, next to the common ones, as a config file gives them."""
        out = handler(self)
        return out if self._options is None else {**out, **self._options.model_dump(mode=info.mode)}

    @property
    def options(self):
        """This kind's own fields (its `DataKind.options` model), or None when it takes none."""
        return self._options

    @property
    def is_text(self) -> bool:
        return DATA_KINDS.get(self.kind).text
