"""Stage 2: export each checkpoint to ONNX/TFLite (+ int8 student), check parity, write the bundle."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np

from export.bundle import variant_file_name as file_name
from toolkit.config import load_config
from toolkit.errors import ExportError
from toolkit.pipeline.distill_stage import load_checkpoint, load_splits
from toolkit.rundir import MODEL_NAMES, RunDir

__all__ = ["run_export", "variants_for", "export_failure"]

# on_file(name, format, precision, entry_or_error) lets the CLI report progress; the library never prints.
FileCallback = Callable[[str, str, str, dict], None]


def variants_for(name: str, cfg) -> list[tuple[str, str]]:
    """(format, precision) pairs to export: the configured precisions (the scratch student: its own list,
    by default the KD student's)."""
    e = cfg.export
    if name.startswith("teacher"):
        precisions = e.teacher_precisions
    elif name.startswith("student_scratch") and e.scratch_precisions is not None:
        precisions = e.scratch_precisions
    else:
        precisions = e.precisions
    out = []
    for fmt in e.formats:
        for precision in precisions:
            if fmt == "tflite" and e.tflite_precisions is not None and precision not in e.tflite_precisions:
                continue
            if fmt == "torch" and (
                precision != "fp32" or (e.torch_models == "teacher" and name != "teacher")
            ):
                continue  # .pt2 is the float reference program, the teacher's own framework
            out.append((fmt, precision))
    return out


def _onnx_fp32(model, sample, dst: Path, cfg) -> Path:
    """The named float ONNX file every ONNX variant is made from (written once per model)."""
    from export.onnx import export_onnx, simplify_onnx

    e = cfg.export
    if not dst.exists():
        export_onnx(model, sample, dst, opset=e.opset, exporter=e.onnx_exporter)
        if e.simplify:
            simplify_onnx(dst, dst)
    return dst


def _export_onnx(name, model, precision: str, sample, dst: Path, data: dict, cfg) -> dict:
    from export.onnx import strip_metadata

    settings = _write_onnx(name, model, precision, sample, dst, data, cfg)
    if cfg.export.onnx_compact_names:
        strip_metadata(dst, dst, compact_names=True)
    return dict(settings, compact_names=cfg.export.onnx_compact_names)


def _write_onnx(name, model, precision: str, sample, dst: Path, data: dict, cfg) -> dict:
    import shutil

    from export import quantize
    from export._files import atomic_path
    from export.from_onnx import onnx_input_spec
    from toolkit.data import ArrayCalibrationReader

    e = cfg.export
    fp32 = _onnx_fp32(model, sample, data["work"] / f"{name}.onnx", cfg)
    if precision == "fp32":
        with atomic_path(dst) as tmp:
            shutil.copyfile(fp32, tmp)
        return {"exporter": e.onnx_exporter, "opset": e.opset, "simplified": e.simplify}
    if precision == "fp16":
        return quantize.convert_fp16(fp32, dst)
    if precision == "dynamic-int8":
        return quantize.quantize_dynamic(fp32, dst)
    # A model with a fixed batch (a user's .pt2 exported at batch 1) takes calibration batches of its size.
    batch = onnx_input_spec(fp32)["shape"][0] or 32
    reader = ArrayCalibrationReader(data["calib"], input_name="input", batch_size=batch)
    quant = dict(
        method=e.calibration_method, quant_format=e.onnx_int8_format, per_channel=data["per_channel"]
    )
    x_val, y_val = data["x_val"], data["y_val"]
    if e.max_accuracy_drop is not None:
        from export.sensitivity import quantize_with_max_drop

        # Chosen on the validation split: the test split stays untouched for the parity table.
        r = quantize_with_max_drop(
            fp32, dst, reader, x_val, y_val, max_accuracy_drop=e.max_accuracy_drop, **quant
        )
        layers = r.pop("sensitivity")
        settings = dict(r.pop("quantization"), accuracy_budget=r)
        settings["sensitivity"] = {"split": "validation", "layers": layers}
    else:
        settings = quantize.quantize_static(fp32, dst, reader, **quant)
        if e.sensitivity and name == "student_kd":
            from export.sensitivity import layer_sensitivity

            ranked = layer_sensitivity(fp32, reader, x_val, y_val, **quant)
            settings["sensitivity"] = {"split": "validation", "layers": [r.to_dict() for r in ranked]}
    return settings


def _export_tflite(model, precision: str, sample, dst: Path, data: dict, cfg) -> dict | None:
    import torch

    from export import tflite

    layout = cfg.export.tflite_layout
    if precision == "fp32":
        tflite.export_tflite(model, sample, dst, layout=layout)
        return None
    if precision == "fp16":
        return tflite.export_tflite_fp16(model, sample, dst, layout=layout)
    if precision == "dynamic-int8":
        return tflite.export_tflite_dynamic_int8(model, sample, dst, layout=layout)
    calib = (torch.from_numpy(c[None]) for c in data["calib"])
    e = cfg.export
    return tflite.export_tflite_int8(
        model, sample, dst, calib, per_channel=data["per_channel"], io=e.tflite_int8_io, layout=layout
    )


def per_channel_for(model, setting: str | bool) -> tuple[bool, str]:
    """Whether int8 weights get per-channel scales, and why (`setting` is the config's value)."""
    from torch import nn

    if setting != "auto":
        return bool(setting), "set in config"
    grouped = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    if grouped:
        return True, f"auto: grouped/depthwise convs ({grouped[0]}, ...) need per-channel scales"
    return False, "auto: no grouped convs; per-tensor saves a scale, zero point and int32 bias per channel"


def _export_one(name, model, fmt: str, precision: str, sample, dst: Path, data: dict, cfg) -> dict | None:
    """Write one file; returns its export/quantization settings (None for plain float files)."""
    if fmt == "onnx":
        settings = _export_onnx(name, model, precision, sample, dst, data, cfg)
    elif fmt == "tflite":
        settings = _export_tflite(model, precision, sample, dst, data, cfg)
    elif (fmt, precision) == ("torch", "fp32"):
        from export.torch_program import export_program

        export_program(model, sample, dst)
        return None
    else:
        raise ValueError(f"no exporter for format={fmt!r} precision={precision!r}")
    if precision == "int8":  # static int8, either format: calibration size and why (not) per channel
        settings = dict(settings, calibration_samples=len(data["calib"]))
        settings["per_channel_reason"] = data["per_channel_reason"]
    return settings


def _export_model(name: str, run: RunDir, cfg, data: dict, on_file: FileCallback | None, done: dict):
    """Export and check every variant of one checkpoint; returns (manifest entries, failures, spec)."""
    import torch

    from export._files import quiet_converters, sha256_file
    from export.bundle import file_entry, record_entry
    from export.parity import check_parity
    from toolkit.distill.train import predict
    from toolkit.models import count_macs, count_params

    model, spec, _ = load_checkpoint(run.checkpoint(name))
    reference = predict(model, data["x_test"])
    sample = torch.from_numpy(data["x_test"][:1])
    per_channel, why = per_channel_for(model, cfg.export.per_channel)
    data = dict(data, per_channel=per_channel, per_channel_reason=why)
    common = dict(
        name=name,
        role="teacher" if name == "teacher" else "student",
        arch=spec.arch,
        params=count_params(model),
        macs=count_macs(model, spec.input_shape),
        source_checkpoint_sha256=sha256_file(run.checkpoint(name)),
    )
    entries, failures = [], []
    for fmt, precision in variants_for(name, cfg):
        dst = run.bundle / file_name(name, fmt, precision)
        kept = done.get((name, fmt, precision))
        if kept is not None and kept.get("source_checkpoint_sha256") == common["source_checkpoint_sha256"]:
            entries.append(kept)  # --resume: written and checked before the export was cut off
            if on_file:
                on_file(name, fmt, precision, kept)
            continue
        layout = (
            spec.layout if spec.layout == "NL" else cfg.export.tflite_layout if fmt == "tflite" else "NCHW"
        )
        try:
            with quiet_converters():
                quant = _export_one(name, model, fmt, precision, sample, dst, data, cfg)
        except ExportError as e:
            dst.unlink(missing_ok=True)  # never leave an older file under the name of one that failed
            failures.append({"name": name, "format": fmt, "precision": precision, "error": str(e)})
            if on_file:
                on_file(name, fmt, precision, failures[-1])
            continue
        with quiet_converters():  # the runtimes print their own notices (XNNPACK delegate created, ...)
            parity = check_parity(
                dst, data["x_test"], data["y_test"], reference, precision=precision, layout=layout
            )
        entry = file_entry(
            dst,
            run.bundle,
            **common,
            format=fmt,
            precision=precision,
            quantization=quant,
            batch=1 if fmt == "tflite" else None,
            layout=layout,
            parity=parity.to_dict(),
            **({"input_dtype": _input_dtype(dst)} if spec.layout == "NL" else {}),
        )
        entries.append(entry)
        record_entry(run.bundle, entry, data["settings"])
        if on_file:
            on_file(name, fmt, precision, entry)
    return entries, failures, spec


def _input_dtype(path: Path) -> str:
    """The int type a token-id file takes, read from the file (litert-torch turns int64 into int32)."""
    from benchmarks.backends import backend_for, load_backend

    backend = load_backend(backend_for(path))
    return str(np.dtype(backend.input_spec(backend.load(str(path), threads=1))[2]))


def _copy_tokenizer(cfg, bundle: Path) -> None:
    """The tokenizer every text file's ids come from, shipped in the bundle as `tokenizer.json`."""
    import shutil

    from export._files import atomic_path

    with atomic_path(bundle / "tokenizer.json") as tmp:
        shutil.copyfile(cfg.data.tokenizer, tmp)


def _calibration_rows(n: int, cfg) -> np.ndarray:
    """A seeded random sample of training rows: an image folder's rows are sorted by class, so its first
    rows would calibrate int8 ranges on one class only."""
    take = min(n, cfg.export.calibration_samples)
    return np.sort(np.random.default_rng(cfg.seed).choice(n, size=take, replace=False))


def run_export(run: RunDir, *, on_file: FileCallback | None = None, resume: bool = False) -> dict:
    """Export every checkpoint in `run.distill`, check each against torch, write the manifest. With
    `resume`, files an earlier export wrote and checked from the same checkpoint are kept as they are."""
    from export.bundle import (
        JOURNAL,
        finished_entries,
        write_archive,
        write_manifest,
        write_reference_outputs,
        write_test_data,
    )

    cfg = load_config(run.require(run.config, "distill"))
    names = [n for n in MODEL_NAMES if run.checkpoint(n).exists()]
    if not names:
        run.require(run.checkpoint("teacher"), "distill")
    splits = load_splits(cfg)
    data = {
        "x_test": splits.normalize(splits.test_x),
        "y_test": splits.test_y,
        "calib": splits.normalize(splits.train_x[_calibration_rows(len(splits.train_y), cfg)]),
        "x_val": splits.normalize(splits.val_x),
        "y_val": splits.val_y,
    }
    run.bundle.mkdir(parents=True, exist_ok=True)
    # What every file depends on besides its checkpoint: the export settings and the preprocessing.
    fp = [cfg.export.model_dump(mode="json"), splits.preprocessing.model_dump(mode="json")]
    data["settings"] = hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()
    done = finished_entries(run.bundle, data["settings"]) if resume else {}
    if not resume:
        (run.bundle / JOURNAL).unlink(missing_ok=True)
    run.manifest.unlink(missing_ok=True)  # the bundle is incomplete until the manifest is rewritten
    models, failures = [], []
    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as work:
        data["work"] = Path(work)  # the named float ONNX files the shipped variants are made from
        for name in names:
            entries, failed, spec = _export_model(name, run, cfg, data, on_file, done)
            models += entries
            failures += failed
    input_spec = {
        "name": "input",
        "shape": [None, *spec.input_shape],
        "dtype": "int64" if splits.is_text else "float32",
        "layout": spec.layout,
        "preprocessing": splits.preprocessing.model_dump(mode="json"),
    }
    if splits.is_text:
        _copy_tokenizer(cfg, run.bundle)
    test_data = write_test_data(run.bundle, splits.test_x, splits.test_y)
    reference = write_reference_outputs(run.bundle, models, data["x_test"])
    manifest = write_manifest(
        run.bundle,
        models=models,
        input_spec=input_spec,
        labels=list(spec.labels),
        test_data=test_data,
        failures=failures,
        reference_outputs=reference,
    )
    write_archive(run.bundle)
    return manifest


def export_failure(bundle: Path, failures: list[dict]) -> ExportError | None:
    """The error to exit 1 with when a file failed to export or missed its parity tolerance (every file
    that was written stays in the bundle)."""
    if not failures:
        return None
    kept = sum("file" in f for f in failures)  # written but outside tolerance
    what = [f"{len(failures) - kept} failed to export"] * (kept < len(failures))
    what += [f"{kept} missed their parity tolerance (kept for inspection)"] * (kept > 0)
    return ExportError(f"{bundle}: {len(failures)} file(s) failed: {', '.join(what)} (see above)")
