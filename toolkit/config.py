"""The run config: pydantic models (unknown keys rejected), loaded from YAML or the built-in default."""

from __future__ import annotations

import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    model_serializer,
    model_validator,
)

from benchmarks.files import write_text_atomic
from benchmarks.manifest import Precision
from benchmarks.protocol import DEFAULT_PROTOCOL
from benchmarks.registry import Registry
from toolkit.data.kinds import DATA_KINDS, FACTORY_SPEC
from toolkit.errors import ConfigError, InputError, first_line
from toolkit.extensions import DISTILL_METHODS, EXPORTERS, TEACHER_KINDS

__all__ = [
    "RunConfig",
    "TeacherConfig",
    "TeacherSource",
    "SourceKind",
    "load_config",
    "save_config",
    "DEFAULT_CONFIG",
]

DEFAULT_CONFIG = Path(__file__).parent / "configs" / "default.yaml"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


PositiveInt = Annotated[int, Field(ge=1)]


def registered(registry: Registry, *also: str):
    """A validator: the value is one of `registry`'s names (or `also`)."""

    def check(name: str) -> str:
        if name not in also and name not in registry:
            known = ", ".join([*also, *registry.names()])
            raise InputError(f"unknown {registry.kind} {name!r}; known: {known}")
        return name

    return check


def _data_kind(name: str) -> str:
    if name not in DATA_KINDS:
        raise InputError(f"unknown data kind {name!r}; known: {', '.join(DATA_KINDS.names())}")
    return name


DataKindName = Annotated[str, AfterValidator(_data_kind)]


class DataConfig(BaseModel):
    """Where the images come from (`kind`), how they split, and the preprocessing they get. A kind with
    fields of its own (`DataKind.options`) takes them here too; they are read as `options`."""

    model_config = ConfigDict(extra="allow")
    _options: Any = PrivateAttr(None)  # the kind's own fields, validated (`options`)

    kind: DataKindName = "idx"  # a registered data kind (toolkit.data.kinds)
    # a folder, or the .npz / .csv file; idx: Fashion-MNIST from Debian by default; rotten_tomatoes and
    # bbc_news: the files `make text-data` extracts
    root: Path | None = None
    labels: list[str] | None = None  # class names; image folders use their folder names
    mean: list[float] | None = Field(None, min_length=1)  # per channel, of x / 255; None: from train
    std: list[Annotated[float, Field(gt=0)]] | None = Field(None, min_length=1)
    # image_folder/npz/factory/text without val/test: the fractions split off train, per class (seeded)
    val_fraction: float = Field(0.1, gt=0, lt=0.5)
    test_fraction: float = Field(0.1, gt=0, lt=0.5)
    cache_dir: Path | None = None  # decoded-image cache; None: $XDG_CACHE_HOME/edgekd/decoded
    workers: int = Field(0, ge=0)  # DataLoader worker processes reading training batches
    limit_train: int | None = Field(None, ge=1)
    limit_test: int | None = Field(None, ge=1)
    # Besides these, each kind's own fields (its `DataKind.options`), e.g. image_folder's resize, npz's
    # layout, text kinds' tokenizer and seq_len: `toolkit/data/load.py`, `toolkit/data/text.py`.

    @model_validator(mode="after")
    def _kind_needs(self):
        kind = DATA_KINDS.get(self.kind)
        if self.root is None:
            self.root = kind.default_root
        if kind.root and self.root is None:
            raise InputError(f"kind {self.kind} needs root")
        if kind.text and (self.mean is not None or self.std is not None):
            raise InputError("mean and std apply to images, not text")
        return self

    @model_validator(mode="after")
    def _kind_options(self):
        """The keys that are not common fields are the kind's own, checked by its options model."""
        extra = self.__pydantic_extra__ or {}
        model = DATA_KINDS.get(self.kind).options
        own = sorted(model.model_fields) if model is not None else []
        unknown = [k for k in extra if k not in own]
        if unknown:
            fields = f" (its own: {', '.join(own)})" if own else ""
            raise InputError(
                f"unknown key {unknown[0]!r}: not a field of data nor of kind {self.kind}{fields}"
            )
        if model is not None:
            try:
                self._options = model.model_validate(extra)
            except ValidationError as e:
                raise InputError(f"kind {self.kind}: {first_error(e)}") from None
        extra.clear()  # read as `options` only; written back next to the common fields (`_with_options`)
        return self

    @model_serializer(mode="wrap")
    def _with_options(self, handler, info):
        """The kind's own fields written flat, next to the common ones, as a config file gives them."""
        out = handler(self)
        return out if self._options is None else {**out, **self._options.model_dump(mode=info.mode)}

    @property
    def options(self):
        """This kind's own fields (its `DataKind.options` model), or None when it takes none."""
        return self._options

    @property
    def is_text(self) -> bool:
        return DATA_KINDS.get(self.kind).text


# Text runs' export settings when the config does not set them: PT2E dynamic int8 TFLite files with an
# embedding do not load in ai_edge_litert; MiniLM's dynamic int8 ONNX file needs per-channel weights and
# float embeddings to reach the 97 % agreement bar.
# Static int8 is calibrated on training ids; its TFLite file keeps the embedding table float (PT2E
# quantizes the convolutions and the head, not the lookup).
TEXT_EXPORT_DEFAULTS = {
    "formats": ("onnx", "tflite"),
    "precisions": ("fp32", "fp16", "int8", "dynamic-int8"),
    "teacher_precisions": ("fp32", "dynamic-int8"),
    "tflite_precisions": ("fp32", "fp16", "int8"),
    "onnx_dynamic_per_channel": True,
}


class TrainConfig(_Strict):
    arch: str
    kwargs: dict[str, Any] = Field(default_factory=dict)
    epochs: int = Field(1, ge=1)
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(1e-4, ge=0)
    # This model's own random shift/flip augmentation (None: distill.augment), e.g. a teacher trained
    # augmented so that it does not memorize the images its cached logits are computed on.
    augment: bool | None = None
    # Keep the weights of the epoch with the best validation accuracy rather than the last epoch's.
    keep_best: bool = False


# auto (detected from the file) or a teacher kind registered in toolkit/models/teacher_kinds.py
SourceKind = Annotated[str, AfterValidator(registered(TEACHER_KINDS, "auto"))]


def library_kinds() -> tuple[str, ...]:
    """The teacher kinds written `library:name` (timm, torchvision); their weights come from a local file."""
    return tuple(n for n in TEACHER_KINDS.names() if getattr(TEACHER_KINDS.get(n), "library", False))


@dataclass
class TeacherSource:
    """Where a teacher comes from, to load it instead of training it (`toolkit.models.load_teacher`).

    A dataclass, so code can build any source and `load_teacher` reports a bad one as a `ConfigError`;
    in a config file pydantic checks it (kinds, no unknown keys) like the models around it.
    """

    __pydantic_config__ = ConfigDict(extra="forbid")

    kind: SourceKind = "auto"  # auto: detected from the file
    path: Path | None = None  # the model file, or the weights file of a state_dict/factory/timm source
    arch: str | None = None  # registry name (state_dict) or timm/torchvision model name
    factory: str | None = None  # "package.module:callable"
    kwargs: dict[str, Any] = field(default_factory=dict)
    # The teacher's own preprocessing when it differs from the data's: input [H, W] and per-channel
    # mean/std of x / 255 (`toolkit.models.adapt.TeacherInput` maps the student's input to it).
    input_size: list[int] | None = None
    mean: list[float] | None = None
    std: list[float] | None = None

    def __post_init__(self) -> None:
        self.path = Path(self.path) if self.path is not None else None
        if self.kind == "auto" and self.factory is not None:
            self.kind = "factory"  # `{factory: mod:fn, path: w.pt}` says what it is without `kind:`

    @classmethod
    def parse(cls, spec: str | os.PathLike) -> TeacherSource:
        """A file (kind detected), or `timm:NAME`, `torchvision:NAME`, `package.module:callable` or a registry
        name, each optionally followed by `@WEIGHTS_FILE` (required for registry names and the libraries)."""
        text = os.fspath(spec)
        if Path(text).exists():
            return cls(path=Path(text))
        head, at, weights = text.rpartition("@") if "@" in text else (text, "", "")
        path = Path(weights) if at else None
        lib, sep, name = head.partition(":")
        if sep and lib in library_kinds():
            return cls(kind=lib, arch=name, path=path)  # type: ignore[arg-type]
        if FACTORY_SPEC.match(head):
            return cls(kind="factory", factory=head, path=path)
        if at and re.fullmatch(r"[A-Za-z_][\w.-]*", head):
            return cls(kind="state_dict", arch=head, path=path)
        return cls(path=Path(text))

    def label(self) -> str:
        """How errors name this source: the file, else the factory or `library:name`."""
        if self.kind in library_kinds():
            return f"{self.kind}:{self.arch}"
        return str(self.path or self.factory or self.arch or "teacher")

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields (as a teacher checkpoint keeps them to load the teacher again)."""
        return dict(asdict(self), path=str(self.path) if self.path is not None else None)


class TeacherConfig(TrainConfig):
    """A teacher trained from `arch`, or loaded from `source`; `weight` in a multi-teacher ensemble."""

    arch: str | None = None
    source: TeacherSource | None = None
    weight: float = Field(1.0, gt=0)

    @model_validator(mode="after")
    def _arch_or_source(self):
        if (self.arch is None) == (self.source is None):
            raise InputError("give either arch (train this teacher) or source (load it), not both or neither")
        return self


class ViewsConfig(_Strict):
    """Stored augmented views (toolkit/distill/views.py): `count` shift/flip draws per training image, the
    teachers' logits on each computed once; view 0 is the image itself."""

    count: int = Field(4, ge=1)
    shift: int = Field(2, ge=0)
    flip: bool = True
    top_k: int | None = Field(None, ge=1)  # keep only the k largest logits per view (many classes)
    # Text data: the probability that a token of a view becomes [MASK] (shift and flip do not apply).
    mask: float = Field(0.15, gt=0, lt=1)
    # Images: the probability that a view has one random box erased (random erasing); 0: none.
    erase: float = Field(0.0, ge=0, lt=1)


# A distillation method registered in toolkit/distill/losses.py (or by a plugin): `toolkit.extensions`
DistillMethodName = Annotated[str, AfterValidator(registered(DISTILL_METHODS))]


class DistillConfig(BaseModel):
    """How the students learn from the teachers. Besides these fields, a method with options has its own
    block under its name (`dkd: {beta: 8}`, `hint: {student_layer: ...}`), checked by the method's model."""

    model_config = ConfigDict(extra="allow")

    methods: list[DistillMethodName] = Field(default_factory=lambda: ["kd"], min_length=1)
    # the default run's values, from the sweep (toolkit/configs/default.yaml says which trial)
    temperature: float = Field(2.05, gt=0)
    alpha: float = Field(0.2, ge=0, le=1)
    augment: bool = False  # random shifts/flips; teacher targets then come from an online forward
    views: ViewsConfig | None = None  # stored views for the KD students; the scratch control trains plain
    scratch_control: bool = True
    # Student seeds: the KD and scratch students are trained once per seed (the first one is exported).
    seeds: list[int] | None = Field(None, min_length=1)

    @model_validator(mode="after")
    def _augment_or_views(self):
        if self.augment and self.views is not None:
            raise InputError("augment (new random views every batch) and views (stored ones): choose one")
        return self

    @model_validator(mode="after")
    def _method_blocks(self):
        """Each extra key is a method's options block, validated by that method's own model."""
        extra = self.__pydantic_extra__ or {}
        for key, block in extra.items():
            method = DISTILL_METHODS.get(key) if key in DISTILL_METHODS else None
            if method is None or method.options is None:
                with_options = [n for n in DISTILL_METHODS.names() if DISTILL_METHODS.get(n).options]
                raise InputError(
                    f"unknown key {key!r}: not a field of distill nor a method with options "
                    f"({', '.join(with_options)})"
                )
            try:
                extra[key] = method.options.model_validate(block)
            except ValidationError as e:
                raise InputError(f"{key}.{first_error(e)}") from None
        return self

    def options(self, method: str):
        """The options block of `method`: as the config gives it, else the method's defaults."""
        given = (self.__pydantic_extra__ or {}).get(method)
        return given if given is not None else DISTILL_METHODS.get(method).default_options()


ExportFormat = Annotated[str, AfterValidator(registered(EXPORTERS))]


class QatConfig(_Strict):
    """Quantization-aware distillation of the students' TFLite int8 files (toolkit/distill/qat.py)."""

    # never; over-budget: where post-training int8 loses more than `accuracy_budget` points against fp32 on
    # the validation split; always. The file that scores better on the validation split is shipped.
    when: Literal["never", "over-budget", "always"] = "never"
    accuracy_budget: float = Field(0.5, ge=0)  # points
    epochs: int = Field(2, ge=1)
    lr: float = Field(1e-4, gt=0)
    batch_size: int = Field(128, ge=1)


class ExportConfig(_Strict):
    # "torch" saves a .pt2 ExportedProgram: the teacher's own framework, benchmarked where torch exists.
    formats: list[ExportFormat] = Field(default_factory=lambda: ["onnx", "tflite", "torch"])
    # ONNX and TFLite files of the students; .pt2 is fp32 only. int8 = static, calibrated, full-integer.
    precisions: list[Precision] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8", "dynamic-int8"], min_length=1
    )
    # .pt2 (torch eager reference) for the teacher only, or for every model.
    torch_models: Literal["teacher", "all"] = "teacher"
    # The teacher is the baseline, in every precision (is a quantized teacher enough?).
    teacher_precisions: list[Precision] = Field(
        default_factory=lambda: ["fp32", "fp16", "int8", "dynamic-int8"], min_length=1
    )
    # The precisions TFLite files may have (None: every one listed here). Text models: ai_edge_litert
    # refuses PT2E dynamic-int8 TFLite files whose embedding table the converter quantized asymmetrically.
    tflite_precisions: list[Precision] | None = Field(None, min_length=1)
    # The scratch student's precisions. None: the KD student's, so that it is a candidate like any student
    # (when distillation does not pay, its int8 file is the one to ship); [fp32] keeps it a bare control.
    scratch_precisions: list[Precision] | None = Field(None, min_length=1)
    calibration_samples: int = Field(128, ge=1)
    calibration_method: Literal["minmax", "entropy", "percentile"] = "minmax"
    opset: int = Field(18, ge=7)
    onnx_exporter: Literal["dynamo", "legacy"] = "dynamo"  # legacy: TorchScript-based, opsets below 18
    simplify: bool = False  # onnxslim (or onnxruntime's basic optimizer) on each fp32 ONNX file
    # Shipped ONNX files get short internal tensor names and no node names (inputs/outputs keep theirs):
    # in a 24 k-param int8 file the exporter's names are ~13 % of the bytes. Quantization and the
    # sensitivity report work on the named float graph, so the layer names they report are its names.
    onnx_compact_names: bool = True
    onnx_int8_format: Literal["QDQ", "QOperator"] = "QDQ"
    # Static int8 layouts (export/int8_layouts.py). ONNX: QDQ/QOperator × per-channel/per-tensor × U8S8/S8S8;
    # TFLite: per-channel/per-tensor × int8/float io. Each is timed against the fp32 file on this machine and
    # the fastest within parity kept; the layouts tried go into the manifest. auto: only where the default
    # layout runs slower than fp32 here (a short timing pass); true: always; false: never.
    onnx_int8_search: Literal["auto"] | bool = "auto"
    tflite_int8_search: Literal["auto"] | bool = "auto"
    # Dynamic int8 ONNX weights per output channel (text defaults: true; MiniLM's agreement with fp32 rose
    # from 96.5 % to 97.1 % with it). Token-id models whose int8 embedding table costs agreement below the
    # dynamic-int8 tolerance on the validation rows get a file with the embeddings float.
    onnx_dynamic_per_channel: bool = False
    # int8 weight scales per output channel (ONNX and TFLite static int8). auto: per channel when the
    # model has grouped/depthwise convs (whose channel ranges differ widely), else per tensor, which
    # saves a scale, a zero point and an int32 bias per channel: 12 % of a 24 k-param int8 file.
    per_channel: Literal["auto"] | bool = "auto"
    tflite_layout: Literal["NCHW", "NHWC"] = "NCHW"
    tflite_int8_io: Literal["int8", "float"] = "int8"  # full-integer TFLite: int8 or float input/output
    sensitivity: bool = True  # per-layer int8 sensitivity of the KD student's ONNX file (validation split)
    # Keep the most sensitive layers of int8 ONNX files float until accuracy is within this many points.
    max_accuracy_drop: float | None = Field(None, ge=0)
    qat: QatConfig = Field(default_factory=QatConfig)

    @model_validator(mode="after")
    def _qat_takes_nchw(self):
        if self.qat.when != "never" and self.tflite_layout != "NCHW":
            raise InputError("export.qat trains the NCHW program; use tflite_layout: NCHW with qat")
        return self

    @model_validator(mode="after")
    def _exporter_fits_opset(self):
        if self.onnx_exporter == "dynamo" and self.opset < 18:
            raise InputError(
                f"the dynamo exporter writes opset 18 or newer; use onnx_exporter: legacy for {self.opset}"
            )
        return self


class BenchSettings(_Strict):
    threads: list[int] = Field(default_factory=lambda: [1], min_length=1)
    batch_size: int = Field(1, ge=1)
    warmup: int = Field(DEFAULT_PROTOCOL.warmup, ge=0)
    min_runs: int = Field(DEFAULT_PROTOCOL.min_runs, ge=1)
    min_time_s: float = Field(DEFAULT_PROTOCOL.min_time_s, ge=0)
    repeats: int = Field(DEFAULT_PROTOCOL.repeats, ge=1)  # rounds, each in a fresh worker process
    pin: bool = True  # each worker on cores of its own where the machine allows it
    accuracy: bool = True
    # `edgekd run` profiles every file after bench (RUN/profile, `edgekd profile`): the report's "Where the
    # time goes"; this many profiled runs per file (0: no profile).
    profile_runs: int = Field(200, ge=0)


class RunConfig(_Strict):
    seed: int = 0
    device: Literal["auto", "cpu", "cuda"] = "auto"  # auto: CUDA when torch sees a GPU
    amp: bool = True  # float16 autocast on CUDA; ignored on CPU
    data: DataConfig = Field(default_factory=DataConfig)
    # One teacher (`teacher:`) or several (`teachers:`, soft targets averaged by weight); kept as `teachers`.
    teacher: TeacherConfig | None = None
    teachers: list[TeacherConfig] = Field(default_factory=list)
    student: TrainConfig = Field(default_factory=lambda: TrainConfig(arch="cnn_student", epochs=7, lr=5e-3))
    distill: DistillConfig = Field(default_factory=DistillConfig)
    export: ExportConfig = Field(default_factory=ExportConfig)
    bench: BenchSettings = Field(default_factory=BenchSettings)

    @model_validator(mode="after")
    def _one_teacher_list(self):
        if self.teacher is not None and self.teachers:
            raise InputError("give teacher (one) or teachers (several), not both")
        if not self.teachers:
            self.teachers = [self.teacher or TeacherConfig(arch="cnn_teacher", epochs=2, lr=2e-3)]
        self.teacher = None
        if self.distill.views is not None and self.student.augment:
            raise InputError("student.augment draws new views every batch, distill.views replays stored ones")
        if self.data.is_text:
            self._text_export()
        return self

    def _text_export(self) -> None:
        """Token-id models: defaults that export and load (ONNX/TFLite fp32, fp16, ONNX dynamic int8), and
        the image-only options refused."""
        e, text = self.export, "with text data (token ids)"
        unset = set(TEXT_EXPORT_DEFAULTS) - e.model_fields_set
        for name, value in TEXT_EXPORT_DEFAULTS.items():
            if name in unset:
                setattr(e, name, list(value) if isinstance(value, tuple) else value)
        if "torch" in e.formats:
            raise InputError(f"export.formats: torch (.pt2) is not offered {text}; use onnx and tflite")
        if e.tflite_layout != "NCHW":
            raise InputError(f"export.tflite_layout applies to images, not {text}")
        if self.distill.augment or any(t.augment for t in [self.student, *self.teachers]):
            raise InputError(f"augment shifts and flips images; {text} use distill.views (token masks)")
        if self.distill.views is not None and self.distill.views.erase:
            raise InputError(f"distill.views.erase erases image boxes; {text} use distill.views.mask")

    @property
    def student_seeds(self) -> list[int]:
        return self.distill.seeds or [self.seed]


def first_error(e: ValidationError) -> str:
    err = e.errors()[0]
    # A key from the file is quoted when it is not printable, so a line break in it cannot split the line.
    where = ".".join(str(p) if str(p).isprintable() else repr(p) for p in err["loc"]) or "(top level)"
    more = f" (and {e.error_count() - 1} more)" if e.error_count() > 1 else ""
    return f"{where}: {err['msg']}{more}"


def yaml_problem(e: yaml.YAMLError) -> str:
    """`line L, column C: problem` where PyYAML knows it (its first line is often only the context)."""
    problem, mark = getattr(e, "problem", None), getattr(e, "problem_mark", None)
    if problem is None or mark is None:
        return first_line(e)
    return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"


def load_config(path: str | Path | None = None) -> RunConfig:
    """Read and validate a YAML config; `None` gives the built-in default."""
    path = Path(path) if path is not None else DEFAULT_CONFIG
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not a YAML text file (byte {e.start} is not UTF-8)") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: invalid YAML ({yaml_problem(e)})") from e
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, got {type(raw).__name__}")
    try:
        return RunConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {first_error(e)}") from e


def save_config(cfg: RunConfig, path: str | Path) -> None:
    # `teacher:` is folded into `teachers` on load, so only the list is written.
    data = cfg.model_dump(mode="json", exclude={"teacher"})
    write_text_atomic(path, yaml.safe_dump(data, sort_keys=False))
