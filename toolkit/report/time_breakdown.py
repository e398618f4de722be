"""Where the time goes: a profiled file's op time split into kinds of work, each quantized file set against
its fp32 twin, and one sentence per pair generated from those numbers."""

from __future__ import annotations

from dataclasses import dataclass

from benchmarks.profile import Profile, ProfileFile
from toolkit.report.blocks import Block, blocks_to_markdown, heading, para, table
from toolkit.report.table import Table

__all__ = [
    "Breakdown",
    "Pair",
    "breakdown",
    "pairs",
    "explain",
    "profile_blocks",
    "profile_markdown",
    "side_by_side_blocks",
]

# op type (onnxruntime and TFLite names) -> kind of work; anything else is "other"
_KINDS = {
    "conv/matmul": {
        "Conv", "FusedConv", "NhwcConv", "NhwcFusedConv", "QLinearConv", "ConvInteger", "MatMul",
        "FusedMatMul", "MatMulInteger", "QLinearMatMul", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
        "Gemm", "FusedGemm", "QGemm",
        "CONV_2D", "DEPTHWISE_CONV_2D", "FULLY_CONNECTED", "BATCH_MATMUL",
    },
    "quantize/dequantize": {
        "QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear", "QUANTIZE", "DEQUANTIZE",
    },
    "cast": {"Cast", "CAST"},
    "layout": {"Transpose", "ReorderInput", "ReorderOutput", "Reshape", "Flatten", "TRANSPOSE", "RESHAPE"},
}  # fmt: skip
KINDS = ("conv/matmul", "quantize/dequantize", "cast", "layout", "other")


# XNNPACK's operator names (ExecuTorch's ETDump), e.g. "Convolution (NHWC, QS8) IGEMM": by their first words
_XNNPACK = {
    "Convolution": "conv/matmul",
    "Fully Connected": "conv/matmul",
    "Batch Matrix Multiply": "conv/matmul",
    "Convert": "quantize/dequantize",
    "Transpose": "layout",
    "Static Reshape": "layout",
    "Copy": "layout",
}


def _kind(op_type: str) -> str:
    if "(" in op_type:
        return next((kind for word, kind in _XNNPACK.items() if op_type.startswith(word)), "other")
    return next((kind for kind, ops in _KINDS.items() if op_type in ops), "other")


@dataclass
class Breakdown:
    """Per-run microseconds by kind of work, and by the dtype the conv/matmul ops computed in."""

    us: dict[str, float]  # kind -> µs per run
    counts: dict[str, int]  # kind -> nodes
    compute_dtypes: dict[str, int]  # conv/matmul nodes per dtype (int8, fp16, fp32)
    float_ops: list[str]  # op types left in fp32 in a quantized file (besides Q/DQ)


def breakdown(profile: Profile) -> Breakdown:
    us = dict.fromkeys(KINDS, 0.0)
    counts = dict.fromkeys(KINDS, 0)
    dtypes: dict[str, int] = {}
    for op in profile.ops:
        kind = _kind(op.op_type)
        us[kind] += (op.total_us or 0.0) / max(profile.runs, 1)
        counts[kind] += 1
        if kind == "conv/matmul":
            dtypes[op.dtype] = dtypes.get(op.dtype, 0) + 1
    plumbing = ("quantize/dequantize", "cast", "layout")
    float_ops = (
        []
        if profile.precision == "fp32"
        else sorted(
            {op.op_type for op in profile.ops if op.dtype == "fp32" and _kind(op.op_type) not in plumbing}
        )
    )
    return Breakdown(us, counts, dtypes, float_ops)


@dataclass
class Pair:
    """A quantized (or fp16) file and its fp32 twin: same model, same format, same machine."""

    fp32: Profile
    other: Profile

    @property
    def speedup(self) -> float | None:
        """fp32 p50 / this file's p50 (> 1: faster)."""
        a, b = self.fp32.p50_us, self.other.p50_us
        return a / b if a and b else None


def pairs(data: ProfileFile) -> list[Pair]:
    """Every non-fp32 file with an fp32 twin, in file order."""
    fp32 = {(p.model, p.format): p for p in data.profiles if p.precision == "fp32"}
    return [Pair(fp32[(p.model, p.format)], p) for p in data.profiles
            if p.precision != "fp32" and (p.model, p.format) in fp32]  # fmt: skip


def _times(ratio: float) -> str:
    return f"{ratio:.2f}× faster" if ratio >= 1 else f"{1 / ratio:.2f}× slower"


def explain(pair: Pair) -> str:
    """One sentence on why the file is faster or slower than its fp32 twin, from the profile's numbers."""
    a, b = pair.fp32, pair.other
    head = f"{b.model} {b.precision} {b.format} ({b.backend}) is "
    head += _times(pair.speedup) if pair.speedup else "untimed"
    head += f" than fp32 (p50 {b.p50_us:.1f} vs {a.p50_us:.1f} µs)" if pair.speedup else ""
    if not b.ops:
        return f"{head}; edgekd reads no per-op profile from {b.backend}."
    if not (a.timed and b.timed):
        mix = breakdown(b).compute_dtypes
        listed = ", ".join(f"{n} in {dt}" for dt, n in sorted(mix.items()))
        untimed = f"{b.backend} gives no per-op times from Python"
        return f"{head}; {untimed}; its conv/matmul ops: {listed or 'none'}."
    fa, fb = breakdown(a), breakdown(b)
    conv_a, conv_b = fa.us["conv/matmul"], fb.us["conv/matmul"]
    parts = []
    if conv_a and conv_b:
        mix = ", ".join(f"{n} {dt}" for dt, n in sorted(fb.compute_dtypes.items()))
        went = f"{conv_a:.1f} → {conv_b:.1f} µs/run ({_times(conv_a / conv_b)})"
        parts.append(f"its conv/matmul time went {went} in {mix} nodes")
    total_b = sum(fb.us.values()) or 1.0
    if fb.us["quantize/dequantize"]:
        qdq = fb.us["quantize/dequantize"]
        n = fb.counts["quantize/dequantize"]
        parts.append(f"{qdq:.1f} µs/run ({qdq / total_b:.0%} of its op time) is quantize/dequantize "
                     f"({n} node{'s' if n != 1 else ''})")  # fmt: skip
    if fb.us["cast"]:
        n = fb.counts["cast"]
        parts.append(f"{fb.us['cast']:.1f} µs/run is spent in Cast ({n} node{'s' if n != 1 else ''})")
    if fb.us["layout"] > fa.us["layout"] + 1:
        parts.append(f"layout ops took {fb.us['layout']:.1f} µs/run against {fa.us['layout']:.1f}")
    if fb.float_ops:
        parts.append(f"left in fp32: {', '.join(fb.float_ops)}")
    return head + (": " + "; ".join(parts) if parts else "") + "."


def _fmt(us: float | None) -> str:
    return "–" if us is None else f"{us:.1f}"


def _file_row(p: Profile) -> list[str]:
    ops = p.per_run(p.ops_us) if p.timed else None
    ratio = f"{ops / p.p50_us:.2f}" if ops and p.p50_us else "–"
    gap = f"{(ops - p.p50_us) / len(p.ops):.2f}" if ops and p.p50_us and p.ops else "–"
    top = ", ".join(f"{k} {v / max(p.runs, 1):.1f}" for k, v in list(p.by_op_type().items())[:3])
    top = top if p.timed else (f"{len(p.ops)} ops listed, untimed" if p.ops else "no op profile")
    name = p.path.rsplit("/", 1)[-1]
    return [name, p.backend, _fmt(p.p50_us), _fmt(p.per_run(p.run_us)), _fmt(ops), ratio, gap, top]


def _files_table(data: ProfileFile) -> Table:
    headers = ["file", "backend", "p50 µs", "profiled run µs", "op sum µs", "op sum / p50", "gap per node µs",
               "top ops (µs/run)"]  # fmt: skip
    numeric = [False, False, True, True, True, True, True, False]
    return Table(headers, [_file_row(p) for p in data.profiles], numeric=numeric)


def _pair_table(pair: Pair) -> Table:
    fa, fb = breakdown(pair.fp32), breakdown(pair.other)
    cells = [[kind, *(f"{f.us[kind]:.1f} ({f.counts[kind]})" for f in (fa, fb))] for kind in KINDS]
    cells.append(["p50 (unprofiled)", _fmt(pair.fp32.p50_us), _fmt(pair.other.p50_us)])
    return Table(["µs per run (nodes)", "fp32", pair.other.precision], cells, numeric=[False, True, True])


def profile_blocks(data: ProfileFile) -> list[Block]:
    """The "Where the time goes" section: every file's op sum against its p50, then each pair's table."""
    cpu = data.target.get("label") or data.machine.get("cpu_model") or "this machine"
    int8 = ", ".join(data.machine.get("int8_dot_product") or []) or "none found"
    setup = (
        f"{cpu}; int8 dot-product instructions: {int8}. {data.threads} thread, {data.runs} profiled runs "
        f"after {data.warmup} warm-up. The profiler costs time of its own: its op sum exceeds the unprofiled "
        "p50 by about the same few µs per node (the gap column), which weighs most on the smallest files."
    )
    blocks = [heading("Where the time goes"), para(setup), table(_files_table(data))]
    for pair in pairs(data):
        other = pair.other
        blocks.append(para(f"**{other.model} · {other.format} · {other.precision}.** {explain(pair)}"))
        if pair.fp32.timed and pair.other.timed:
            blocks.append(table(_pair_table(pair)))
    return blocks


def profile_markdown(data: ProfileFile) -> str:
    """`profile_blocks` as one Markdown document (profile.md)."""
    return blocks_to_markdown(profile_blocks(data))


def _op_times(p: Profile) -> dict[str, tuple[float, str]]:
    """Op type -> (µs per run, the dtypes it ran in) of one timed profile."""
    out: dict[str, tuple[float, set[str]]] = {}
    for op in p.ops:
        us, dtypes = out.get(op.op_type, (0.0, set()))
        out[op.op_type] = (us + (op.total_us or 0.0) / max(p.runs, 1), dtypes | {op.dtype})
    return {k: (us, "/".join(sorted(d))) for k, (us, d) in out.items()}


def side_by_side_blocks(profiles: list[tuple[str, ProfileFile]], *, share: float = 0.05) -> list[Block]:
    """The same op of the same file on each target: µs per run and dtype, for the ops that take at least
    `share` of a file's op time somewhere; only files timed on every target."""
    if len(profiles) < 2:
        return []
    names = [name for name, _ in profiles]
    by_file = [{p.path.rsplit("/", 1)[-1]: p for p in data.profiles if p.timed} for _, data in profiles]
    common = [f for f in by_file[0] if all(f in other for other in by_file[1:])]
    cells = []
    for file in common:
        times = [_op_times(files[file]) for files in by_file]
        totals = [sum(us for us, _ in t.values()) or 1.0 for t in times]
        ops = {
            op
            for t, total in zip(times, totals, strict=True)
            for op, (us, _) in t.items()
            if us >= share * total
        }
        for op in sorted(ops, key=lambda o: -times[0].get(o, (0.0, ""))[0]):
            row = [file, op]
            for t in times:
                us, dtype = t.get(op, (None, ""))
                row.append("–" if us is None else f"{us:.1f} ({dtype})")
            cells.append(row)
    if not cells:
        return []
    headers = ["file", "op", *(f"{n} µs/run (dtype)" for n in names)]
    intro = (
        "Each file's main ops on every target that profiled it (`edgekd profile`), µs per run and the dtype "
        "they ran in. An emulated target's times are not the device's; its op placement is."
    )
    numeric = [False, False, *([True] * len(names))]
    return [
        heading("Where the time goes, side by side"),
        para(intro),
        table(Table(headers, cells, numeric=numeric)),
    ]
