"""`teachers:` and `student:`: the models trained, or loaded from a source (`TeacherSource`)."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    model_validator,
)

from toolkit.config.fields import Strict, registered
from toolkit.data.kinds import FACTORY_SPEC
from toolkit.errors import InputError
from toolkit.extensions import TEACHER_KINDS


class TrainConfig(Strict):
    arch: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    # This model's own random shift/flip augmentation (None: distill.augment), e.g. a teacher trained
    # augmented so that it does not memorize the images its cached logits are computed on.
    augment: bool | None = None
    # Keep the weights of the epoch with the best validation accuracy rather than the last epoch's.
    keep_best: bool = False


# auto (detected from the file) or a teacher kind registered in toolkit/models/teacher_kinds.py
SourceKind = Annotated[str, AfterValidator(registered(TEACHER_KINDS, "auto"))]


def library_kinds() -> tuple[str, ...]:
    """The teacher kinds written `library:name` (timm, torchvision); their weights come from a local file."""
    return tuple(n for n in TEACHER_KINDS.names() if getattr(TEACHER_KINDS.get(n), "library", False))


@dataclass
class TeacherSource:
    """Where a teacher comes from, to load it instead of training it (`toolkit.models.load_teacher`).

    A dataclass, so code can build any source and `load_teacher` reports a bad one as a `ConfigError`;
    in a config file pydantic checks it (kinds, no unknown keys) like the models around it.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    kind: SourceKind = "auto"  # auto: detected from the file
    path: Path | None = None  # the model file, or the weights file of a state_dict/factory/timm source
    arch: str | None = None  # registry name (state_dict) or timm/torchvision model name
    factory: str | None = None  # "package.module:callable"
    kwargs: dict[str, Any] = field(default_factory=dict)
    # The teacher's own preprocessing when it differs from the data's: input [H, W] and per-channel
    # mean/std of x / 255 (`toolkit.models.adapt.TeacherInput` maps the student's input to it).
    input_size: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path) if self.path is not None else None
        if self.kind == "auto" and self.factory is not None:
            self.kind = "factory"  # `{factory: mod:fn, path: w.pt}` says what it is without `kind:`

    @classmethod
    def parse(cls, spec: str | os.PathLike) -> TeacherSource:
        """A file (kind detected), or `timm:NAME`, `torchvision:NAME`, `package.module:callable` or a registry
        name, each optionally followed by `@WEIGHTS_FILE` (required for registry names and the libraries)."""
        text = os.fspath(spec)
        if Path(text).exists():
            return cls(path=Path(text))
        head, at, weights = text.rpartition("@") if "@" in text else (text, "", "")
        path = Path(weights) if at else None
        lib, sep, name = head.partition(":")
        if sep and lib in library_kinds():
            return cls(kind=lib, arch=name, path=path)  # type: ignore[arg-type]
        if FACTORY_SPEC.match(head):
            return cls(kind="factory", factory=head, path=path)
        if at and re.fullmatch(r"[A-Za-z_][\w.-]*", head):
            return cls(kind="state_dict", arch=head, path=path)
        return cls(path=Path(text))

    def label(self) -> str:
        """How errors name this source: the file, else the factory or `library:name`."""
        if self.kind in library_kinds():
            return f"{self.kind}:{self.arch}"
        return str(self.path or self.factory or self.arch or "teacher")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (as a teacher checkpoint keeps them to load the teacher again)."""
        return dict(asdict(self), path=str(self.path) if self.path is not None else None)


class TeacherConfig(TrainConfig):
    """A teacher trained from `arch`, or loaded from `source`; `weight` in a multi-teacher ensemble."""

    arch: str | None = None
    source: TeacherSource | None = None
    weight: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _arch_or_source(self):
        if (self.arch is None) == (self.source is None):
            raise InputError("give either arch (train this teacher) or source (load it), not both or neither")
        return self
