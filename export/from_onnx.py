"""A bundle from an ONNX file the user already has: copy, quantize, convert, check each against the source."""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import numpy as np

from benchmarks.manifest import Failure, FileSettings, InputSpec, Manifest, ModelEntry, Preprocessing
from export._files import sha256_file
from export.onnx_normalize import short_names
from toolkit.errors import DataError, ExportError, InputError

__all__ = ["check_from_onnx_arguments", "load_inputs", "onnx_input_spec", "export_from_onnx"]

# on_file(name, format, precision, entry_or_failure), as in the pipeline's export stage.
FileCallback = Callable[[str, str, str, ModelEntry | Failure], None]
_PARITY_RANDOM = 64  # inputs for parity when neither test nor calibration data is given


def check_from_onnx_arguments(
    *,
    int8: str | None,
    calibration: Path | None,
    test: Path | None,
    max_accuracy_drop: float | None,
) -> None:
    """Raise `ValueError` naming the option (CLI flag / keyword) that is missing or does not fit."""
    if int8 not in (None, "static", "dynamic"):
        raise InputError(f"--int8/int8: expected 'static' or 'dynamic', got {int8!r}")
    if int8 == "static" and calibration is None:
        raise InputError(
            "--calibration/calibration: static int8 needs calibration data "
            "(a .npy (N, C, H, W) float32 array or an .npz with x)"
        )
    if max_accuracy_drop is not None:
        if int8 != "static":
            raise InputError("--max-accuracy-drop/max_accuracy_drop: applies to --int8 static only")
        if test is None:
            raise InputError(
                "--test/test: --max-accuracy-drop needs labelled test data (an .npz with x and y)"
            )
        if max_accuracy_drop < 0:
            raise InputError(f"--max-accuracy-drop/max_accuracy_drop: expected >= 0, got {max_accuracy_drop}")


def onnx_input_spec(path: Path) -> InputSpec:
    """The manifest's `input` for the file's single float32 image input; preprocessing is the identity,
    since the file's own normalization is unknown: boards feed model input as it is."""
    import onnx
    from google.protobuf.message import DecodeError

    size = path.stat().st_size
    try:
        graph = onnx.load(str(path), load_external_data=False).graph
    except DecodeError as e:
        raise ExportError(f"{path}: not an ONNX model ({size} bytes that do not parse: {e})") from e
    if not graph.node:
        raise ExportError(f"{path}: not an ONNX model ({size} bytes, no graph nodes)")
    weights = {t.name for t in graph.initializer}
    inputs = [i for i in graph.input if i.name not in weights]
    t = inputs[0].type.tensor_type if len(inputs) == 1 else None
    shape = [d.dim_value or None for d in t.shape.dim] if t is not None else []
    if t is None or t.elem_type != onnx.TensorProto.FLOAT or len(shape) != 4:
        got = short_names(i.name for i in inputs)  # a zoo file may have hundreds of inputs: bounded
        raise ExportError(f"{path}: expected one float32 4-D image input, got {len(inputs)}: {got}")
    channels_last = shape[-1] in (1, 3, 4) and shape[1] not in (1, 3, 4)
    return InputSpec(
        name=inputs[0].name,
        shape=shape,
        dtype="float32",
        layout="NHWC" if channels_last else "NCHW",
        preprocessing=Preprocessing(scale=1.0, mean=[0.0], std=[1.0]),
    )


def load_inputs(path: Path, shape: list[int | None], *, labels: bool = False):
    """(x float32, y or None) from a .npy array or an .npz with x (and y); x must fit the model input."""
    if path.suffix not in (".npy", ".npz"):
        raise DataError(
            f"{path}: expected a .npy array or an .npz with x (and y), got {path.suffix or 'a folder'}"
        )
    try:
        data = np.load(path)
    except (OSError, ValueError) as e:
        raise DataError(f"{path}: cannot read: {e}") from e
    if isinstance(data, np.ndarray):
        x, y = data, None
    else:
        with data:
            if "x" not in data.files:
                raise DataError(f"{path}: expected an array named x, got {sorted(data.files)}")
            x, y = data["x"], data["y"] if "y" in data.files else None
    fits = x.ndim == len(shape) and all(
        d is None or d == s for d, s in zip(shape[1:], x.shape[1:], strict=True)
    )
    if not np.issubdtype(x.dtype, np.floating) or not fits or len(x) == 0:
        raise DataError(f"{path}: expected float32 model input shaped {shape}, got {x.dtype} {list(x.shape)}")
    if labels and (y is None or y.shape != (len(x),) or not np.issubdtype(y.dtype, np.integer)):
        got = "none" if y is None else f"{y.dtype} {list(y.shape)}"
        raise DataError(f"{path}: expected integer labels y of shape [{len(x)}], got {got}")
    x = x.astype(np.float32)  # checked after the cast: float64 beyond float32's range becomes inf here
    # NaN/Inf would poison calibration ranges and parity figures without an error of their own.
    bad = ~np.isfinite(x)
    if bad.any():
        first = [int(i) for i in np.argwhere(bad)[0]]
        raise DataError(
            f"{path}: x holds {int(bad.sum())} NaN or infinite value{'s' if bad.sum() > 1 else ''} "
            f"(first at index {first}); expected finite"
        )
    return x, y


def _parity_data(spec: InputSpec, calib: np.ndarray | None, test) -> tuple[np.ndarray, np.ndarray | None]:
    if test is not None:
        return test
    if calib is not None:
        return calib[:256], None
    shape = [_PARITY_RANDOM if d is None else d for d in spec.shape]
    return np.random.default_rng(0).standard_normal(shape).astype(np.float32), None


class _Bundle:
    """Writes files into `bundle/` and checks each against the source's outputs on the parity inputs."""

    def __init__(self, bundle: Path, src: Path, layout: str, x, y, on_file: FileCallback | None) -> None:
        from benchmarks.outputs import run_file
        from export._files import native_stderr_hidden

        self.bundle, self.stem, self.on_file = bundle, src.stem, on_file
        with native_stderr_hidden():  # onnxruntime warns once per initializer listed as an input
            self.x, self.reference = x, run_file(src, x)
        if self.reference.ndim != 2:
            raise ExportError(f"{src}: expected (N, classes) logits, got shape {list(self.reference.shape)}")
        self.y = y if y is not None else self.reference.argmax(1)  # labels: the source's own predictions
        self.labelled = y is not None
        self.common = dict(name=self.stem, role="student", layout=layout, source_onnx_sha256=sha256_file(src))
        self.entries: list[ModelEntry] = []
        self.failures: list[Failure] = []

    def path(self, fmt: str, precision: str) -> Path:
        from export.bundle import variant_file_name

        return self.bundle / variant_file_name(self.stem, fmt, precision)

    def add(self, fmt: str, precision: str, quant: FileSettings | None, **extra) -> None:
        from export.bundle import file_entry
        from export.exporters import EXPORTERS
        from export.parity import TOLERANCES, check_parity

        dst = self.path(fmt, precision)
        tolerance = precision if precision in TOLERANCES else "int8"  # e.g. dynamic-int8
        parity = check_parity(dst, self.x, self.y, self.reference, precision=tolerance).to_dict()
        parity["reference"] = "source ONNX in onnxruntime"
        parity["labels"] = "test data" if self.labelled else "source predictions"
        entry = file_entry(
            dst,
            self.bundle,
            **self.common,
            format=fmt,
            precision=precision,
            quantization=quant,
            batch=EXPORTERS.get(fmt).batch,
            parity=parity,
            **extra,
        )
        self.entries.append(entry)
        if self.on_file:
            self.on_file(self.stem, fmt, precision, entry)

    def fail(self, fmt: str, precision: str, error: ExportError) -> None:
        self.path(fmt, precision).unlink(missing_ok=True)  # never leave an older file under this name
        self.failures.append(Failure(name=self.stem, format=fmt, precision=precision, error=str(error)))
        if self.on_file:
            self.on_file(self.stem, fmt, precision, self.failures[-1])

    def make_onnx(self, precision: str, build: Callable[[Path], FileSettings | None]) -> None:
        """An ONNX file `build` writes, with its settings and its own opset (an int8 file's may be converted
        up from the source's); a failure is recorded, not raised."""
        dst = self.path("onnx", precision)
        try:
            quant = build(dst)
            _check_single_input(dst)
        except ExportError as e:
            self.fail("onnx", precision, e)
        else:
            self.add("onnx", precision, _onnx_settings(dst, quant))


def _onnx_settings(path: Path, quant: FileSettings | None) -> FileSettings:
    """An ONNX file's settings: those its writer returned, and the file's own opset."""
    from export.onnx import onnx_opset

    return (quant or FileSettings()).merged(opset=onnx_opset(path))


def _check_single_input(path: Path) -> None:
    """Raise `ExportError` when a written file asks for more than its image input (weights left as inputs)."""
    import onnx

    from export.onnx_normalize import real_inputs

    names = real_inputs(onnx.load(str(path), load_external_data=False).graph)
    if len(names) != 1:
        raise ExportError(f"{path}: expected one input, the file asks for {len(names)}: {short_names(names)}")


def _copy(src: Path, dst: Path) -> None:
    """`src` as the bundle's fp32 file, with initializers dropped from its graph inputs (zoo files at IR 3/4
    list them there, which keeps onnxruntime from treating them as weights)."""
    import onnx

    from export.onnx_normalize import normalized_copy

    model = onnx.load(str(src), load_external_data=False)
    if any(t.data_location == onnx.TensorProto.EXTERNAL for t in model.graph.initializer):
        raise ExportError(f"{src}: weights are in external data files; save the model as one .onnx file")
    normalized_copy(src, dst)


def _static(src: Path, calib, test, max_drop: float | None, per_channel: bool, why: str) -> Callable:
    """The static int8 build step for `_Bundle.make_onnx`; `why` is the per-channel choice's reason."""
    from export.quantize import quantize_static
    from export.sensitivity import quantize_with_max_drop
    from toolkit.data import ArrayCalibrationReader

    def build(dst: Path) -> FileSettings:
        spec = onnx_input_spec(src)  # a fixed-batch file takes calibration batches of its own size
        reader = ArrayCalibrationReader(calib, input_name=spec.name, batch_size=spec.shape[0] or 32)
        if max_drop is None:
            settings = quantize_static(src, dst, reader, per_channel=per_channel)
        else:  # the layers it ranked are not recorded here: the budget says which stayed float
            settings = quantize_with_max_drop(
                src, dst, reader, *test, max_accuracy_drop=max_drop, per_channel=per_channel
            ).settings
        return settings.merged(calibration_samples=len(calib), per_channel_reason=why)

    return build


def export_from_onnx(
    src: str | Path,
    out_dir: str | Path,
    *,
    calibration: str | Path | None = None,
    test: str | Path | None = None,
    int8: Literal["static", "dynamic"] | None = None,
    fp16: bool = False,
    max_accuracy_drop: float | None = None,
    tflite: bool = False,
    calibration_samples: int = 256,
    on_file: FileCallback | None = None,
) -> Manifest:
    """Copy `src` into `out_dir/bundle`, write the asked-for variants, check each against `src` run in
    onnxruntime (on `test`, else calibration, else random inputs) and write the manifest; returns it."""
    from export.bundle import write_archive, write_manifest

    src, bundle = Path(src), Path(out_dir) / "bundle"
    calibration, test = (Path(p) if p is not None else None for p in (calibration, test))
    check_from_onnx_arguments(
        int8=int8, calibration=calibration, test=test, max_accuracy_drop=max_accuracy_drop
    )
    spec = onnx_input_spec(src)
    calib = load_inputs(calibration, spec.shape)[0][:calibration_samples] if calibration else None
    test_xy = load_inputs(test, spec.shape, labels=True) if test else None
    bundle.mkdir(parents=True, exist_ok=True)
    (bundle / "manifest.json").unlink(missing_ok=True)  # incomplete until the manifest is rewritten
    out = _Bundle(bundle, src, spec.layout, *_parity_data(spec, calib, test_xy), on_file)
    fp32 = out.path("onnx", "fp32")
    _copy(src, fp32)
    out.add("onnx", "fp32", _onnx_settings(fp32, None))
    options = dict(int8=int8, fp16=fp16, calib=calib, test=test_xy, max_drop=max_accuracy_drop)
    with tempfile.TemporaryDirectory(prefix="edgekd-from-onnx-") as work:
        _variants(out, fp32, Path(work), **options)
    if tflite:
        _tflite(out, fp32, int8=int8, fp16=fp16, calib=calib)
    manifest = write_manifest(
        bundle,
        models=out.entries,
        input_spec=spec,
        labels=[str(i) for i in range(out.reference.shape[1])],
        test_data=None,  # boards measure accuracy on uint8 images; ours are float model input
        failures=out.failures,
        sources=(src,),
    )
    write_archive(bundle, created=manifest.created)
    return manifest


def _variants(out: _Bundle, fp32: Path, work: Path, *, int8, fp16: bool, calib, test, max_drop) -> None:
    from export.quantize import convert_fp16

    if int8 is not None:
        _int8(out, fp32, work, int8=int8, calib=calib, test=test, max_drop=max_drop)
    if fp16:
        out.make_onnx("fp16", lambda dst: convert_fp16(fp32, dst))


def _int8(out: _Bundle, fp32: Path, work: Path, *, int8: str, calib, test, max_drop) -> None:
    """The int8 file, quantized from `fp32` converted in `work` to an opset quantization handles."""
    from export.onnx_normalize import quantization_source
    from export.quantize import quantize_dynamic

    precision = "int8" if int8 == "static" else "dynamic-int8"
    try:
        src, per_channel, why = quantization_source(fp32, work)
    except ExportError as e:
        out.fail("onnx", precision, e)
        return
    if int8 == "static":
        out.make_onnx(precision, _static(src, calib, test, max_drop, per_channel, why))
    else:
        out.make_onnx(precision, lambda dst: quantize_dynamic(src, dst))


def _tflite(out: _Bundle, fp32: Path, *, int8, fp16: bool, calib) -> None:
    """fp32 TFLite, plus fp16 and static int8 when asked for, from one onnx2tf run."""
    from export.onnx2tf import onnx_to_tflite

    wanted = ["fp32"] + ["fp16"] * fp16 + ["int8"] * (int8 == "static")
    paths = {p: out.path("tflite", p) for p in wanted}
    try:
        info = onnx_to_tflite(
            fp32,
            paths["fp32"],
            fp16_dst=paths.get("fp16"),
            int8_dst=paths.get("int8"),
            calibration=calib if "int8" in paths else None,
        )
    except ExportError as e:
        for precision in wanted:
            out.fail("tflite", precision, e)
        return
    converter = f"onnx2tf {info.version}"
    for precision in wanted:
        out.add("tflite", precision, _tflite_settings(precision, calib), converter=converter)


def _tflite_settings(precision: str, calib) -> FileSettings | None:
    """What an onnx2tf file records: fp16 its mode, static int8 its calibration, fp32 nothing."""
    if precision == "fp16":
        return FileSettings(mode="fp16")
    if precision == "int8":
        fmt = "TFLite integer_quant (float I/O)"
        return FileSettings(mode="static", format=fmt, calibration_samples=len(calib))
    return None
