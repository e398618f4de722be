"""Config loading: the default validates, bad files give one line naming the file and the field."""

from __future__ import annotations

import re

import pytest
import yaml

from toolkit.config import DEFAULT_CONFIG, RunConfig, load_config, save_config
from toolkit.errors import ConfigError


def test_default_config_is_the_builtin_default():
    cfg = load_config()
    assert [t.arch for t in cfg.teachers] == ["cnn_teacher"] and cfg.student.arch == "cnn_student"
    assert cfg.distill.methods == ["kd"] and cfg.student_seeds == [0]
    assert cfg.distill.temperature == 2.05 and cfg.distill.alpha == 0.2 and cfg.student.epochs == 7
    assert load_config(DEFAULT_CONFIG) == cfg == RunConfig()  # the YAML and the model defaults agree


def test_save_and_load_roundtrip(tmp_path):
    cfg = RunConfig()
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    folder = RunConfig.model_validate({"data": {"kind": "image_folder", "root": "imgs", "resize": 32}})
    assert folder.data.options.resize == [32, 32]
    assert folder.model_dump()["data"]["resize"] == [32, 32]  # a kind's own fields are written flat
    save_config(folder, tmp_path / "f.yaml")
    assert load_config(tmp_path / "f.yaml") == folder
    other = RunConfig.model_validate({"data": {"kind": "image_folder", "root": "imgs", "resize": 28}})
    assert other != folder


def test_a_methods_options_block_is_checked_by_its_model_and_round_trips(tmp_path):
    from toolkit.distill.losses import DKDOptions, HintOptions

    path = tmp_path / "c.yaml"
    path.write_text("distill: {methods: [kd, dkd], dkd: {beta: 2, warmup_epochs: 1}}")
    cfg = load_config(path)
    assert cfg.distill.options("dkd") == DKDOptions(alpha=1.0, beta=2.0, warmup_epochs=1)
    assert cfg.distill.options("hint") == HintOptions()  # no block: the method's defaults
    assert cfg.distill.options("kd") is None  # takes none
    save_config(cfg, tmp_path / "again.yaml")
    assert load_config(tmp_path / "again.yaml") == cfg


BAD_CONFIGS = [
    ("distill: {alpha: 1.5}", "distill.alpha: Input should be less than or equal to 1"),
    ("teacher: {arch: x, epochs: 0}", "teacher.epochs: Input should be greater than or equal to 1"),
    ("bench: {threads: []}", "bench.threads: List should have at least 1 item"),
    (
        "export: {formats: [coreml]}",
        "export.formats.0: Value error, unknown export format 'coreml'; known: onnx, pte, tflite, torch",
    ),
    ("distil: {}", "distil: Extra inputs are not permitted"),
    (
        "distill: {methods: [fitnet]}",
        "distill.methods.0: Value error, unknown distillation method 'fitnet'; known: dkd, hint, kd",
    ),
    (
        "data: {kind: parquet}",
        "data.kind: Value error, unknown data kind 'parquet'; known: bbc_news, factory, idx, image_folder, ",
    ),
    ("distill: {dkd: {betta: 1}}", "distill: Value error, dkd.betta: Extra inputs are not permitted"),
    (
        "distill: {dkd: {beta: -1}}",
        "distill: Value error, dkd.beta: Input should be greater than or equal to 0",
    ),
    (
        "distill: {temprature: 3}",
        "distill: Value error, unknown key 'temprature': not a field of distill nor a method with options",
    ),
    ("teacher: {epochs: 2}", "teacher: Value error, give either arch (train this teacher) or source"),
    ("teacher: {arch: a}\nteachers: [{arch: b}]", "Value error, give teacher (one) or teachers (several)"),
    (
        "teachers: [{source: {kind: onnx}}]",
        "teachers.0.source.kind: Value error, unknown teacher kind 'onnx'; known: auto, checkpoint, ",
    ),
    ("- a\n- b", "expected a mapping at the top level, got list"),
    ("a: [", "invalid YAML"),
    ("seed: !!python/object/apply:os.system [ls]", "invalid YAML"),
]


@pytest.mark.parametrize("text,message", BAD_CONFIGS)
def test_bad_config_is_one_line_naming_file_and_field(tmp_path, text, message):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert str(err.value).startswith(f"{path}: ") and message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_config(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        load_config(tmp_path / "nope.yaml")


@pytest.mark.parametrize("path", sorted(DEFAULT_CONFIG.parent.glob("*.yaml")), ids=lambda p: p.name)
def test_shipped_configs_are_valid(path):
    cfg = load_config(path)
    assert cfg.teachers and cfg.student.epochs >= 1


def test_a_data_kind_takes_its_own_fields_and_refuses_the_others(tmp_path):
    from toolkit.data.text import DEFAULT_TEXT_ROOT

    cfg = RunConfig.model_validate({"data": {"kind": "rotten_tomatoes"}}).data
    assert cfg.root == DEFAULT_TEXT_ROOT / "rotten_tomatoes.csv.bz2" and cfg.options.seq_len == 64
    assert cfg.options.tokenizer == DEFAULT_TEXT_ROOT / "all-MiniLM-L6-v2" / "tokenizer.json"
    own = RunConfig.model_validate({"data": {"kind": "text_csv", "root": "r.csv", "seq_len": 32}}).data
    assert (own.options.text_column, own.options.label_column, own.options.seq_len) == ("text", "label", 32)
    for data, message in (
        ({"kind": "text_csv"}, "kind text_csv needs root"),
        ({"kind": "bbc_news", "mean": [0.5]}, "mean and std apply to images, not text"),
        (
            {"kind": "rotten_tomatoes", "resize": 32},
            re.escape(
                "unknown key 'resize': not a field of data nor of kind rotten_tomatoes (its own: seq_len, "
            ),
        ),
        (
            {"kind": "idx", "seq_len": 32},
            re.escape("unknown key 'seq_len': not a field of data nor of kind idx"),
        ),
        (
            {"kind": "text_csv", "root": "r.csv", "seq_len": 1},
            "kind text_csv: seq_len: Input should be greater",
        ),
    ):
        path = tmp_path / "c.yaml"
        path.write_text(yaml.safe_dump({"data": data}))
        with pytest.raises(ConfigError, match=message):
            load_config(path)


def test_the_scratch_student_is_exported_like_the_kd_student_unless_told():
    from toolkit.pipeline.export_stage import variants_for

    cfg = load_config(None)  # the default run: every student is a candidate for the recommendation
    assert cfg.export.scratch_precisions is None
    assert variants_for("student_scratch", cfg) == variants_for("student_kd", cfg)
    assert ("tflite", "int8") in variants_for("student_scratch", cfg)
    only_fp32 = cfg.export.model_copy(update={"scratch_precisions": ["fp32"]})
    control = cfg.model_copy(update={"export": only_fp32})
    assert {p for _, p in variants_for("student_scratch", control)} == {"fp32"}
