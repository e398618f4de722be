"""`.pt2` files: the model as a saved `torch.export` ExportedProgram, the float reference in torch."""

from __future__ import annotations

from typing import Any

from export.exporters import Exporter, ExportJob, register_exporter

__all__ = ["write_program"]


def write_program(job: ExportJob) -> None:
    """The fp32 ExportedProgram (nothing to record beyond the format)."""
    from export.torch_program import export_program

    export_program(job.model, job.sample, job.dst)


def _models(name: str, settings: Any, precisions: tuple[str, ...]) -> tuple[str, ...]:
    """With `export.torch_models: teacher`, only the teacher gets a .pt2: its own framework, the baseline."""
    return precisions if settings.torch_models != "teacher" or name == "teacher" else ()


# The .pt2 is the float reference program itself: a board has no reference outputs of it to compare.
register_exporter(Exporter("torch", ("fp32",), write_program, select=_models, reference_outputs=False))
