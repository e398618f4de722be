"""Teacher sources: each file kind reloads the same logits; bad sources fail with one-line `ConfigError`s."""

from __future__ import annotations

import importlib
import sys
import textwrap
import types
import zipfile
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from toolkit.errors import ConfigError  # noqa: E402
from toolkit.extensions import TEACHER_KINDS  # noqa: E402
from toolkit.models import MODELS, ModelSpec  # noqa: E402
from toolkit.models.sources import TeacherSource, detect_kind, load_teacher  # noqa: E402
from toolkit.models.teacher_kinds import LOADERS  # noqa: E402

ARCH, KWARGS = "resnet_student", {"widths": [4, 8], "blocks": [1, 1]}
SHAPE, CLASSES = (1, 8, 8), 3


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = MODELS.create(ARCH, in_chans=1, num_classes=CLASSES, input_size=8, **KWARGS)
    with torch.no_grad():  # non-default BN statistics, so a reload that dropped buffers would show
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """One small model saved every way, plus its logits on a fixed batch."""
    tmp = tmp_path_factory.mktemp("teachers")
    model = _model()
    x = torch.randn(4, *SHAPE, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(x)
    sd = model.state_dict()
    spec = ModelSpec(arch=ARCH, kwargs=KWARGS, input_shape=SHAPE, labels=("a", "b", "c"))
    files = {
        "checkpoint": tmp / "ckpt.pt",
        "state_dict": tmp / "weights.pt",
        "torchscript": tmp / "scripted.pt",
        "exported_program": tmp / "program.pt2",
    }
    ckpt = {
        "spec": spec.to_dict(),
        "train": {},
        "seed": 0,
        "data": {},
        "state_dict": sd,
        "info": {"acc": 0.5},
    }
    torch.save(ckpt, files["checkpoint"])
    torch.save(sd, files["state_dict"])
    with pytest.warns(DeprecationWarning):  # torch.jit is deprecated upstream; users still hand us such files
        torch.jit.trace(model, x).save(str(files["torchscript"]))
    batch = torch.export.Dim("batch", min=1, max=64)
    torch.export.save(
        torch.export.export(model, (x,), dynamic_shapes=({0: batch},)), files["exported_program"]
    )
    return types.SimpleNamespace(model=model, x=x, ref=ref, files=files, tmp=tmp)


def _load(source, *, shape=SHAPE, classes=CLASSES):
    return load_teacher(source, input_shape=shape, num_classes=classes)


def _same_logits(model, saved) -> None:
    assert not model.training
    with torch.no_grad():
        out = model(saved.x)
    torch.testing.assert_close(out, saved.ref, rtol=0, atol=0)


def test_one_description_and_one_loader_per_kind():
    import toolkit.config

    assert TeacherSource is toolkit.config.TeacherSource
    assert LOADERS is TEACHER_KINDS  # what configs are checked against
    assert LOADERS.names() == [
        "checkpoint", "exported_program", "factory", "state_dict", "timm", "torchscript", "torchvision"
    ]  # fmt: skip


@pytest.mark.parametrize("kind", ["checkpoint", "torchscript", "exported_program"])
def test_file_kinds_are_detected_and_reload_exactly(saved, kind):
    path = saved.files[kind]
    assert detect_kind(path) == kind
    model, info = _load(path)  # a plain path string/Path: kind "auto"
    _same_logits(model, saved)
    assert info["kind"] == kind and info["path"] == str(path) and len(info["sha256"]) == 64
    assert info["params"] == sum(p.numel() for p in saved.model.parameters())
    assert info["feature_taps"] == (kind == "checkpoint")
    explicit, _ = _load(TeacherSource(kind=kind, path=path))
    _same_logits(explicit, saved)


def test_checkpoint_description_carries_spec_and_info(saved):
    _, info = _load(str(saved.files["checkpoint"]))
    assert info["arch"] == ARCH and info["spec"]["labels"] == ("a", "b", "c") and info["info"] == {"acc": 0.5}


def test_exported_program_switches_mode_without_touching_the_graph(saved):
    model, _ = _load(saved.files["exported_program"])
    assert model.train().training and not model.eval().training
    _same_logits(model, saved)


def test_state_dict_with_registry_arch(saved):
    src = TeacherSource(kind="state_dict", path=saved.files["state_dict"], arch=ARCH, kwargs=KWARGS)
    model, info = _load(src)
    _same_logits(model, saved)
    assert detect_kind(saved.files["state_dict"]) == "state_dict"
    assert info == dict(info, kind="state_dict", arch=ARCH, kwargs=KWARGS)
    # The same via kind "auto", and the weights of an edgekd checkpoint read as a state dict.
    _same_logits(_load(TeacherSource(path=saved.files["state_dict"], arch=ARCH, kwargs=KWARGS))[0], saved)
    src = TeacherSource(kind="state_dict", path=saved.files["checkpoint"], arch=ARCH, kwargs=KWARGS)
    _same_logits(_load(src)[0], saved)


def test_safetensors_weights(saved, tmp_path):
    st = pytest.importorskip("safetensors.torch")
    path = tmp_path / "w.safetensors"
    st.save_file(saved.model.state_dict(), str(path))
    assert detect_kind(path) == "state_dict"
    _same_logits(_load(TeacherSource(path=path, arch=ARCH, kwargs=KWARGS))[0], saved)


def test_factory_from_user_module(saved, tmp_path, monkeypatch):
    (tmp_path / "edgekd_test_teacher_factory.py").write_text(
        textwrap.dedent(
            """
            from toolkit.models import MODELS

            def build(classes, widths, blocks):
                return MODELS.create("resnet_student", num_classes=classes, widths=widths, blocks=blocks)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    spec = "edgekd_test_teacher_factory:build"
    kwargs = dict(KWARGS, classes=CLASSES)
    model, info = _load(
        TeacherSource(kind="factory", factory=spec, kwargs=kwargs, path=saved.files["state_dict"])
    )
    _same_logits(model, saved)
    assert info["factory"] == spec and info["kind"] == "factory"
    # Without weights the factory's own initialisation stands.
    fresh, info = _load(TeacherSource(kind="factory", factory=spec, kwargs=kwargs))
    assert info["sha256"] is None and fresh(saved.x).shape == (4, CLASSES)


@pytest.mark.parametrize("library", ["timm", "torchvision"])
def test_library_that_does_not_import_fails_clearly(saved, library):
    try:
        importlib.import_module(library)
    except Exception as e:
        reason = f"{type(e).__name__}: {str(e).splitlines()[0]}"
    else:
        pytest.skip(f"{library} imports here; its call convention is covered with a stand-in below")
    src = TeacherSource.parse(f"{library}:resnet18@{saved.files['state_dict']}")
    with pytest.raises(ConfigError) as err:
        _load(src)
    msg = str(err.value)
    assert msg.startswith(f"{library}:resnet18: the {library} library failed to import ({reason})")
    assert "\n" not in msg


def _fake_library(monkeypatch, library: str, calls: list) -> None:
    def build(name, **kw):
        calls.append((name, kw))
        kw = {k: v for k, v in kw.items() if k not in ("pretrained", "weights", "in_chans")}
        return MODELS.create(ARCH, **KWARGS, **kw)

    if library == "timm":
        monkeypatch.setitem(sys.modules, "timm", types.SimpleNamespace(create_model=build))
    else:
        models = types.SimpleNamespace(get_model=build)
        monkeypatch.setitem(sys.modules, "torchvision", types.SimpleNamespace(models=models))
        monkeypatch.setitem(sys.modules, "torchvision.models", models)


@pytest.mark.parametrize(
    ("library", "expected"),
    [
        ("timm", dict(pretrained=False, num_classes=CLASSES, in_chans=1)),
        ("torchvision", dict(weights=None, num_classes=CLASSES)),
    ],
)
def test_library_call_convention_with_stand_in(saved, monkeypatch, library, expected):
    # timm/torchvision do not import here (CUDA wheels); a stand-in checks we never ask for downloads.
    calls: list = []
    _fake_library(monkeypatch, library, calls)
    model, info = _load(TeacherSource(kind=library, arch="tiny", path=saved.files["state_dict"]))
    _same_logits(model, saved)
    assert calls == [("tiny", expected)] and info["arch"] == "tiny"


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        ("timm:resnet18@w.pt", dict(kind="timm", arch="resnet18", path=Path("w.pt"))),
        ("torchvision:resnet18", dict(kind="torchvision", arch="resnet18", path=None)),
        ("my_pkg.teachers:build", dict(kind="factory", factory="my_pkg.teachers:build", path=None)),
        ("my_pkg.teachers:Net.create@w.pt", dict(kind="factory", factory="my_pkg.teachers:Net.create")),
        ("resnet_teacher@runs/w.pt", dict(kind="state_dict", arch="resnet_teacher", path=Path("runs/w.pt"))),
        ("runs/teacher.pt", dict(kind="auto", path=Path("runs/teacher.pt"), arch=None)),
    ],
)
def test_parse_string_specs(spec, expected):
    src = TeacherSource.parse(spec)
    assert {k: getattr(src, k) for k in expected} == expected


def _junk(tmp: Path) -> Path:
    (tmp / "junk.pt").write_text("not a model\n")
    return tmp / "junk.pt"


def _zip(tmp: Path) -> Path:
    with zipfile.ZipFile(tmp / "other.zip", "w") as zf:
        zf.writestr("other/readme.txt", "hello")
    return tmp / "other.zip"


def _pickled_module(tmp: Path) -> Path:
    torch.save(_model(), tmp / "whole.pt")
    return tmp / "whole.pt"


# (source built from the saved files, input shape, classes, message regex): every error names its source.
BAD_SOURCES = [
    (lambda s: s.tmp / "nope.pt", SHAPE, CLASSES, r"nope\.pt: teacher file not found$"),
    (
        lambda s: _junk(s.tmp),
        SHAPE,
        CLASSES,
        r"junk\.pt: not a torch file \(neither a zip archive nor a pickle\)$",
    ),
    (lambda s: _zip(s.tmp), SHAPE, CLASSES, r"other\.zip: not a readable torch file: "),
    (
        lambda s: _pickled_module(s.tmp),
        SHAPE,
        CLASSES,
        r"whole\.pt: holds a pickled toolkit\.models\.resnet\.ResNet, which a weights-only load refuses",
    ),
    (
        lambda s: s.files["state_dict"],
        SHAPE,
        CLASSES,
        r"weights\.pt: a plain state dict; name its architecture \(arch\)",
    ),
    (
        lambda s: TeacherSource(kind="state_dict", path=s.files["state_dict"], arch=ARCH, kwargs=KWARGS),
        SHAPE,
        5,
        r"weights\.pt: weights do not fit resnet_student: 2 shape mismatches: "
        r"head\.1\.weight \(3, 8\) in file vs \(5, 8\) in model, head\.1\.bias",
    ),
    (
        lambda s: TeacherSource(kind="state_dict", path=s.files["state_dict"], arch=ARCH),
        SHAPE,
        CLASSES,
        r"weights\.pt: weights do not fit resnet_student: .*shape mismatches: features\.0\.0\.weight",
    ),
    (
        lambda s: TeacherSource(kind="state_dict", path=s.files["state_dict"], arch="nope"),
        SHAPE,
        CLASSES,
        r"weights\.pt: unknown arch 'nope'; known: .*resnet_student",
    ),
    (
        lambda s: s.files["torchscript"],
        SHAPE,
        5,
        r"scripted\.pt: output is \(1, 3\) for one input, expected logits of shape \(1, 5\)",
    ),
    (
        lambda s: s.files["exported_program"],
        (3, 8, 8),
        CLASSES,
        r"program\.pt2: forward on a zeros input of shape \(1, 3, 8, 8\) failed: ",
    ),
    (
        lambda s: s.files["checkpoint"],
        SHAPE,
        5,
        r"ckpt\.pt: output is \(1, 3\) for one input, expected logits of shape \(1, 5\)",
    ),
    (
        lambda s: s.files["checkpoint"],
        (1, 28, 28),
        CLASSES,
        r"ckpt\.pt: checkpoint expects inputs \(1, 8, 8\), not \(1, 28, 28\)",
    ),
    (
        lambda s: TeacherSource(kind="torchscript", path=s.files["state_dict"]),
        SHAPE,
        CLASSES,
        r"weights\.pt: teacher kind 'torchscript' given, but the file is a state_dict file",
    ),
    (
        lambda s: TeacherSource(kind="checkpoint", path=s.files["checkpoint"], kwargs={"widths": [4]}),
        SHAPE,
        CLASSES,
        r"ckpt\.pt: kwargs does not apply to teacher kind 'checkpoint'",
    ),
    (
        lambda s: TeacherSource(path=s.files["torchscript"], arch=ARCH),
        SHAPE,
        CLASSES,
        r"scripted\.pt: arch and kwargs do not apply to a torchscript file",
    ),
    (
        lambda s: "no_such_pkg.teachers:build",
        SHAPE,
        CLASSES,
        r"no_such_pkg\.teachers:build: cannot import module 'no_such_pkg\.teachers': No module named",
    ),
    (lambda s: "json:nope", SHAPE, CLASSES, r"json:nope: module 'json' has no attribute 'nope'$"),
    (lambda s: "json:decoder", SHAPE, CLASSES, r"json:decoder: 'decoder' is not callable$"),
    (lambda s: "json:dumps", SHAPE, CLASSES, r"json:dumps: calling it failed: "),
    (lambda s: "builtins:dict", SHAPE, CLASSES, r"builtins:dict: built a dict, not a torch nn\.Module$"),
    (
        lambda s: TeacherSource(kind="timm", arch="resnet18"),
        SHAPE,
        CLASSES,
        r"timm:resnet18: teacher kind 'timm' needs path \(a local weights file; nothing is downloaded\)",
    ),
    (
        lambda s: TeacherSource(kind="onnx", path=s.files["state_dict"]),
        SHAPE,
        CLASSES,
        r"unknown teacher kind 'onnx'",
    ),
]


@pytest.mark.parametrize(("make", "shape", "classes", "match"), BAD_SOURCES)
def test_bad_sources_fail_with_one_line(saved, make, shape, classes, match):
    with pytest.raises(ConfigError, match=match) as err:
        _load(make(saved), shape=shape, classes=classes)
    assert "\n" not in str(err.value)
