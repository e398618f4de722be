"""torch -> ONNX (dynamo or legacy TorchScript exporter) as one self-contained file; simplify and strip."""

from __future__ import annotations

import importlib.util
import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from export._files import atomic_path, failure_reason
from toolkit.errors import ExportError, InputError

__all__ = [
    "export_onnx",
    "check_export_arguments",
    "simplify_onnx",
    "SimplifyStats",
    "strip_metadata",
    "StripStats",
    "size_breakdown",
    "node_count",
    "onnx_opset",
    "INPUT_NAME",
    "OUTPUT_NAME",
]

INPUT_NAME, OUTPUT_NAME = "input", "logits"
Exporter = Literal["dynamo", "legacy"]

# torch 2.13: the dynamo exporter writes opset 18+ (asked for less, it silently keeps 18); the legacy
# TorchScript exporter covers 7..20.
_OPSETS = {"dynamo": (18, 23), "legacy": (7, 20)}
# Model-level metadata written by tools (torch.onnx, onnxruntime's pre-processing), not by users.
_TOOL_PREFIXES = ("pkg.", "onnx.")


@dataclass(frozen=True)
class SimplifyStats:
    """What `simplify_onnx` did: the tool used and the main graph's node count before and after."""

    tool: Literal["onnxslim", "ort"]
    nodes_before: int
    nodes_after: int


@dataclass(frozen=True)
class StripStats:
    """What `strip_metadata` removed (items counted), whether it compacted names, and the file's bytes."""

    metadata_props: int
    doc_strings: int
    value_info: int
    compact_names: bool
    bytes_before: int
    bytes_after: int


def check_export_arguments(*, opset: int, exporter: str) -> None:
    """Raise `ValueError` for an unknown exporter or an opset it cannot write."""
    if exporter not in _OPSETS:
        raise InputError(f"exporter must be one of {sorted(_OPSETS)}, got {exporter!r}")
    lo, hi = _OPSETS[exporter]
    if not lo <= opset <= hi:
        hint = "; use exporter='legacy' for opset 7-17" if exporter == "dynamo" and opset < lo else ""
        raise InputError(f"opset {opset} is outside {lo}-{hi} for exporter={exporter!r}{hint}")


def export_onnx(
    model,
    sample,
    dst: str | Path,
    *,
    opset: int = 18,
    dynamic_batch: bool = True,
    exporter: Exporter = "dynamo",
    strip: bool = True,
) -> Path:
    """Export `model` traced on `sample` (NCHW) to `dst`; batch dynamic by default, exporter metadata
    stripped unless `strip=False` (see `strip_metadata`)."""
    check_export_arguments(opset=opset, exporter=exporter)
    model = model.eval()
    with atomic_path(dst) as tmp:
        try:
            if exporter == "dynamo":
                _export_dynamo(model, sample, tmp, opset=opset, dynamic_batch=dynamic_batch)
            else:
                _export_legacy(model, sample, tmp, opset=opset, dynamic_batch=dynamic_batch)
        except Exception as e:  # the exporter raises many types; report the first line with the format
            hint = "; exporter='legacy' may handle this model" if exporter == "dynamo" else ""
            raise ExportError(f"{dst}: ONNX export failed ({exporter}): {failure_reason(e)}{hint}") from e
        written = onnx_opset(tmp)
        if written != opset:
            raise ExportError(f"{dst}: ONNX export wrote opset {written}, not the {opset} asked for")
        if strip:
            strip_metadata(tmp, tmp)
    return Path(dst)


def _export_dynamo(model, sample, path: Path, *, opset: int, dynamic_batch: bool) -> None:
    import torch

    dynamic_shapes = None
    if dynamic_batch:
        arg = next(iter(inspect.signature(model.forward).parameters))
        dynamic_shapes = {arg: {0: torch.export.Dim("batch", min=1, max=4096)}}
    torch.onnx.export(
        model,
        (sample,),
        str(path),
        dynamo=True,
        external_data=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_shapes=dynamic_shapes,
        verbose=False,
    )


def _export_legacy(model, sample, path: Path, *, opset: int, dynamic_batch: bool) -> None:
    import torch

    axes = {INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}} if dynamic_batch else None
    torch.onnx.export(
        model,
        (sample,),
        str(path),
        dynamo=False,
        opset_version=opset,
        input_names=[INPUT_NAME],
        output_names=[OUTPUT_NAME],
        dynamic_axes=axes,
        do_constant_folding=True,
    )


def onnx_opset(path: str | Path) -> int | None:
    """The default-domain opset an ONNX file declares."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next((o.version for o in model.opset_import if o.domain in ("", "ai.onnx")), None)


def node_count(path: str | Path) -> int:
    """Nodes in the main graph of an ONNX file (subgraphs not counted)."""
    import onnx

    return len(onnx.load(str(path), load_external_data=False).graph.node)


def simplify_onnx(
    src: str | Path,
    dst: str | Path,
    *,
    tool: Literal["auto", "onnxslim", "ort"] = "auto",
    strip: bool = True,
) -> SimplifyStats:
    """Fold constants and drop redundant nodes with onnxslim (`auto` when installed) or onnxruntime's
    offline optimizer at basic level, whose output stays portable ONNX; returns node counts."""
    if tool not in ("auto", "onnxslim", "ort"):
        raise InputError(f"tool must be one of ['auto', 'onnxslim', 'ort'], got {tool!r}")
    has_slim = importlib.util.find_spec("onnxslim") is not None
    if tool == "onnxslim" and not has_slim:
        raise ExportError(f"{src}: onnxslim is not installed; install edgekd's simplify extra")
    used = "onnxslim" if tool == "onnxslim" or (tool == "auto" and has_slim) else "ort"
    before = node_count(src)
    with atomic_path(dst) as tmp:
        try:
            _slim(src, tmp) if used == "onnxslim" else _ort_basic(src, tmp)
        except Exception as e:
            raise ExportError(f"{src}: ONNX simplification ({used}) failed: {failure_reason(e)}") from e
        if strip:  # both tools add shape annotations (value_info) that no runtime needs
            strip_metadata(tmp, tmp)
        after = node_count(tmp)
    return SimplifyStats(tool=used, nodes_before=before, nodes_after=after)


def _slim(src, dst: Path) -> None:
    import onnx
    import onnxslim

    onnx.save(onnxslim.slim(onnx.load(str(src))), str(dst))


def _ort_basic(src, dst: Path) -> None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    # Basic level only: extended/all levels write com.microsoft fused ops other runtimes cannot load.
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    ort.InferenceSession(str(src), opts, providers=["CPUExecutionProvider"])


def _strip_graph(graph, counts: dict) -> None:
    """Drop doc strings, metadata_props and value_info from `graph` and its subgraphs, counting them."""
    counts["value_info"] += len(graph.value_info)
    del graph.value_info[:]
    for item in [graph, *graph.node, *graph.initializer, *graph.input, *graph.output]:
        counts["metadata_props"] += len(item.metadata_props)
        counts["doc_strings"] += bool(item.doc_string)
        del item.metadata_props[:]
        item.doc_string = ""
    for node in graph.node:
        for attr in node.attribute:
            for sub in [attr.g, *attr.graphs] if attr.HasField("g") else attr.graphs:
                _strip_graph(sub, counts)


def _compact_names(graph) -> bool:
    """Rename internal tensors to short names and drop node names; graph inputs/outputs keep theirs.

    Skipped (returns False) for graphs with subgraphs, whose bodies may refer to outer names."""
    if any(a.HasField("g") or len(a.graphs) for n in graph.node for a in n.attribute):
        return False
    keep = {v.name for v in [*graph.input, *graph.output]} | {""}
    names: dict[str, str] = {}

    def short(name: str) -> str:
        if name in keep:
            return name
        return names.setdefault(name, f"t{len(names):x}")

    for t in graph.initializer:
        t.name = short(t.name)
    for node in graph.node:
        node.name = ""
        node.input[:] = [short(n) for n in node.input]
        node.output[:] = [short(n) for n in node.output]
    return True


def strip_metadata(src: str | Path, dst: str | Path, *, compact_names: bool = False) -> StripStats:
    """Remove what no runtime reads: doc strings, exporter metadata (stack traces, FX nodes, scopes) and
    value_info; model-level metadata that users set is kept. `compact_names` also shortens internal
    tensor names (inputs/outputs keep theirs), at the cost of readable graphs. Returns byte counts."""
    import onnx

    size_before = os.path.getsize(src)
    model = onnx.load(str(src))
    counts = {"metadata_props": 0, "doc_strings": int(bool(model.doc_string)), "value_info": 0}
    _strip_graph(model.graph, counts)
    for fn in model.functions:
        for item in [fn, *fn.node]:
            counts["metadata_props"] += len(item.metadata_props)
            del item.metadata_props[:]
            item.doc_string = ""
    user = [p for p in model.metadata_props if not p.key.startswith(_TOOL_PREFIXES)]
    counts["metadata_props"] += len(model.metadata_props) - len(user)
    del model.metadata_props[:]
    model.metadata_props.extend(user)
    model.doc_string = ""
    compacted = compact_names and _compact_names(model.graph)
    with atomic_path(dst) as tmp:
        onnx.save(model, str(tmp))
    return StripStats(
        **counts, compact_names=compacted, bytes_before=size_before, bytes_after=os.path.getsize(dst)
    )


def size_breakdown(path: str | Path) -> dict[str, int]:
    """Bytes of an ONNX file by part: weights, metadata (doc strings, metadata_props), value_info, graph
    structure (nodes, names, I/O) and the rest. Field headers count with their part, so sums are close."""
    import onnx

    model = onnx.load(str(path))
    g = model.graph
    items = [g, *g.node, *g.initializer, *g.input, *g.output, *g.value_info]
    meta = sum(sum(p.ByteSize() for p in i.metadata_props) + len(i.doc_string) for i in items)
    meta += sum(p.ByteSize() for p in model.metadata_props) + len(model.doc_string)
    vi_meta = sum(sum(p.ByteSize() for p in v.metadata_props) for v in g.value_info)
    node_meta = sum(sum(p.ByteSize() for p in n.metadata_props) + len(n.doc_string) for n in g.node)
    out = {
        "total": os.path.getsize(path),
        "weights": sum(t.ByteSize() for t in g.initializer),
        "metadata": meta,
        "value_info": sum(v.ByteSize() for v in g.value_info) - vi_meta,
        "graph": sum(n.ByteSize() for n in g.node)
        - node_meta
        + sum(v.ByteSize() for v in [*g.input, *g.output]),
    }
    out["other"] = out["total"] - sum(v for k, v in out.items() if k != "total")
    return out
