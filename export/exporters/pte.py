"""ExecuTorch `.pte` files lowered with the XNNPACK partitioner: fp32, and static int8 through PT2E with the
XNNPACK quantizer (symmetric, calibrated on the run's calibration rows, per channel as the run decides).
The program's input shape is fixed at the sample's (batch 1), as TFLite files are."""

from __future__ import annotations

from benchmarks.manifest import FileSettings
from export._files import atomic_path, failure_reason
from export.exporters import Exporter, ExportJob, register_exporter
from toolkit.errors import ExportError

__all__ = ["write_pte"]


def write_pte(job: ExportJob) -> FileSettings:
    """One `.pte` file at `job.precision`; its settings record how many graph nodes XNNPACK took."""
    try:
        return _write(job)
    except ExportError:
        raise
    except Exception as e:  # torch.export, the quantizer or the lowering: one line naming the file
        raise ExportError(f"{job.dst.name}: ExecuTorch export failed ({failure_reason(e)})") from e


def _write(job: ExportJob) -> FileSettings:
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    program = torch.export.export(job.model.eval(), (job.sample,))
    settings = FileSettings()
    if job.precision == "int8":
        program, settings = _int8(job, program)
    lowered = to_edge_transform_and_lower(program, partitioner=[XnnpackPartitioner()])
    delegated, total = _delegated(lowered)
    with atomic_path(job.dst) as tmp:
        tmp.write_bytes(lowered.to_executorch().buffer)
    return settings.merged(delegate="XnnpackBackend", delegated_nodes=delegated, graph_nodes=total)


def _int8(job: ExportJob, program):
    """The program quantized with PT2E and the XNNPACK quantizer, calibrated on `job.calib` one row a time."""
    import torch
    from executorch.backends.xnnpack.quantizer.xnnpack_quantizer import (
        XNNPACKQuantizer,
        get_symmetric_quantization_config,
    )
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e

    config = get_symmetric_quantization_config(is_per_channel=job.per_channel)
    prepared = prepare_pt2e(program.module(), XNNPACKQuantizer().set_global(config))
    with torch.no_grad():
        for row in job.calib:
            prepared(torch.from_numpy(row[None]))
    quantized = torch.export.export(convert_pt2e(prepared), (job.sample,))
    settings = FileSettings(
        mode="static", format="PT2E (XNNPACKQuantizer, symmetric)", per_channel=job.per_channel
    )
    return quantized, settings


def _delegated(lowered) -> tuple[int, int]:
    """(operator nodes inside XNNPACK's delegate calls, operator nodes in all) of the lowered program."""
    graph = lowered.exported_program().graph_module
    calls = [n for n in graph.graph.nodes if n.op == "call_function"]
    inside = 0
    for name, sub in graph.named_children():
        if name.startswith("lowered_module"):
            inner = sub.original_module.graph_module.graph.nodes
            inside += sum(n.op == "call_function" for n in inner)
    outside = [
        n for n in calls if "executorch_call_delegate" not in str(n.target) and "getitem" not in str(n.target)
    ]
    return inside, inside + len(outside)


register_exporter(Exporter("pte", ("fp32", "int8"), write_pte, requires=("executorch",)))
