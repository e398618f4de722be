"""`manifest.json`, the bundle's description: the one typed definition every writer and reader goes through.

Torch-free (pydantic, a core dependency): a board reads it with the `bench` install alone.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator

from benchmarks.backends import file_suffixes
from benchmarks.errors import InputError
from benchmarks.files import sha256_file, write_text_atomic

__all__ = [
    "MANIFEST_VERSION",
    "Manifest",
    "ModelEntry",
    "Failure",
    "Parity",
    "FileSettings",
    "QatRecord",
    "LayoutSearch",
    "LayoutTried",
    "AccuracyBudget",
    "Sensitivity",
    "LayerSensitivity",
    "TimedFile",
    "InputSpec",
    "Preprocessing",
    "TokenPreprocessing",
    "ImageStep",
    "TestData",
    "ReferenceOutputs",
    "ManifestKey",
    "parse_manifest",
    "read_manifest",
    "check_files",
    "listed_files",
    "validation_message",
    "json_schema",
]

MANIFEST_VERSION = 1  # readers accept exactly the versions they know
ManifestKey = tuple[str, str, str]  # (name, format, precision): the join key between records and manifest
Sha256 = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Unit = Annotated[float, Field(ge=0, le=1)]


def _known_format(fmt: str) -> str:
    if fmt not in file_suffixes():
        known = ", ".join(file_suffixes())
        raise InputError(f"format {fmt!r} is not one a registered backend runs ({known})")
    return fmt


Format = Annotated[str, AfterValidator(_known_format)]  # what registered backends run: onnx, tflite, torch
Precision = Literal["fp32", "fp16", "int8", "dynamic-int8"]
Layout = Literal["NCHW", "NHWC", "NL"]  # NL: token ids (batch, sequence)
InputDtype = Literal["float32", "float16", "int8", "uint8", "int32", "int64"]


class _Strict(BaseModel):
    # Unknown keys are refused: a misspelt field (say `max_accuracy_drop` for `accuracy_budget`) fails here.
    model_config = ConfigDict(extra="forbid")


Size = Annotated[int, Field(ge=1)]


class ConvertStep(_Strict):
    """Convert a decoded image to gray (`L`) or `RGB` (RGBA and palette images included)."""

    op: Literal["convert"]
    mode: Literal["L", "RGB"]


class ResizeStep(_Strict):
    """Resize to `[H, W]`, or with one number the shorter side to it (aspect ratio kept)."""

    op: Literal["resize"]
    size: list[Size] = Field(min_length=1, max_length=2)
    interpolation: Literal["nearest", "bilinear", "bicubic"] = "bilinear"


class CenterCropStep(_Strict):
    op: Literal["center_crop"]
    size: list[Size] = Field(min_length=2, max_length=2)  # [H, W]


ImageStep = Annotated[ConvertStep | ResizeStep | CenterCropStep, Field(discriminator="op")]


class Preprocessing(_Strict):
    """Image `steps` in order (decoded image -> uint8 array), then float = (uint8 * scale - mean) / std,
    per channel, in the file's layout (`benchmarks.preprocess` applies it, here and on the board)."""

    scale: float = Field(gt=0)
    mean: list[float] = Field(min_length=1)
    std: list[Annotated[float, Field(gt=0)]] = Field(min_length=1)
    steps: list[ImageStep] = Field(default_factory=list)


class TokenPreprocessing(_Strict):
    """Text -> int token ids: the bundle's `tokenizer` (a tokenizer.json, read with the `tokenizers` package
    only), truncated and padded with `pad_id` to `seq_len` (`benchmarks.text`)."""

    kind: Literal["tokens"]
    tokenizer: str = Field(min_length=1)  # file in the bundle
    sha256: Sha256
    seq_len: int = Field(ge=1)
    pad_id: int = Field(0, ge=0)


class InputSpec(_Strict):
    name: str = Field(min_length=1)
    shape: list[Annotated[int, Field(ge=1)] | None] = Field(min_length=1)  # None: dynamic
    dtype: InputDtype  # of the ONNX files; a file whose own input differs says so in `input_dtype`
    layout: Layout
    preprocessing: Preprocessing | TokenPreprocessing


class TestData(_Strict):
    """Held-out uint8 images (or int64 token ids) and labels inside the bundle, for accuracy on the board."""

    file: str
    n: int = Field(ge=1)
    sha256: Sha256


class ReferenceOutputs(_Strict):
    """Each file's outputs on the first `rows` test images where it was exported (benchmarks/outputs.py)."""

    file: str
    sha256: Sha256
    rows: int = Field(ge=1)
    machine: str = Field(min_length=1)  # "x86_64, <CPU model>": where the outputs were computed
    arrays: dict[str, str]  # model file (as in `models`) -> array name in `file`


class Parity(_Strict):
    """How closely the file reproduces its reference (torch, or the source ONNX); enough or not."""

    n: int = Field(ge=1)
    max_abs_diff: float = Field(ge=0)
    mean_abs_diff: float = Field(ge=0)
    top1_agreement: Unit
    accuracy: Unit
    passed: bool
    torch_accuracy: Unit | None = None
    tolerance: dict[str, float] = Field(default_factory=dict)
    backend: str | None = None
    layout: Layout = "NCHW"
    runtimes: dict[str, Annotated[str, Field(min_length=1)]] = Field(default_factory=dict)
    reference: str | None = None  # --from: "source ONNX in onnxruntime"
    labels: str | None = None  # --from: "test data" or "source predictions"

    def to_dict(self) -> dict[str, Any]:
        """The manifest's `parity` object: the fields that were given (so older files round-trip)."""
        return self.model_dump(mode="json", exclude_unset=True)


class LayerSensitivity(_Strict):
    """Validation accuracy with only `node` in int8, and its drop from the float file in points."""

    node: str
    op_type: str
    accuracy: float
    drop: float


class Sensitivity(_Strict):
    """Per-layer int8 sensitivity of an ONNX file, costliest first."""

    split: str
    layers: list[LayerSensitivity]


class AccuracyBudget(_Strict):
    """`max_accuracy_drop`'s search: the layers kept float until int8 accuracy is within the budget."""

    met: bool
    max_accuracy_drop: float
    fp32_accuracy: float
    all_int8_accuracy: float
    accuracy: float
    drop: float
    kept_float: list[str]


class LayoutTried(_Strict):
    """One int8 layout the search wrote: its p50, its top-1 agreement with fp32, and whether it passed."""

    layout: str
    p50_us: float
    top1_agreement_val: float
    passed: bool


class LayoutSearch(_Strict):
    """Why the int8 layout search ran on which CPU, every layout it timed, and the one kept."""

    cpu: str | None
    int8_dot_product: list[str] | None
    trigger: str
    default: str | None
    margin: float
    fp32_p50_us: float
    kept: str
    faster_than_fp32: bool
    timing: str
    decided: str | None = None  # how the decision is reused (manifests before it omit it)
    preference: list[str] | None = None  # near-equal layouts: the first in this order is kept
    tried: list[LayoutTried]


class TimedFile(_Strict):
    """A file's size and batch-1 p50 with the range of its rounds (µs)."""

    size_bytes: int
    p50_us: float
    p50_range_us: list[float]


class QatRecord(_Strict):
    """Post-training int8 against quantization-aware distillation (QAT-KD) for one file, and which shipped."""

    split: str
    fp32_accuracy: float
    ptq_accuracy: float
    ptq_drop_pts: float
    budget_pts: float
    over_budget: bool
    ran: bool
    shipped: Literal["ptq", "qat-kd"]
    qat_accuracy: float | None = None
    method: str | None = None
    epochs: int | None = None
    lr: float | None = None
    batch_size: int | None = None
    seconds: float | None = None
    loss_per_epoch: list[float] | None = None
    timing: str | None = None
    files: dict[str, TimedFile] | None = None  # fp32, ptq, qat-kd
    shipped_reason: str | None = None
    parity_reference: str | None = None


class FileSettings(_Strict):
    """How a file was exported and quantized (the manifest's `quantization` object); all keys optional."""

    mode: str | None = None  # static | dynamic | fp16
    format: str | None = None  # QDQ, QOperator, PT2E, ...
    activations: str | None = None
    weights: str | None = None
    per_channel: bool | None = None
    per_channel_reason: str | None = None
    reduce_range: bool | None = None
    reduce_range_reason: str | None = None
    calibration: str | None = None
    calibration_samples: int | None = None
    nodes_excluded: list[str] | None = None
    keep_io_types: bool | None = None
    # ExecuTorch: the delegate the program was lowered to, and how many of its operator nodes it took
    delegate: str | None = None
    delegated_nodes: int | None = Field(None, ge=0)
    graph_nodes: int | None = Field(None, ge=0)
    io: str | None = None
    exporter: str | None = None
    opset: int | None = None
    simplified: bool | None = None
    compact_names: bool | None = None
    sensitivity: Sensitivity | None = None
    accuracy_budget: AccuracyBudget | None = None
    embeddings: str | None = None  # ONNX dynamic int8: "int8" or "float" (the embedding lookups)
    embeddings_reason: str | None = None
    qat: QatRecord | None = None
    layout_search: LayoutSearch | None = None

    def merged(self, **fields: Any) -> FileSettings:
        """These settings with `fields` given too (validated; the file records the keys given, as ever)."""
        return FileSettings.model_validate({**self.model_dump(exclude_unset=True), **fields})


class ModelEntry(_Strict):
    """One shipped file: what it is, its checksum, its settings and its parity check."""

    name: str = Field(min_length=1)
    role: Literal["teacher", "student"]
    format: Format
    precision: Precision
    file: str = Field(min_length=1)
    size_bytes: int = Field(ge=1)
    sha256: Sha256
    parity: Parity
    arch: str | None = None
    params: int | None = Field(None, ge=0)
    macs: int | None = Field(None, ge=0)
    source_checkpoint_sha256: Sha256 | None = None
    source_onnx_sha256: Sha256 | None = None
    layout: Layout = "NCHW"
    quantization: FileSettings | None = None
    batch: int | None = Field(None, ge=1)  # fixed batch (TFLite); None: dynamic
    converter: str | None = None
    input_dtype: InputDtype | None = None  # None: the manifest's input dtype (TFLite token ids: int32)

    @property
    def key(self) -> ManifestKey:
        return (self.name, self.format, self.precision)


class Failure(_Strict):
    """A file that could not be written, or (with `file`) was written but missed its parity tolerance."""

    name: str
    format: str
    precision: str
    error: str = Field(min_length=1)
    file: str | None = None


class Manifest(_Strict):
    manifest_version: Literal[1]
    created: str
    input: InputSpec
    labels: list[str]
    test_data: TestData | None
    models: list[ModelEntry]
    failures: list[Failure]
    exported_on: dict[str, Any] = Field(default_factory=dict)
    versions: dict[str, str | None]
    reference_outputs: ReferenceOutputs | None = None

    @model_validator(mode="after")
    def _one_entry_per_key(self) -> Manifest:
        seen: set[ManifestKey] = set()
        for i, m in enumerate(self.models):
            if m.key in seen:
                raise InputError(f"models[{i}] duplicates {m.key}")
            seen.add(m.key)
        return self

    def entries_by_key(self) -> dict[ManifestKey, ModelEntry]:
        return {m.key: m for m in self.models}

    def to_json(self) -> str:
        # exclude_unset: the file holds exactly the keys its writer gave, so old files round-trip.
        return json.dumps(self.model_dump(mode="json", exclude_unset=True), indent=2)

    def write(self, path: str | Path) -> Path:
        """Write atomically: a manifest that exists is whole (it is what makes a bundle complete)."""
        return write_text_atomic(path, self.to_json())


def validation_message(err: ValidationError) -> str:
    """The first problem in one line: `models.0.parity.top1_agreement: Input should be ... (got 1.5)`."""
    first = err.errors()[0]
    # A key from the file is quoted when it is not printable, so a line break in it cannot split the line.
    where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in first["loc"]) or "(top level)"
    got = "" if first["type"] == "missing" else f" (got {first['input']!r})"
    more = f"; and {err.error_count() - 1} more" if err.error_count() > 1 else ""
    return f"{where}: {first['msg']}{got}{more}"[:400]


def parse_manifest(data: Any, *, where: str | Path) -> Manifest:
    """Validate a parsed manifest; one-line `ValueError` naming `where` and the field otherwise."""
    if isinstance(data, dict) and data.get("manifest_version") not in (None, MANIFEST_VERSION):
        raise InputError(
            f"{where}: manifest_version {data['manifest_version']!r} is not one this edgekd reads "
            f"({MANIFEST_VERSION}); use the edgekd that wrote the bundle"
        )
    try:
        return Manifest.model_validate(data)
    except ValidationError as e:
        raise InputError(f"{where}: {validation_message(e)}") from None


def json_schema() -> str:
    """The JSON Schema of `Manifest` (shipped as export/manifest.schema.json for other tools)."""
    return json.dumps(Manifest.model_json_schema(), indent=2) + "\n"


def read_manifest(bundle: str | Path) -> Manifest:
    """`bundle/manifest.json` (or that file itself), validated; `ValueError` naming the file otherwise."""
    bundle = Path(bundle)
    path = bundle if bundle.suffix == ".json" else bundle / "manifest.json"
    if not path.is_file():
        raise InputError(f"{path}: not found (is {path.parent} an edgekd bundle? run `edgekd export` first)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise InputError(f"{path}: invalid JSON ({e})") from None
    return parse_manifest(data, where=path)


def listed_files(manifest: Manifest) -> list[tuple[str, str, str]]:
    """(path in the bundle, sha256, what it is) of every file the manifest names."""
    named = [(m.file, m.sha256, "model file") for m in manifest.models]
    if manifest.test_data is not None:
        named.append((manifest.test_data.file, manifest.test_data.sha256, "test data file"))
    if manifest.reference_outputs is not None:
        ref = manifest.reference_outputs
        named.append((ref.file, ref.sha256, "reference outputs file"))
    if isinstance(pre := manifest.input.preprocessing, TokenPreprocessing):
        named.append((pre.tokenizer, pre.sha256, "tokenizer file"))
    return named


def check_files(manifest: Manifest, bundle: str | Path) -> None:
    """Raise `ValueError` naming the first file the manifest lists that is missing, lies outside `bundle`
    (a `../` path or a symlink: a received bundle must not make the board read other files) or whose
    sha256 differs from the manifest's."""
    bundle = Path(bundle)
    root = bundle.resolve()
    for file, sha, what in listed_files(manifest):
        path = bundle / file
        resolved = path.resolve()
        if not resolved.is_relative_to(root):
            raise InputError(
                f"{path}: resolves to {resolved}, outside the bundle {bundle}; refusing to read it"
            )
        if not path.is_file():
            raise InputError(f"{path}: {what} not found")
        if (actual := sha256_file(path)) != sha:
            raise InputError(
                f"{path}: sha256 {actual[:12]}… does not match the manifest's {sha[:12]}… "
                "(changed since export?)"
            )
