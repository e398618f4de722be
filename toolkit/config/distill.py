"""`distill:`: how the students learn from the teachers; each method's own options block."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from toolkit.config.fields import Strict, first_error, registered
from toolkit.errors import InputError
from toolkit.extensions import DISTILL_METHODS


class ViewsConfig(Strict):
    """Stored augmented views (toolkit/distill/views.py): `count` shift/flip draws per training image, the
    teachers' logits on each computed once; view 0 is the image itself."""

    count: int = Field(4, ge=1)
    shift: int = Field(2, ge=0)
    flip: bool = True
    top_k: int | None = Field(None, ge=1)  # keep only the k largest logits per view (many classes)
    # Text data: the probability that a token of a view becomes [MASK] (shift and flip do not apply).
    mask: float = Field(0.15, gt=0, lt=1)
    # Images: the probability that a view has one random box erased (random erasing); 0: none.
    erase: float = Field(0.0, ge=0, lt=1)


# A distillation method registered in toolkit/distill/losses.py (or by a plugin): `toolkit.extensions`
DistillMethodName = Annotated[str, AfterValidator(registered(DISTILL_METHODS))]


class DistillConfig(BaseModel):
    """How the students learn from the teachers. Besides these fields, a method with options has its own
    block under its name (`dkd: {beta: 8}`, `hint: {student_layer: ...}`), checked by the method's model."""

    model_config = ConfigDict(extra="allow")

    methods: list[DistillMethodName] = Field(default_factory=lambda: ["kd"], min_length=1)
    # the default run's values, from the sweep (toolkit/configs/default.yaml says which trial)
    temperature: float = Field(2.05, gt=0)
    alpha: float = Field(0.2, ge=0, le=1)
    augment: bool = False  # random shifts/flips; teacher targets then come from an online forward
    views: ViewsConfig | None = None  # stored views for the KD students; the scratch control trains plain
    scratch_control: bool = True
    # Student seeds: the KD and scratch students are trained once per seed (the first one is exported).
    seeds: list[int] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _augment_or_views(self):
        if self.augment and self.views is not None:
            raise InputError("augment (new random views every batch) and views (stored ones): choose one")
        return self

    @model_validator(mode="after")
    def _method_blocks(self):
        """Each extra key is a method's options block, validated by that method's own model."""
        extra = self.__pydantic_extra__ or {}
        for key, block in extra.items():
            method = DISTILL_METHODS.get(key) if key in DISTILL_METHODS else None
            if method is None or method.options is None:
                with_options = [n for n in DISTILL_METHODS.names() if DISTILL_METHODS.get(n).options]
                raise InputError(
                    f"unknown key {key!r}: not a field of distill nor a method with options "
                    f"({', '.join(with_options)})"
                )
            try:
                extra[key] = method.options.model_validate(block)
            except ValidationError as e:
                raise InputError(f"{key}.{first_error(e)}") from None
        return self

    def options(self, method: str):
        """The options block of `method`: as the config gives it, else the method's defaults."""
        given = (self.__pydantic_extra__ or {}).get(method)
        return given if given is not None else DISTILL_METHODS.get(method).default_options()
