"""`edgekd export --from` on ONNX files as model zoos hold them: IR 4, opset 9, weights listed as inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from typer.testing import CliRunner  # noqa: E402

from benchmarks.manifest import FileSettings  # noqa: E402
from export._files import quiet_converters  # noqa: E402
from export.bundle import validate_manifest  # noqa: E402
from export.from_onnx import export_from_onnx  # noqa: E402
from export.onnx_normalize import real_inputs, short_names  # noqa: E402
from tests.conftest import edgekd_main  # noqa: E402
from toolkit.cli.main import app  # noqa: E402

nn = torch.nn
runner = CliRunner()
SHAPE = (3, 16, 16)
WIDTH = 32  # channels: enough weights that int8 and fp16 files come out clearly smaller than fp32


class _Block(nn.Module):
    """conv-BN-relu-conv-BN plus the identity, as in ResNet."""

    def __init__(self, c: int) -> None:
        super().__init__()
        self.c1, self.b1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.c2, self.b2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x):
        return torch.relu(x + self.b2(self.c2(torch.relu(self.b1(self.c1(x))))))


class _ResNetish(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        stem = [nn.Conv2d(3, WIDTH, 3, padding=1, bias=False), nn.BatchNorm2d(WIDTH), nn.ReLU()]
        self.features = nn.Sequential(*stem, nn.MaxPool2d(2), _Block(WIDTH), _Block(WIDTH))
        self.fc = nn.Linear(WIDTH, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _fitted(n: int = 256):
    """Random conv/BN weights and a least-squares head on a 10-class template task: clear predictions."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = _ResNetish().eval()
    with torch.no_grad():
        for m in model.modules():  # non-trivial BN statistics, so the BatchNormalization nodes matter
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.uniform_(-0.2, 0.2)
                m.running_var.uniform_(0.5, 2.0)
        templates = rng.standard_normal((10, *SHAPE)).astype(np.float32)
        y = rng.integers(0, 10, 2 * n)
        x = (templates[y] + 0.5 * rng.standard_normal((2 * n, *SHAPE))).astype(np.float32)
        feats = nn.functional.adaptive_avg_pool2d(model.features(torch.from_numpy(x[:n])), 1).flatten(1)
        a = np.c_[feats.numpy(), np.ones(n)]
        w = np.linalg.solve(a.T @ a + 0.01 * np.eye(a.shape[1]), a.T @ (10 * np.eye(10)[y[:n]]))
        model.fc.weight.copy_(torch.from_numpy(w[:-1].T.astype(np.float32)))
        model.fc.bias.copy_(torch.from_numpy(w[-1].astype(np.float32)))
    return model, x[n:], y[n:]


def _zoo_onnx(model, path, *, batch: int | None, opset: int = 9, ir: int = 4) -> None:
    """What older exporters wrote: opset 9, IR 4, every initializer also a graph input, BN unfolded."""
    axes = {"input": {0: "batch"}, "logits": {0: "batch"}} if batch is None else None
    with quiet_converters():
        torch.onnx.export(
            model,
            (torch.zeros(batch or 1, *SHAPE),),
            str(path),
            dynamo=False,
            opset_version=opset,
            keep_initializers_as_inputs=True,
            do_constant_folding=False,
            input_names=["input"],
            output_names=["logits"],
            dynamic_axes=axes,
        )
    proto = onnx.load(str(path))
    proto.ir_version = ir
    onnx.save(proto, str(path))


@pytest.fixture(scope="module")
def zoo(tmp_path_factory):
    """model_dyn.onnx (dynamic batch) and model_b1.onnx (batch 1), calib.npy and test.npz."""
    model, x, y = _fitted()
    tmp = tmp_path_factory.mktemp("zoo")
    for name, batch in (("model_dyn", None), ("model_b1", 1)):
        _zoo_onnx(model, tmp / f"{name}.onnx", batch=batch)
    np.save(tmp / "calib.npy", x[:128])
    np.savez(tmp / "test.npz", x=x[128:], y=y[128:])
    return tmp


def _graph(path):
    return onnx.load(str(path)).graph


def test_the_zoo_file_is_what_the_issue_describes(zoo):
    proto = onnx.load(str(zoo / "model_dyn.onnx"))
    assert proto.ir_version == 4 and [o.version for o in proto.opset_import] == [9]
    weights = {t.name for t in proto.graph.initializer}
    assert len(weights) > 20 and weights < {i.name for i in proto.graph.input}
    assert {"BatchNormalization", "MaxPool", "Add", "Gemm"} <= {n.op_type for n in proto.graph.node}
    opts = ort.SessionOptions()
    opts.log_severity_level = 3  # one warning per initializer listed as an input
    session = ort.InferenceSession(str(zoo / "model_b1.onnx"), opts, providers=["CPUExecutionProvider"])
    assert session.run(None, {"input": np.zeros((1, *SHAPE), np.float32)})[0].shape == (1, 10)


def _export(zoo, out, src: str, *args: str) -> dict:
    data = ["--calibration", str(zoo / "calib.npy"), "--test", str(zoo / "test.npz")]
    r = runner.invoke(app, ["export", "--from", str(zoo / src), "--out", str(out), *data, *args])
    assert r.exit_code == 0, r.output + repr(r.exception)
    manifest = json.loads((out / "bundle" / "manifest.json").read_text())
    validate_manifest(manifest)
    return manifest


@pytest.mark.parametrize("src,batch", [("model_dyn.onnx", None), ("model_b1.onnx", 1)], ids=["dyn", "b1"])
def test_old_ir_opset9_file_gives_checked_int8_and_fp16_files(zoo, tmp_path, src, batch):
    static = _export(zoo, tmp_path / "s", src, "--int8", "static", "--fp16")
    dynamic = _export(zoo, tmp_path / "d", src, "--int8", "dynamic")
    assert static["input"]["shape"] == [batch, *SHAPE] and static["failures"] == dynamic["failures"] == []
    entries = {m["precision"]: m for m in static["models"] + dynamic["models"]}
    assert set(entries) == {"fp32", "int8", "dynamic-int8", "fp16"}
    for m in entries.values():
        assert m["parity"]["passed"] and m["parity"]["n"] == 128, m
        graph = _graph(tmp_path / ("d" if m["precision"] == "dynamic-int8" else "s") / "bundle" / m["file"])
        assert [i.name for i in graph.input] == ["input"] == real_inputs(graph)  # no weight among them
    q = {p: m["quantization"] for p, m in entries.items()}
    assert q["fp32"]["opset"] == q["fp16"]["opset"] == 9  # float files keep the source's opset
    assert q["int8"]["opset"] == q["dynamic-int8"]["opset"] == 13  # converted for per-channel Q/DQ
    assert (
        q["int8"]["per_channel"] and q["int8"]["per_channel_reason"] == "per-channel: opset 9 converted to 13"
    )
    assert entries["fp32"]["parity"]["max_abs_diff"] < 1e-4  # ORT now folds BN: float rounding only
    # Weights really quantized / halved: as graph inputs they were neither (the files came out fp32-sized).
    fp32 = entries["fp32"]["size_bytes"]
    assert entries["int8"]["size_bytes"] < fp32 / 2.5 and entries["dynamic-int8"]["size_bytes"] < fp32 / 2.5
    assert entries["fp16"]["size_bytes"] < fp32 / 1.8


@pytest.mark.parametrize("opset,ir", [(7, 3), (12, 4)])
def test_other_old_opsets_and_ir_3(zoo, tmp_path, opset, ir):
    src = tmp_path / f"opset{opset}.onnx"
    _zoo_onnx(_fitted()[0], src, batch=None, opset=opset, ir=ir)
    manifest = export_from_onnx(
        src, tmp_path / "out", int8="static", fp16=True, calibration=zoo / "calib.npy", test=zoo / "test.npz"
    )
    assert manifest.failures == [] and all(m.parity.passed for m in manifest.models)
    fp32, int8, _ = manifest.models
    assert int8.quantization.per_channel_reason == f"per-channel: opset {opset} converted to 13"
    # IR 3 requires every weight among the inputs: with them dropped, the copy says IR 4.
    assert onnx.load(str(tmp_path / "out" / "bundle" / fp32.file)).ir_version == 4


def _failing_converter(monkeypatch, opsets: set[int]) -> None:
    """onnx's version converter, made to fail for the target opsets in `opsets` as some graphs do."""
    from onnx import version_converter

    real = version_converter.convert_version

    def convert(model, target):
        if target in opsets:
            raise RuntimeError(f"No Adapter To Version $ {target} for BatchNormalization\nsecond line")
        return real(model, target)

    monkeypatch.setattr(version_converter, "convert_version", convert)


def test_per_tensor_when_the_file_cannot_reach_opset_13(zoo, tmp_path, monkeypatch):
    _failing_converter(monkeypatch, {13})
    manifest = export_from_onnx(
        zoo / "model_dyn.onnx", tmp_path, int8="static", calibration=zoo / "calib.npy", test=zoo / "test.npz"
    )
    q = manifest.models[1].quantization
    assert manifest.failures == [] and manifest.models[1].parity.passed
    assert not q.per_channel and q.opset == 11
    assert q.per_channel_reason == (
        "per-tensor: opset 9 converted to 11; cannot convert opset 9 to 13: "
        "No Adapter To Version $ 13 for BatchNormalization"
    )


def test_no_quantizable_opset_is_a_one_line_failure_naming_the_file(zoo, tmp_path, monkeypatch):
    _failing_converter(monkeypatch, {11, 13})
    manifest = export_from_onnx(zoo / "model_dyn.onnx", tmp_path, int8="dynamic", fp16=True)
    assert [m.precision for m in manifest.models] == ["fp32", "fp16"]  # fp16 needs no conversion
    [failure] = manifest.failures
    assert failure.precision == "dynamic-int8" and failure.error == (
        f"{tmp_path / 'bundle' / 'model_dyn.onnx'}: cannot convert opset 9 to 11: "
        "No Adapter To Version $ 11 for BatchNormalization"
    )


def _weights_as_inputs(src, dst) -> None:
    """The file the issue saw: weight tensors listed as inputs, their initializers gone."""
    proto = onnx.load(str(src))
    del proto.graph.initializer[:]
    onnx.save(proto, str(dst))


def test_a_file_asking_for_many_inputs_is_one_short_line(zoo, tmp_path, monkeypatch, capsys):
    bad = tmp_path / "weights_as_inputs.onnx"
    _weights_as_inputs(zoo / "model_dyn.onnx", bad)
    n = len(_graph(bad).input)
    code, err = edgekd_main(monkeypatch, capsys, "export", "--from", bad, "--out", tmp_path / "out")
    [line] = err.strip().splitlines()
    assert code == 1 and len(line) < 300, line
    assert line.startswith(f"error: {bad}: expected one float32 4-D image input, got {n}: 'input', ")
    assert line.endswith(f" and {n - 3} more")


def test_a_written_file_asking_for_weights_fails_in_one_short_line(zoo, tmp_path, monkeypatch):
    """Were a quantizer to leave weights as inputs again, the file fails, named, instead of parity raising."""
    import export.quantize

    def quantize_dynamic(src, dst):
        _weights_as_inputs(zoo / "model_dyn.onnx", dst)
        return FileSettings(mode="dynamic")

    monkeypatch.setattr(export.quantize, "quantize_dynamic", quantize_dynamic)
    manifest = export_from_onnx(zoo / "model_dyn.onnx", tmp_path, int8="dynamic")
    [failure] = manifest.failures
    n = len(_graph(zoo / "model_dyn.onnx").input)
    assert "\n" not in failure.error and len(failure.error) < 300, failure.error
    assert f"the file asks for {n}: 'input', " in failure.error
    assert failure.error.endswith(f" and {n - 3} more")


@pytest.mark.parametrize(
    "names,text",
    [
        ([], "none"),
        (["a"], "'a'"),
        (["a", "b", "c"], "'a', 'b', 'c'"),
        (
            [f"layer{i}.weight" for i in range(200)],
            "'layer0.weight', 'layer1.weight', 'layer2.weight' and 197 more",
        ),
    ],
)
def test_short_names(names, text):
    assert short_names(names) == text
