"""Export of a model with the ops mobile nets use, to every format, checked against torch; unsupported ops."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("litert_torch")

from torch import nn  # noqa: E402

from benchmarks.outputs import run_file  # noqa: E402
from export.onnx import export_onnx  # noqa: E402
from export.parity import check_parity  # noqa: E402
from export.quantize import quantize_static  # noqa: E402
from export.tflite import export_tflite, export_tflite_int8  # noqa: E402
from export.torch_program import export_program  # noqa: E402
from toolkit.data import ArrayCalibrationReader  # noqa: E402
from toolkit.errors import ExportError  # noqa: E402


class SqueezeExcite(nn.Module):
    def __init__(self, c: int, r: int = 2) -> None:
        super().__init__()
        self.fc = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Conv2d(c, c // r, 1),
            nn.ReLU(),
            nn.Conv2d(c // r, c, 1),
            nn.Hardsigmoid(),
        )

    def forward(self, x):
        return x * self.fc(x)


class MixedOps(nn.Module):
    """Depthwise conv, hardswish, squeeze-excitation, LayerNorm and GELU in one small classifier."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, stride=2, padding=1), nn.BatchNorm2d(8), nn.Hardswish(),
            nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.Hardswish(),
            SqueezeExcite(8), nn.Conv2d(8, 16, 1), nn.AdaptiveAvgPool2d(1), nn.Flatten(1),
        )  # fmt: skip
        self.head = nn.Sequential(nn.LayerNorm(16), nn.Linear(16, 32), nn.GELU(), nn.Linear(32, 10))

    def forward(self, x):
        return self.head(self.features(x))


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    torch.manual_seed(0)
    model = MixedOps().eval()
    with torch.no_grad():  # non-trivial BN statistics, so folding them is exercised
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    x = np.random.default_rng(0).standard_normal((64, 1, 16, 16)).astype(np.float32)
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    return model, x, ref, tmp_path_factory.mktemp("mixed")


@pytest.mark.parametrize("fmt", ["onnx", "tflite", "pt2"])
def test_fp32_formats_match_torch(mixed, fmt):
    model, x, ref, tmp = mixed
    dst = tmp / f"m.{fmt}"
    sample = torch.from_numpy(x[:1])
    {"onnx": export_onnx, "tflite": export_tflite, "pt2": export_program}[fmt](model, sample, dst)
    out = run_file(dst, x)
    np.testing.assert_allclose(out, ref, rtol=1e-4, atol=1e-4)
    rec = check_parity(dst, x, ref.argmax(1), ref, precision="fp32")
    assert rec.passed and rec.top1_agreement == 1.0 and rec.n == 64


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.corrcoef(a.ravel(), b.ravel())[0, 1])


def test_int8_formats_track_torch(mixed):
    model, x, ref, tmp = mixed
    export_onnx(model, torch.from_numpy(x[:1]), tmp / "q.onnx")
    settings = quantize_static(tmp / "q.onnx", tmp / "q_int8.onnx", ArrayCalibrationReader(x, batch_size=16))
    assert settings.format == "QDQ" and settings.weights == "int8"
    calib = (torch.from_numpy(x[i : i + 1]) for i in range(len(x)))
    export_tflite_int8(model, torch.from_numpy(x[:1]), tmp / "q_int8.tflite", calib)
    for path in (tmp / "q_int8.onnx", tmp / "q_int8.tflite"):
        out = run_file(path, x)
        assert out.shape == ref.shape and out.dtype == np.float32
        # Logits of an untrained net have small margins, so compare values, not only the argmax.
        assert _pearson(out, ref) > 0.98, path.name
    # At 1.4 k params the Q/DQ scales and int32 biases outweigh the bytes saved (the size target is
    # checked on the real student in test_e2e); here: the conv/linear weights are stored as int8.
    import onnx

    init = onnx.load(str(tmp / "q_int8.onnx")).graph.initializer
    int8 = sum(int(np.prod(t.dims)) for t in init if t.data_type == onnx.TensorProto.INT8)
    assert int8 >= 0.9 * sum(
        p.numel() for n, p in model.named_parameters() if n.endswith("weight") and p.dim() > 1
    )


class Cummax(nn.Module):
    def forward(self, x):
        return torch.cummax(x.flatten(1), 1).values


class LogDet(nn.Module):
    def forward(self, x):
        m = x[:, 0, :4, :4]
        return torch.logdet(m @ m.transpose(1, 2) + torch.eye(4)).unsqueeze(1)


@pytest.mark.parametrize(
    "module,fmt,op",
    [
        (Cummax, "onnx", "aten.cummax.default"),
        (Cummax, "tflite", "aten.cummax.default"),
        (LogDet, "tflite", "aten._linalg_slogdet.default"),
    ],
)
def test_unsupported_op_is_one_line_naming_op_and_format(tmp_path, module, fmt, op):
    dst = tmp_path / f"m.{fmt}"
    exporter = {"onnx": export_onnx, "tflite": export_tflite}[fmt]
    with pytest.raises(ExportError) as err:
        exporter(module(), torch.randn(1, 1, 8, 8), dst)
    msg = str(err.value)
    assert msg.startswith(f"{dst}: {'ONNX' if fmt == 'onnx' else 'TFLite'}") and f"unsupported op {op}" in msg
    assert "\n" not in msg and "\x1b[" not in msg
    assert not dst.exists() and not list(tmp_path.iterdir())  # no partial file left behind


def test_other_formats_still_export_when_one_cannot(tmp_path):
    x = torch.randn(1, 1, 8, 8)
    export_onnx(LogDet(), x, tmp_path / "m.onnx")  # ONNX has logdet ...
    with pytest.raises(ExportError, match="unsupported op aten._linalg_slogdet"):
        export_tflite(LogDet(), x, tmp_path / "m.tflite")  # ... TFLite does not
    out = run_file(tmp_path / "m.onnx", x.numpy())
    np.testing.assert_allclose(out, LogDet()(x).numpy(), rtol=1e-4, atol=1e-4)


def test_onnx_dynamic_int8_and_fp16(mixed):
    from export.quantize import convert_fp16, quantize_dynamic

    model, x, ref, tmp = mixed
    export_onnx(model, torch.from_numpy(x[:1]), tmp / "d.onnx")
    dyn = quantize_dynamic(tmp / "d.onnx", tmp / "d_int8.onnx")
    fp16 = convert_fp16(tmp / "d.onnx", tmp / "d_fp16.onnx")
    assert dyn.mode == "dynamic" and fp16.keep_io_types is True
    out16 = run_file(tmp / "d_fp16.onnx", x)
    assert out16.dtype == np.float32  # float32 in and out, float16 inside
    np.testing.assert_allclose(out16, ref, rtol=0, atol=5e-2)
    assert check_parity(tmp / "d_fp16.onnx", x, ref.argmax(1), ref, precision="fp16").max_abs_diff < 5e-2
    import onnx

    # Weights are stored as float16 (file size would mostly measure graph overhead on a model this small).
    inits = onnx.load(str(tmp / "d_fp16.onnx")).graph.initializer
    floats = {i.data_type for i in inits if i.data_type in (onnx.TensorProto.FLOAT, onnx.TensorProto.FLOAT16)}
    assert floats == {onnx.TensorProto.FLOAT16}
    assert _pearson(run_file(tmp / "d_int8.onnx", x), ref) > 0.98


def test_bundle_archive_holds_complete_files_only(tmp_path):
    import tarfile

    from export.bundle import write_archive

    bundle = tmp_path / "bundle"
    (bundle / "data").mkdir(parents=True)
    with pytest.raises(FileNotFoundError, match="manifest.json: not found; the bundle is incomplete"):
        write_archive(bundle)
    for name, text in {
        "manifest.json": "{}",
        "m.onnx": "x",
        "data/test.npz": "y",
        ".m.partial.tflite": "z",
        ".cache/layout.json": "hidden folder",
        "data/.swp": "hidden file",
    }.items():
        (bundle / name).parent.mkdir(exist_ok=True)
        (bundle / name).write_text(text)
    archive = write_archive(bundle)
    assert archive == tmp_path / "bundle.tar.gz"
    with tarfile.open(archive) as tar:
        assert sorted(tar.getnames()) == ["bundle/data/test.npz", "bundle/m.onnx", "bundle/manifest.json"]
        assert tar.extractfile("bundle/m.onnx").read() == b"x"


BAD_MANIFESTS = [
    (lambda m: m["models"][0].update(sha256="abc"), "models.0.sha256: String should match pattern"),
    (
        lambda m: m["models"][0].update(format="coreml"),
        "models.0.format: Value error, format 'coreml' is not one a registered backend runs (onnx, pte",
    ),
    (lambda m: m["input"].update(layout="NWHC"), "input.layout: Input should be 'NCHW', 'NHWC' or 'NL'"),
    (
        lambda m: m["models"][0]["parity"].update(top1_agreement=1.5),
        "models.0.parity.top1_agreement: Input should be less than or equal to 1 (got 1.5)",
    ),
    (lambda m: m.pop("labels"), "labels: Field required"),
    (lambda m: m.update(extra=1), "extra: Extra inputs are not permitted"),
    (  # a misspelt settings key is caught, not stored
        lambda m: m["models"][1].update(quantization={"max_accuracy_drop": {}}),
        "models.1.quantization.max_accuracy_drop: Extra inputs are not permitted",
    ),
    (lambda m: m.update(manifest_version=2), "manifest_version 2 is not one this edgekd reads (1)"),
]


def test_written_manifest_matches_the_schema_and_bad_ones_name_the_field(tiny_run):
    import copy
    import json

    from export.bundle import validate_manifest

    manifest = json.loads((tiny_run / "bundle" / "manifest.json").read_text())
    validate_manifest(manifest)  # what export wrote is valid
    for mutate, message in BAD_MANIFESTS:
        bad = copy.deepcopy(manifest)
        mutate(bad)
        with pytest.raises(ValueError) as err:
            validate_manifest(bad, where="b/manifest.json")
        assert str(err.value).startswith("b/manifest.json: ") and message in str(err.value), str(err.value)
        assert "\n" not in str(err.value)


def test_default_run_ships_int8_students_3_5x_smaller_with_compact_names(tmp_path):
    """The default run's export settings on its student architecture, through the export stage's own
    writers: static int8 ONNX and TFLite files at least 3.5x smaller than their fp32 siblings."""
    import onnx

    from export.exporters import ExportJob
    from tests.conftest import fitted_student
    from toolkit.config import DEFAULT_CONFIG, load_config
    from toolkit.pipeline.export_stage import _export_one, file_name, per_channel_for

    cfg = load_config(DEFAULT_CONFIG)
    assert cfg.student.arch == "cnn_student" and cfg.export.onnx_compact_names
    # The default layouts' sizes: a layout search (on where int8 runs slower here) may pick per-channel.
    cfg.export = cfg.export.model_copy(update={"onnx_int8_search": False, "tflite_int8_search": False})
    model, x, y = fitted_student()
    with torch.no_grad():
        ref = model(torch.from_numpy(x)).numpy()
    per_channel, why = per_channel_for(model, cfg.export.per_channel)
    assert (per_channel, why.split(":")[0]) == (False, "auto")  # plain convs: per-tensor
    calib = x[: cfg.export.calibration_samples]
    sample = torch.from_numpy(x[:1])
    for fmt in ("onnx", "tflite"):
        paths = {}
        for precision in ("fp32", "int8"):
            paths[precision] = tmp_path / file_name("student_kd", fmt, precision)
            job = ExportJob(name="student_kd", model=model, sample=sample, precision=precision,
                            dst=paths[precision], settings=cfg.export, calib=calib, x_val=x, y_val=y,
                            per_channel=per_channel, per_channel_reason=why, work=tmp_path)  # fmt: skip
            settings = _export_one(job, fmt, len(calib))
            if fmt == "onnx":  # recorded in the manifest for every shipped ONNX file
                assert settings.compact_names is True
            if precision == "int8":  # both formats record calibration size and the per-channel choice
                assert settings.calibration_samples == cfg.export.calibration_samples
                assert settings.per_channel is False and settings.per_channel_reason == why
        ratio = paths["fp32"].stat().st_size / paths["int8"].stat().st_size
        assert ratio >= 3.5, f"{fmt}: int8 only {ratio:.2f}x smaller"
        rec = check_parity(paths["int8"], x, y, ref, precision="int8")
        assert rec.passed and rec.accuracy > 0.9, rec
    for precision in ("fp32", "int8"):  # shipped ONNX files: short tensor names, no node names, named I/O
        graph = onnx.load(str(tmp_path / file_name("student_kd", "onnx", precision))).graph
        assert all(not n.name for n in graph.node) and all(len(t.name) <= 4 for t in graph.initializer)
        assert [i.name for i in graph.input] == ["input"] and [o.name for o in graph.output] == ["logits"]


def test_per_channel_auto_follows_depthwise_convs():
    from toolkit.pipeline.export_stage import per_channel_for

    assert per_channel_for(MixedOps(), "auto")[0] is True  # depthwise conv: per-channel scales
    assert per_channel_for(MixedOps(), False) == (False, "set in config")
    assert per_channel_for(nn.Sequential(nn.Conv2d(1, 4, 3)), "auto")[0] is False


BUDGET_KEYS = {
    "met",
    "max_accuracy_drop",
    "fp32_accuracy",
    "all_int8_accuracy",
    "accuracy",
    "drop",
    "kept_float",
}


def test_accuracy_budget_is_recorded_under_one_key_by_both_writers(tmp_path):
    """`export.max_accuracy_drop` (run directory) and `--max-accuracy-drop` (--from) write the same block."""
    from types import SimpleNamespace

    from export.exporters import ExportJob
    from export.from_onnx import export_from_onnx
    from tests.conftest import fitted_student
    from toolkit.cli.output import _quant_cell
    from toolkit.config import DEFAULT_CONFIG, load_config
    from toolkit.pipeline.export_stage import _export_one, per_channel_for

    cfg = load_config(DEFAULT_CONFIG)
    # every layer that costs accuracy on validation goes back to float
    cfg.export = cfg.export.model_copy(update={"max_accuracy_drop": 0.0})
    model, x, y = fitted_student()
    per_channel, why = per_channel_for(model, cfg.export.per_channel)
    sample = torch.from_numpy(x[:1])
    job = ExportJob(name="student_kd", model=model, sample=sample, precision="int8", dst=tmp_path / "q.onnx",
                    settings=cfg.export, calib=x[:64], x_val=x, y_val=y, per_channel=per_channel,
                    per_channel_reason=why, work=tmp_path)  # fmt: skip
    settings = _export_one(job, "onnx", 64)
    budget = settings.accuracy_budget
    assert budget.model_fields_set == BUDGET_KEYS and budget.max_accuracy_drop == 0.0
    kept = budget.kept_float
    assert [r.node for r in settings.sensitivity.layers][: len(kept)] == kept  # greedy: costliest first
    entry = SimpleNamespace(precision="int8", quantization=settings)
    assert _quant_cell(entry).endswith(f"{len(kept)} layer(s) float" if kept else "per-tensor")
    np.save(tmp_path / "calib.npy", x[:64])
    np.savez(tmp_path / "test.npz", x=x, y=y)
    manifest = export_from_onnx(
        tmp_path / "student_kd.onnx",  # the named float file the export stage quantized
        tmp_path / "from",
        int8="static",
        calibration=tmp_path / "calib.npy",
        test=tmp_path / "test.npz",
        max_accuracy_drop=0.0,
    )
    assert manifest.models[1].quantization.accuracy_budget.model_fields_set == BUDGET_KEYS


def test_shipped_json_schema_is_the_typed_manifest_s():
    """export/manifest.schema.json is generated from benchmarks.manifest, never edited by hand."""
    from benchmarks.manifest import json_schema
    from export.bundle import MANIFEST_SCHEMA

    assert MANIFEST_SCHEMA.read_text() == json_schema(), (
        "regenerate: python -c 'from benchmarks.manifest import json_schema; "
        'open("export/manifest.schema.json", "w").write(json_schema())\''
    )
