"""Stage 2: export each checkpoint to ONNX/TFLite (+ int8 student), check parity, write the bundle."""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.manifest import (
    AccuracyBudget,
    Failure,
    FileSettings,
    InputSpec,
    Manifest,
    ManifestKey,
    ModelEntry,
)
from export.bundle import variant_file_name as file_name
from export.exporters import EXPORTERS, ExportJob, QatProgram, exporter_for
from toolkit.config import load_config
from toolkit.distill.checkpoints import load_checkpoint
from toolkit.distill.context import load_splits
from toolkit.errors import ExportError
from toolkit.rundir import MODEL_NAMES, RunDir

__all__ = [
    "ExportRows",
    "run_export",
    "variants_for",
    "export_requires",
    "export_failure",
    "budget_failure",
    "accuracy_budgets",
]

# on_file(name, format, precision, entry_or_failure) lets the CLI report progress; the library never prints.
FileCallback = Callable[[str, str, str, ModelEntry | Failure], None]


@dataclass(frozen=True)
class ExportRows:
    """What every file of one export is checked, calibrated and budgeted on (normalized rows), the digest of
    what every file depends on besides its checkpoint, the QAT-KD offer and the scratch folder."""

    x_test: np.ndarray
    y_test: np.ndarray
    calib: np.ndarray  # a seeded sample of training rows, for static int8
    x_val: np.ndarray
    y_val: np.ndarray
    settings: str  # sha256 of the export settings and the preprocessing (--resume keeps files made with it)
    qat: Callable[[Any], Callable[[bool], QatProgram]]  # student -> (per_channel -> the QAT-KD program)
    work: Path  # the named float files the shipped variants are made from


def export_requires(cfg) -> list[str]:
    """The modules the configured formats' exporters need beyond torch (executorch for pte)."""
    return [module for fmt in cfg.export.formats for module in EXPORTERS.get(fmt).requires]


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
    # each format offers its own precisions (.pt2: fp32 only) and may narrow them by a setting of its own
    return [(fmt, p) for fmt in e.formats for p in EXPORTERS.get(fmt).precisions_for(name, e, precisions)]


def per_channel_for(model, setting: str | bool) -> tuple[bool, str]:
    """Whether int8 weights get per-channel scales, and why (`setting` is the config's value)."""
    from torch import nn

    if setting != "auto":
        return bool(setting), "set in config"
    grouped = [n for n, m in model.named_modules() if isinstance(m, nn.Conv2d) and m.groups > 1]
    if grouped:
        return True, f"auto: grouped/depthwise convs ({grouped[0]}, ...) need per-channel scales"
    return False, "auto: no grouped convs; per-tensor saves a scale, zero point and int32 bias per channel"


def _export_one(job: ExportJob, fmt: str, calibration_samples: int) -> FileSettings | None:
    """Write one file with its format's exporter; returns its export/quantization settings."""
    settings = exporter_for(fmt, job.precision).write(job)
    if job.precision == "int8":  # static int8, any format: calibration size and why (not) per channel
        settings = settings or FileSettings()
        searched = settings.layout_search is not None  # the layout timed fastest here, not the configured one
        why = "layout search" if searched else job.per_channel_reason
        settings = settings.merged(calibration_samples=calibration_samples, per_channel_reason=why)
    return settings


def _export_model(
    name: str,
    run: RunDir,
    cfg,
    rows: ExportRows,
    on_file: FileCallback | None,
    done: dict[ManifestKey, ModelEntry],
) -> tuple[list[ModelEntry], list[Failure], Any]:
    """Export and check every variant of one checkpoint; returns (manifest entries, failures, spec)."""
    import torch

    from export._files import sha256_file
    from toolkit.distill.train import predict
    from toolkit.models import count_macs, count_params

    model, spec, _ = load_checkpoint(run.checkpoint(name))
    reference = predict(model, rows.x_test)
    per_channel, why = per_channel_for(model, cfg.export.per_channel)
    job = ExportJob(
        name=name,
        model=model,
        sample=torch.from_numpy(rows.x_test[:1]),
        precision="fp32",
        dst=run.bundle,
        settings=cfg.export,
        calib=rows.calib,
        x_val=rows.x_val,
        y_val=rows.y_val,
        per_channel=per_channel,
        per_channel_reason=why,
        work=rows.work,
        qat=rows.qat(model) if name.startswith("student") else None,
    )
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
        if kept is not None and kept.source_checkpoint_sha256 == common["source_checkpoint_sha256"]:
            entry, failure = kept, None  # --resume: written and checked before the export was cut off
        else:
            variant = replace(job, precision=precision, dst=dst)
            entry, failure = _export_variant(variant, fmt, spec, common, rows, reference)
        entries += [entry] if entry else []
        failures += [failure] if failure else []
        if on_file:
            on_file(name, fmt, precision, entry or failure)
    return entries, failures, spec


def _export_variant(
    job: ExportJob, fmt: str, spec, common: dict, rows: ExportRows, reference
) -> tuple[ModelEntry | None, Failure | None]:
    """(manifest entry, failure) of one file: written by its exporter, checked against torch, journaled."""
    from export._files import quiet_converters
    from export.bundle import file_entry, record_entry
    from export.parity import check_parity

    try:
        with quiet_converters():
            quant = _export_one(job, fmt, len(job.calib))
    except ExportError as e:
        job.dst.unlink(missing_ok=True)  # never leave an older file under the name of one that failed
        return None, Failure(name=job.name, format=fmt, precision=job.precision, error=str(e))
    if quant is not None and quant.qat is not None and quant.qat.shipped == "qat-kd":
        reference = job.qat(quant.per_channel).outputs(rows.x_test)  # its torch source: the QAT-KD program
    exporter = EXPORTERS.get(fmt)
    layout = exporter.layout(job.settings, spec.layout)
    with quiet_converters():  # the runtimes print their own notices (XNNPACK delegate created, ...)
        parity = check_parity(
            job.dst, rows.x_test, rows.y_test, reference, precision=job.precision, layout=layout
        )
    entry = file_entry(
        job.dst,
        job.dst.parent,
        **common,
        format=fmt,
        precision=job.precision,
        quantization=quant,
        batch=exporter.batch,
        layout=layout,
        parity=parity.to_dict(),
        **({"input_dtype": _input_dtype(job.dst)} if spec.layout == "NL" else {}),
    )
    record_entry(job.dst.parent, entry, rows.settings)
    return entry, None


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
        shutil.copyfile(cfg.data.options.tokenizer, tmp)


def _calibration_rows(n: int, cfg) -> np.ndarray:
    """A seeded random sample of training rows: an image folder's rows are sorted by class, so its first
    rows would calibrate int8 ranges on one class only."""
    take = min(n, cfg.export.calibration_samples)
    return np.sort(np.random.default_rng(cfg.seed).choice(n, size=take, replace=False))


def _qat_quantizer(per_channel: bool):
    """The quantizer every format's QAT-KD file is converted under: litert-torch's PT2E int8, in QAT form."""
    from export.tflite import int8_quantizer

    return int8_quantizer(per_channel=per_channel, qat=True)


def _settings_digest(splits, cfg) -> str:
    """The digest of what every file depends on besides its checkpoint: export settings and preprocessing."""
    fp = [cfg.export.model_dump(mode="json"), splits.preprocessing.model_dump(mode="json")]
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()


def _export_rows(splits, cfg, *, qat, work: Path) -> ExportRows:
    """The rows every file is checked, calibrated and budgeted on, normalized as the model takes them."""
    return ExportRows(
        x_test=splits.normalize(splits.test_x),
        y_test=splits.test_y,
        calib=splits.normalize(splits.train_x[_calibration_rows(len(splits.train_y), cfg)]),
        x_val=splits.normalize(splits.val_x),
        y_val=splits.val_y,
        settings=_settings_digest(splits, cfg),
        qat=qat,
        work=work,
    )


def run_export(run: RunDir, *, on_file: FileCallback | None = None, resume: bool = False) -> Manifest:
    """Export every checkpoint in `run.distill`, check each against torch, write the manifest. With
    `resume`, files an earlier export wrote and checked from the same checkpoint are kept as they are."""
    from benchmarks.extras import require
    from export.bundle import (
        JOURNAL,
        finished_entries,
        write_archive,
        write_manifest,
        write_reference_outputs,
        write_test_data,
    )

    cfg = load_config(run.require(run.config, "distill"))
    require(*export_requires(cfg))  # before a file is written: one line naming the extra
    names = [n for n in MODEL_NAMES if run.checkpoint(n).exists()]
    if not names:
        run.require(run.checkpoint("teacher"), "distill")
    from toolkit.distill.qat import qat_offer  # the student distilled again, where an int8 exporter asks

    splits = load_splits(cfg)
    qat = qat_offer(cfg, run, splits, quantizer=_qat_quantizer)
    run.bundle.mkdir(parents=True, exist_ok=True)
    done = finished_entries(run.bundle, _settings_digest(splits, cfg)) if resume else {}
    if not resume:
        (run.bundle / JOURNAL).unlink(missing_ok=True)
    run.manifest.unlink(missing_ok=True)  # the bundle is incomplete until the manifest is rewritten
    models: list[ModelEntry] = []
    failures: list[Failure] = []
    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as work:
        rows = _export_rows(splits, cfg, qat=qat, work=Path(work))
        for name in names:
            entries, failed, spec = _export_model(name, run, cfg, rows, on_file, done)
            models += entries
            failures += failed
    input_spec = InputSpec(
        name="input",
        shape=[None, *spec.input_shape],
        dtype="int64" if splits.is_text else "float32",
        layout=spec.layout,
        preprocessing=splits.preprocessing,
    )
    if splits.is_text:
        _copy_tokenizer(cfg, run.bundle)
    test_data = write_test_data(run.bundle, splits.test_x, splits.test_y)
    reference = write_reference_outputs(run.bundle, models, rows.x_test)
    manifest = write_manifest(
        run.bundle,
        models=models,
        input_spec=input_spec,
        labels=list(spec.labels),
        test_data=test_data,
        failures=failures,
        reference_outputs=reference,
        sources=tuple(run.checkpoint(n) for n in names),
    )
    write_archive(run.bundle, created=manifest.created)
    return manifest


def export_failure(bundle: Path, failures: list[Failure]) -> ExportError | None:
    """The error to exit 1 with when a file failed to export or missed its parity tolerance (every file
    that was written stays in the bundle)."""
    if not failures:
        return None
    kept = sum(f.file is not None for f in failures)  # written but outside tolerance
    what = [f"{len(failures) - kept} failed to export"] * (kept < len(failures))
    what += [f"{kept} missed their parity tolerance (kept for inspection)"] * (kept > 0)
    return ExportError(f"{bundle}: {len(failures)} file(s) failed: {', '.join(what)} (see above)")


def accuracy_budgets(manifest: Manifest) -> list[tuple[ModelEntry, AccuracyBudget]]:
    """(entry, accuracy budget block) of each file exported within `--max-accuracy-drop`."""
    return [
        (m, m.quantization.accuracy_budget)
        for m in manifest.models
        if m.quantization is not None and m.quantization.accuracy_budget is not None
    ]


def budget_failure(bundle: Path, manifest: Manifest) -> ExportError | None:
    """The error to exit 1 with when an int8 file misses its accuracy budget even with layers left float."""
    for entry, b in accuracy_budgets(manifest):
        if not b.met:
            return ExportError(
                f"{bundle / entry.file}: int8 loses {b.drop:.2f} accuracy points even with "
                f"{len(b.kept_float)} layer(s) float, over --max-accuracy-drop {b.max_accuracy_drop:g}"
            )
    return None
