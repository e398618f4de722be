"""Stage 2: export each checkpoint to ONNX/TFLite (+ int8 student), check parity, write the bundle."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from toolkit.config import load_config
from toolkit.errors import ExportError
from toolkit.pipeline.distill_stage import load_checkpoint, load_splits
from toolkit.pipeline.rundir import MODEL_NAMES, RunDir

__all__ = ["run_export", "variants_for"]

# on_file(name, format, precision, entry_or_error) lets the CLI report progress; the library never prints.
FileCallback = Callable[[str, str, str, dict], None]


SUFFIXES = {"onnx": "onnx", "tflite": "tflite", "torch": "pt2"}


def variants_for(name: str, formats: list[str], int8: bool) -> list[tuple[str, str]]:
    """(format, precision) pairs to export: fp32 everywhere, int8 (ONNX, TFLite) for the KD student only."""
    out = [(fmt, "fp32") for fmt in formats]
    if int8 and name == "student_kd":
        out += [(fmt, "int8") for fmt in formats if fmt != "torch"]
    return out


def _export_one(model, fmt: str, precision: str, sample, dst: Path, calib: np.ndarray, cfg) -> dict | None:
    """Write one file; returns its quantization settings (None for float files)."""
    import torch

    from export.onnx import export_onnx
    from export.tflite import export_tflite, export_tflite_int8

    if (fmt, precision) == ("onnx", "fp32"):
        export_onnx(model, sample, dst, opset=cfg.export.opset)
        return None
    if (fmt, precision) == ("tflite", "fp32"):
        export_tflite(model, sample, dst)
        return None
    if (fmt, precision) == ("torch", "fp32"):
        from export.torch_program import export_program

        export_program(model, sample, dst)
        return None
    if (fmt, precision) == ("onnx", "int8"):
        from export.quantize import quantize_static
        from toolkit.data import ArrayCalibrationReader

        fp32 = dst.with_name(dst.name.replace("_int8", ""))
        if not fp32.exists():
            export_onnx(model, sample, fp32, opset=cfg.export.opset)
        reader = ArrayCalibrationReader(calib, input_name="input", batch_size=32)
        q = quantize_static(fp32, dst, reader, method=cfg.export.calibration_method)
        return dict(q, calibration_samples=len(calib))
    if (fmt, precision) == ("tflite", "int8"):
        return export_tflite_int8(model, sample, dst, (torch.from_numpy(c[None]) for c in calib))
    raise ValueError(f"no exporter for format={fmt!r} precision={precision!r}")


def _export_model(name: str, run: RunDir, cfg, data: dict, on_file: FileCallback | None):
    """Export and check every variant of one checkpoint; returns (manifest entries, failures, spec)."""
    import torch

    from export._files import quiet_converters, sha256_file
    from export.bundle import file_entry
    from export.parity import check_parity
    from toolkit.distill.train import predict
    from toolkit.models import count_macs, count_params

    model, spec, _ = load_checkpoint(run.checkpoint(name))
    reference = predict(model, data["x_test"])
    sample = torch.from_numpy(data["x_test"][:1])
    common = dict(
        name=name,
        role="teacher" if name == "teacher" else "student",
        arch=spec.arch,
        params=count_params(model),
        macs=count_macs(model, spec.input_shape),
        source_checkpoint_sha256=sha256_file(run.checkpoint(name)),
    )
    entries, failures = [], []
    for fmt, precision in variants_for(name, cfg.export.formats, cfg.export.int8):
        suffix = "" if precision == "fp32" else f"_{precision}"
        dst = run.bundle / f"{name}{suffix}.{SUFFIXES[fmt]}"
        try:
            with quiet_converters():
                quant = _export_one(model, fmt, precision, sample, dst, data["calib"], cfg)
        except ExportError as e:
            dst.unlink(missing_ok=True)  # never leave an older file under the name of one that failed
            failures.append({"name": name, "format": fmt, "precision": precision, "error": str(e)})
            if on_file:
                on_file(name, fmt, precision, failures[-1])
            continue
        parity = check_parity(dst, data["x_test"], data["y_test"], reference, precision=precision)
        entry = file_entry(
            dst,
            run.bundle,
            **common,
            format=fmt,
            precision=precision,
            quantization=quant,
            batch=1 if fmt == "tflite" else None,
            parity=parity.to_dict(),
        )
        entries.append(entry)
        if on_file:
            on_file(name, fmt, precision, entry)
    return entries, failures, spec


def run_export(run: RunDir, *, on_file: FileCallback | None = None) -> dict:
    """Export every checkpoint in `run.distill`, check each against torch, write the manifest."""
    from export.bundle import write_archive, write_manifest, write_test_data

    cfg = load_config(run.require(run.config, "distill"))
    names = [n for n in MODEL_NAMES if run.checkpoint(n).exists()]
    if not names:
        run.require(run.checkpoint("teacher"), "distill")
    splits = load_splits(cfg)
    data = {
        "x_test": splits.normalize(splits.test_x),
        "y_test": splits.test_y,
        "calib": splits.normalize(splits.train_x[: cfg.export.calibration_samples]),
    }
    run.bundle.mkdir(parents=True, exist_ok=True)
    run.manifest.unlink(missing_ok=True)  # the bundle is incomplete until the manifest is rewritten
    models, failures = [], []
    for name in names:
        entries, failed, spec = _export_model(name, run, cfg, data, on_file)
        models += entries
        failures += failed
    input_spec = {
        "name": "input",
        "shape": [None, *spec.input_shape],
        "dtype": "float32",
        "layout": spec.layout,
        "preprocessing": {"scale": 1 / 255, "mean": [spec.mean], "std": [spec.std]},
    }
    test_data = write_test_data(run.bundle, splits.test_x, splits.test_y)
    manifest = write_manifest(
        run.bundle,
        models=models,
        input_spec=input_spec,
        labels=list(spec.labels),
        test_data=test_data,
        failures=failures,
    )
    write_archive(run.bundle)
    return manifest
