"""Static-int8 layouts searched on this machine. onnxruntime: QDQ or QOperator, per-channel or per-tensor
weights, U8S8 or S8S8; LiteRT (PT2E): per-channel or per-tensor weights, int8 or float input/output. Each
layout is written, checked against the fp32 file's top-1 on the validation rows and timed against it (one
pinned thread, interleaved rounds); the fastest that passes is kept. `auto` searches only where the default
layout runs slower than fp32 here. The decision is recorded per machine, runtime version, fp32 file and
validation rows, and reused, so exporting one checkpoint twice ships the same bytes."""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import random
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from benchmarks.files import sha256_file, user_cache, write_text_atomic
from benchmarks.manifest import FileSettings, LayoutSearch, LayoutTried
from benchmarks.outputs import agreement, run_file
from export.parity import TOLERANCES
from toolkit.errors import InputError

__all__ = ["LAYOUTS", "onnx_layouts", "tflite_layouts", "int8_file", "p50_rounds_us", "search_int8_layout"]

Writer = Callable[[Path], FileSettings]  # writes one int8 file at the path, returns its settings

# Timings within 5 % of each other are one speed (interleaved rounds still vary ~2-3 % on a quiet core): the
# search starts only where the default layout is more than 5 % slower than fp32; the default is kept when
# within 5 % of the fastest passing layout, else the first layout in LAYOUTS' order that is.
CLEAR_MARGIN = 0.05
CACHE_ENV = "EDGEKD_CACHE"  # where recorded decisions live (default: benchmarks.files.user_cache)
DECIDED = "once per machine, runtime version, fp32 file and validation rows; later exports reuse it"

# (quant_format, per_channel, activations, weights); U8U8 is left out: it ran 1.3× slower than U8S8 on
# every file tried (studies/ort_int8_layouts.py), and S8U8 has no onnxruntime kernels.
LAYOUTS = [
    (fmt, per_channel, act, "int8")
    for fmt, per_channel, act in itertools.product(("QDQ", "QOperator"), (True, False), ("uint8", "int8"))
]


def _granularity(per_channel: bool) -> str:
    return "per-channel" if per_channel else "per-tensor"


def onnx_layouts(fp32: Path, reader, *, method: str) -> dict[str, Writer]:
    """Every onnxruntime layout of `fp32`, by name ("QDQ per-tensor U8S8"), calibrated on `reader`."""
    from export import quantize

    def writer(fmt: str, per_channel: bool, act: str, weight: str) -> Writer:
        options = dict(per_channel=per_channel, activation_type=act, weight_type=weight, quant_format=fmt)
        return lambda dst: quantize.quantize_static(fp32, dst, reader, method=method, **options)

    return {
        f"{fmt} {_granularity(pc)} {'U8S8' if act == 'uint8' else 'S8S8'}": writer(fmt, pc, act, w)
        for fmt, pc, act, w in LAYOUTS
    }


def tflite_layouts(
    model, sample, calib: np.ndarray, *, layout: str, ios: tuple[str, ...]
) -> dict[str, Writer]:
    """Every PT2E full-int8 layout of `model`, by name ("per-channel, int8 io"), calibrated on `calib`."""
    import torch

    from export import tflite

    def writer(per_channel: bool, io: str) -> Writer:
        rows = (torch.from_numpy(c[None]) for c in calib)
        return lambda dst: tflite.export_tflite_int8(
            model, sample, dst, rows, per_channel=per_channel, io=io, layout=layout
        )

    return {f"{_granularity(pc)}, {io} io": writer(pc, io) for pc in (True, False) for io in ios}


def p50_rounds_us(
    files: dict[str, Path], x1: np.ndarray, *, backend: str, rounds: int, runs: int
) -> dict[str, list[float]]:
    """Each file's p50 (µs) in each of `rounds` rounds, 1 pinned thread; every file once per round, in a
    new order, so drift and a busy neighbour touch them all alike."""
    from benchmarks.backends import load_backend
    from benchmarks.profile import pinned_cores, unprofiled_p50_us

    runtime = load_backend(backend)
    loaded = {k: runtime.load(p, threads=1) for k, p in files.items()}
    seen: dict[str, list[float]] = {k: [] for k in files}
    with pinned_cores(1):
        for r in range(rounds):
            for k in random.Random(r).sample(list(files), len(files)):
                h = loaded[k]
                feed = runtime.prepare(h, x1)
                seen[k].append(
                    unprofiled_p50_us(lambda h=h, f=feed: runtime.invoke(h, f), runs=runs, warmup=50)
                )
    return seen


def _p50s(
    files: dict[str, Path], x1: np.ndarray, *, backend: str, rounds: int, runs: int
) -> dict[str, float]:
    """Median over `rounds` of each file's p50 (µs)."""
    seen = p50_rounds_us(files, x1, backend=backend, rounds=rounds, runs=runs)
    return {k: float(np.median(v)) for k, v in seen.items()}


def _search_record(
    p50: dict[str, float], agree: dict[str, float], kept: str, timing: str, trigger: str, default: str | None
) -> LayoutSearch:
    from benchmarks.machine import machine_facts

    need = TOLERANCES["int8"]["top1_agreement"]
    facts = machine_facts()
    tried = [
        LayoutTried(
            layout=k,
            p50_us=round(p50[k], 2),
            top1_agreement_val=round(agree[k], 4),
            passed=agree[k] >= need,
        )
        for k in sorted(agree, key=p50.get)
    ]
    return LayoutSearch(
        cpu=facts["cpu_model"],
        int8_dot_product=facts["int8_dot_product"],
        trigger=trigger,
        default=default,
        margin=CLEAR_MARGIN,
        fp32_p50_us=round(p50["fp32"], 2),
        kept=kept,
        faster_than_fp32=p50[kept] < p50["fp32"],
        timing=timing,
        decided=DECIDED,
        preference=list(agree),  # the writers' order: among near-equal layouts, the first is kept
        tried=tried,
    )


def preferred_layout(passing: list[str], p50: dict[str, float], default: str | None) -> str:
    """The `default` when within `CLEAR_MARGIN` of the fastest passing layout, else the first of `passing`
    (in the writers' order) that is: noise between near-equal layouts never changes the choice."""
    fastest = min(p50[k] for k in passing)
    near = [k for k in passing if p50[k] <= fastest * (1 + CLEAR_MARGIN)]
    return default if default in near else near[0]


def search_int8_layout(
    fp32: Path,
    dst: Path,
    writers: dict[str, Writer],
    x_val: np.ndarray,
    *,
    backend: str,
    trigger: str = "asked in config",
    default: str | None = None,
    rounds: int = 3,
    runs: int = 300,
) -> FileSettings:
    """Write every layout of `writers`, keep at `dst` the one `preferred_layout` picks among those whose top-1
    agreement with `fp32` on `x_val` meets the int8 tolerance; its settings, with `layout_search` saying what
    was tried and measured."""
    reference = run_file(fp32, x_val, backend=backend)
    with tempfile.TemporaryDirectory(prefix="edgekd-int8-") as tmp:
        files = {name: Path(tmp) / f"{i}{fp32.suffix}" for i, name in enumerate(writers)}
        settings = {name: writers[name](files[name]) for name in writers}
        agree = {k: agreement(p, reference, x_val, backend=backend) for k, p in files.items()}
        p50 = _p50s({"fp32": fp32, **files}, x_val[:1], backend=backend, rounds=rounds, runs=runs)
        passing = [k for k in agree if agree[k] >= TOLERANCES["int8"]["top1_agreement"]]
        if not passing:
            raise InputError(
                f"{fp32}: no int8 layout reaches the int8 top-1 agreement on the validation rows"
            )
        kept = preferred_layout(passing, p50, default)
        shutil.copyfile(files[kept], dst)
    timing = f"1 pinned thread, median of {rounds} rounds of {runs} runs"
    return settings[kept].merged(layout_search=_search_record(p50, agree, kept, timing, trigger, default))


def int8_file(
    mode: str | bool,
    fp32: Path,
    dst: Path,
    writers: dict[str, Writer],
    default: str,
    x_val: np.ndarray,
    *,
    backend: str,
) -> FileSettings:
    """The int8 file at `dst`: the `default` layout (mode False), the searched one (True), or the default
    unless it runs clearly slower than `fp32` on this machine, then the searched one ("auto"). A decision
    recorded for this machine, runtime, `fp32` and `x_val` is reused: the same layout, the same record."""
    if mode is False:
        return writers[default](dst)
    record = _decision_path(mode, fp32, writers, default, x_val, backend=backend)
    if (decided := _recorded(record, writers)) is not None:
        kept, search = decided
        settings = writers[kept](dst)
        return settings if search is None else settings.merged(layout_search=search)
    settings = _decide(mode, fp32, dst, writers, default, x_val, backend=backend)
    search = settings.layout_search
    kept = search.kept if search else default
    recorded = search.model_dump(mode="json", exclude_unset=True) if search else None
    write_text_atomic(record, json.dumps({"kept": kept, "layout_search": recorded}, indent=1))
    return settings


def _recorded(record: Path, writers: dict[str, Writer]) -> tuple[str, LayoutSearch | None] | None:
    """The recorded (layout kept, search), or None when there is none or it is unreadable or invalid (then
    it is made again)."""
    try:
        decided = json.loads(record.read_text())
        kept, search = decided["kept"], decided["layout_search"]
        if kept not in writers:
            return None
        return kept, None if search is None else LayoutSearch.model_validate(search)
    except (OSError, ValueError, KeyError, TypeError):  # pydantic's ValidationError is a ValueError
        return None


def _decide(
    mode: str | bool, fp32: Path, dst: Path, writers: dict[str, Writer], default: str, x_val, *, backend: str
) -> FileSettings:
    from export._files import atomic_path

    if mode is not True:
        settings = writers[default](dst)
        p50 = _p50s({"fp32": fp32, default: dst}, x_val[:1], backend=backend, rounds=3, runs=200)
        if p50[default] <= p50["fp32"] * (1 + CLEAR_MARGIN):
            return settings
    trigger = (
        "asked in config"
        if mode is True
        else f"auto: the default layout ({default}) ran {p50[default]:.1f} µs, fp32 {p50['fp32']:.1f} µs"
    )
    with atomic_path(dst) as tmp:
        return search_int8_layout(
            fp32, tmp, writers, x_val, backend=backend, trigger=trigger, default=default
        )


def _decision_path(
    mode: str | bool, fp32: Path, writers: dict[str, Writer], default: str, x_val: np.ndarray, *, backend: str
) -> Path:
    """Where the decision for this machine, runtime version, fp32 file, rows and layouts is recorded."""
    from importlib import metadata

    from benchmarks.backends import backend_spec
    from benchmarks.machine import machine_facts

    key = {
        "cpu": machine_facts()["cpu_model"],
        "runtime": f"{backend} {metadata.version(backend_spec(backend).distribution)}",
        "fp32": sha256_file(fp32),
        "rows": hashlib.sha256(np.ascontiguousarray(x_val).tobytes()).hexdigest(),
        "layouts": list(writers),
        "default": default,
        "mode": mode,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:32]
    override = os.environ.get(CACHE_ENV)
    root = Path(override) / "int8-layouts" if override else user_cache("int8-layouts")
    return root / f"{digest}.json"
