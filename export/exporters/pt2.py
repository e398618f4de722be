"""`.pt2` files: the model as a saved `torch.export` ExportedProgram, the float reference in torch."""

from __future__ import annotations

from export.exporters import Exporter, ExportJob, register_exporter

__all__ = ["write_program"]


def write_program(job: ExportJob) -> None:
    """The fp32 ExportedProgram (nothing to record beyond the format)."""
    from export.torch_program import export_program

    export_program(job.model, job.sample, job.dst)


register_exporter(Exporter("torch", ("fp32",), write_program))
