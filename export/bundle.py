"""The deployable bundle: model files, test data and `manifest.json` describing each file."""

from __future__ import annotations

import gzip
import json
import os
import platform
import tarfile
import zipfile
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

import numpy as np
from pydantic import ValidationError

from benchmarks.backends import file_suffixes
from benchmarks.manifest import (
    MANIFEST_VERSION,
    Failure,
    InputSpec,
    Manifest,
    ManifestKey,
    ModelEntry,
    ReferenceOutputs,
    TestData,
    parse_manifest,
    validation_message,
)
from export._files import atomic_path, sha256_file
from toolkit.errors import EdgekdError, InputError

__all__ = [
    "MANIFEST_VERSION",
    "file_entry",
    "variant_file_name",
    "write_test_data",
    "write_reference_outputs",
    "write_manifest",
    "write_archive",
    "source_date",
    "library_versions",
    "parity_failures",
    "MANIFEST_SCHEMA",
    "validate_manifest",
]

MANIFEST_SCHEMA = Path(__file__).with_name("manifest.schema.json")  # generated from benchmarks.manifest
_LIBS = ("edgekd", "torch", "onnx", "onnxscript", "onnxruntime", "litert-torch", "ai-edge-litert", "numpy")


def library_versions() -> dict[str, str | None]:
    out = {}
    for name in _LIBS:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def variant_file_name(stem: str, fmt: str, precision: str) -> str:
    """`student_kd_dynamic_int8.onnx`: the one naming rule of every bundle writer (fp32 has no suffix)."""
    suffix = "" if precision == "fp32" else "_" + precision.replace("-", "_")
    return f"{stem}{suffix}{file_suffixes()[fmt]}"


def file_entry(path: Path, bundle: Path, **fields) -> ModelEntry:
    """Manifest entry for one model file: relative path, size and sha256 plus the given fields."""
    try:
        return ModelEntry(
            **fields,
            file=str(path.relative_to(bundle)),
            size_bytes=path.stat().st_size,
            sha256=sha256_file(path),
        )
    except ValidationError as e:
        raise InputError(f"{path}: {validation_message(e)}") from None


# Each file written and checked so far, with the export settings it was made with: `--resume` keeps the
# ones whose settings, checkpoint and bytes are unchanged. Kept beside the manifest (not in the archive).
JOURNAL = ".export-journal.jsonl"


def record_entry(bundle: Path, entry: ModelEntry, settings: str) -> None:
    """Note a file that was written and checked (`settings`: a hash of the export settings used)."""
    noted = {"settings": settings, "entry": entry.model_dump(mode="json", exclude_unset=True)}
    with open(bundle / JOURNAL, "a", encoding="utf-8") as f:
        f.write(json.dumps(noted) + "\n")
        f.flush()
        os.fsync(f.fileno())


def finished_entries(bundle: Path, settings: str) -> dict[ManifestKey, ModelEntry]:
    """Entries the journal holds for `settings` whose file is still there with the same sha256."""
    out: dict[ManifestKey, ModelEntry] = {}
    path = bundle / JOURNAL
    lines = path.read_text(encoding="utf-8").splitlines() if path.is_file() else []
    for line in lines:
        try:
            noted = json.loads(line)
            entry = ModelEntry.model_validate(noted["entry"])
        except (ValueError, KeyError, TypeError):
            continue  # the line being written when the export was killed, or not a journal line
        file = bundle / entry.file
        if noted.get("settings") == settings and file.is_file() and sha256_file(file) == entry.sha256:
            out[entry.key] = entry
    return out


def _write_npz(dst: Path, **arrays: np.ndarray) -> None:
    """Compressed .npz with fixed member timestamps: the same arrays give the same bytes (np.savez stamps
    each member with the current time)."""
    with zipfile.ZipFile(dst, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for key, value in arrays.items():
            info = zipfile.ZipInfo(f"{key}.npy", date_time=(1980, 1, 1, 0, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            with zf.open(info, "w", force_zip64=True) as f:
                np.lib.format.write_array(f, np.ascontiguousarray(value), allow_pickle=False)


def write_test_data(bundle: Path, x_uint8: np.ndarray, y: np.ndarray) -> TestData:
    """Store the held-out test split (raw uint8 images + labels) so a board can measure accuracy."""
    dst = bundle / "data" / "test.npz"
    with atomic_path(dst) as tmp:
        _write_npz(tmp, x=np.asarray(x_uint8), y=y)
    return TestData(file="data/test.npz", n=int(len(y)), sha256=sha256_file(dst))


def write_reference_outputs(
    bundle: Path, models: list[ModelEntry], x_test: np.ndarray
) -> ReferenceOutputs | None:
    """`data/reference.npz`: each ONNX/TFLite file's logits on the first test images (`x_test`: the NCHW
    model input, as parity ran it), computed here, so a board can show its runtime gives the same
    (benchmarks/outputs.py); None when no file runs here."""
    from benchmarks.backends import available, backend_for
    from benchmarks.machine import machine_facts
    from benchmarks.outputs import REFERENCE_ROWS, run_file
    from export.exporters import EXPORTERS

    x = x_test[:REFERENCE_ROWS]
    arrays, names = {}, {}
    for i, m in enumerate(models):
        backend = m.parity.backend or backend_for(m.file)
        if not EXPORTERS.get(m.format).reference_outputs or not available(backend):
            continue
        feed = np.ascontiguousarray(x.transpose(0, 2, 3, 1)) if m.layout == "NHWC" else x
        names[m.file] = f"m{i}"
        arrays[f"m{i}"] = run_file(bundle / m.file, feed, backend=backend).astype(np.float32)
    if not arrays:
        return None
    dst = bundle / "data" / "reference.npz"
    with atomic_path(dst) as tmp:
        _write_npz(tmp, **arrays)
    facts = machine_facts()
    machine = ", ".join(str(v) for v in (facts.get("arch"), facts.get("cpu_model")) if v)
    return ReferenceOutputs(file="data/reference.npz", sha256=sha256_file(dst), rows=len(x), machine=machine,
                            arrays=names)  # fmt: skip


def parity_failures(models: list[ModelEntry]) -> list[Failure]:
    """A failure for every written file that missed its parity tolerance; its `file` stays in the bundle."""
    out = []
    for m in models:
        p = m.parity
        if p.passed:
            continue
        tol, missed = p.tolerance, []
        if p.max_abs_diff > tol.get("max_abs_diff", float("inf")):
            missed.append(f"max |diff| {p.max_abs_diff:.3g} > {tol['max_abs_diff']:g}")
        if p.top1_agreement < tol["top1_agreement"]:
            missed.append(f"top-1 agreement {p.top1_agreement:.4f} < {tol['top1_agreement']:g}")
        error = f"parity outside the {m.precision} tolerance: {', '.join(missed)}"
        out.append(Failure(name=m.name, format=m.format, precision=m.precision, file=m.file, error=error))
    return out


def write_manifest(
    bundle: Path,
    *,
    models: list[ModelEntry],
    input_spec: InputSpec,
    labels: list[str],
    test_data: TestData | None,
    failures: list[Failure],
    reference_outputs: ReferenceOutputs | None = None,
    sources: tuple[Path, ...] = (),
) -> Manifest:
    """Write `manifest.json` last and atomically: a bundle without it is incomplete by definition.

    `failures` are the files that could not be written; files that missed their parity tolerance are added.
    `created` is `source_date(sources)`, so the same checkpoints give the same manifest."""
    manifest = parse_manifest(
        {
            "manifest_version": MANIFEST_VERSION,
            "created": source_date(sources).isoformat(timespec="seconds"),
            "input": input_spec.model_dump(mode="json"),  # in full: every step's settings, defaults too
            "labels": labels,
            "test_data": test_data,
            "models": models,
            "failures": failures + parity_failures(models),
            "exported_on": {"machine": platform.machine(), "python": platform.python_version()},
            "versions": library_versions(),
        }
        | ({"reference_outputs": reference_outputs} if reference_outputs is not None else {}),
        where=bundle / "manifest.json",
    )
    path = bundle / "manifest.json"
    try:
        manifest.write(path)
    except OSError as exc:  # a full disk: no manifest, so the bundle stays incomplete, as it should
        raise EdgekdError(f"{path}: cannot write the manifest ({exc.strerror or exc})") from exc
    return manifest


def source_date(sources: tuple[Path, ...] | list[Path] = ()) -> datetime:
    """The bundle's one timestamp: `SOURCE_DATE_EPOCH` when set, else the newest write time of `sources`
    (the checkpoints or the ONNX file it is made from), else now; whole seconds, UTC."""
    if (epoch := os.environ.get("SOURCE_DATE_EPOCH", "").strip()).isdigit():
        return datetime.fromtimestamp(int(epoch), timezone.utc)
    times = [int(p.stat().st_mtime) for p in map(Path, sources) if p.is_file()]
    return datetime.fromtimestamp(max(times), timezone.utc) if times else datetime.now(timezone.utc)


def write_archive(bundle: Path, *, created: str | None = None) -> Path:
    """`bundle.tar.gz` beside the folder, for copying to a board; written only from a complete bundle.

    Reproducible: members in name order, dated `created` (the manifest's; None: `source_date()`), owned by
    0:0 with fixed modes, and a gzip header with that date and no file name: one bundle, one archive."""
    if not (bundle / "manifest.json").is_file():
        raise FileNotFoundError(f"{bundle / 'manifest.json'}: not found; the bundle is incomplete")
    dst = bundle.with_name(f"{bundle.name}.tar.gz")
    mtime = int((datetime.fromisoformat(created) if created else source_date()).timestamp())
    try:
        with atomic_path(dst) as tmp, open(tmp, "wb") as raw:
            with gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=mtime) as gz:
                with tarfile.open(fileobj=gz, mode="w", format=tarfile.PAX_FORMAT) as tar:
                    for path in _shipped_files(bundle):
                        _add_member(tar, path, str(Path(bundle.name) / path.relative_to(bundle)), mtime)
    except OSError as exc:  # a full disk: atomic_path drops the partial archive, none looks whole
        raise EdgekdError(f"{dst}: cannot write the bundle archive ({exc.strerror or exc})") from exc
    return dst


def _shipped_files(bundle: Path) -> list[Path]:
    """The bundle's files in name order, without partial writes or anything hidden (a dot-named file or
    folder: an editor's swap file, a tool's cache)."""
    return [
        path
        for path in sorted(bundle.rglob("*"))
        if path.is_file()
        and ".partial" not in path.name
        and not any(part.startswith(".") for part in path.relative_to(bundle).parts)
    ]


def _add_member(tar: tarfile.TarFile, path: Path, arcname: str, mtime: int) -> None:
    info = tarfile.TarInfo(arcname)
    info.size, info.mtime, info.mode = path.stat().st_size, mtime, 0o644
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as f:
        tar.addfile(info, f)


def validate_manifest(manifest: dict, *, where: str | Path = "manifest.json") -> None:
    """Check `manifest` against its typed definition (benchmarks.manifest); one-line `ValueError` if not."""
    parse_manifest(manifest, where=where)
