"""What every config section is built from: strict models, registered names, the first error."""

from __future__ import annotations

from typing import Annotated

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
)

from benchmarks.registry import Registry
from toolkit.errors import InputError


class Strict(BaseModel):
    """A config section: unknown keys are rejected."""

    model_config = ConfigDict(extra="forbid")


PositiveInt = Annotated[int, Field(ge=1)]


def registered(registry: Registry, *also: str):
    """A validator: the value is one of `registry`'s names (or `also`)."""

    def check(name: str) -> str:
        if name not in also and name not in registry:
            known = ", ".join([*also, *registry.names()])
            raise InputError(f"unknown {registry.kind} {name!r}; known: {known}")
        return name

    return check


def first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    # A key from the file is quoted when it is not printable, so a line break in it cannot split the line.
    where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err["loc"]) or "(top level)"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"
