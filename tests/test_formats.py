"""Files written by earlier edgekd versions still read through today's format definitions (frozen samples)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from benchmarks.manifest import read_manifest
from benchmarks.records import read_records

FROZEN = Path(__file__).parent / "data" / "frozen"  # written by edgekd at c36027d (tiny.yaml run)


def _keys(value) -> object:
    """The nested key structure of a JSON value (lists by their first item)."""
    if isinstance(value, dict):
        return {k: _keys(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_keys(value[0])] if value else []
    return None


def test_frozen_manifest_reads_and_writes_back_the_same_fields():
    path = FROZEN / "manifest.json"
    manifest = read_manifest(path)
    raw = json.loads(path.read_text())
    assert len(manifest.models) == len(raw["models"]) == 21  # 8 + 8 + 2 files, and a .pt2 per model
    assert {m.key for m in manifest.models} == {
        (m["name"], m["format"], m["precision"]) for m in raw["models"]
    }
    assert _keys(json.loads(manifest.to_json())) == _keys(raw)  # nothing dropped, nothing added
    assert json.loads(manifest.to_json()) == raw  # and the same values
    student = manifest.entries_by_key()[("student_kd", "onnx", "int8")]
    assert student.quantization is not None and student.quantization.format == "QDQ"
    assert student.parity.passed and 0 < student.parity.accuracy <= 1


def test_frozen_bench_record_reads():
    [record] = read_records(FROZEN / "record.jsonl")
    raw = json.loads((FROZEN / "record.jsonl").read_text())
    assert "schema_version" not in raw and record.schema_version == 1  # written before the field existed
    added_since = {"schema_version": 1, "output_check": None}  # fields newer than the file, at their defaults
    assert {k: v for k, v in record.to_dict().items() if k not in added_since} == raw
    assert {k: record.to_dict()[k] for k in added_since} == added_since
    assert record.latency.p50 == raw["latency"]["p50"] > 0 and record.model == "teacher"


def test_frozen_distill_summary_reads():
    from toolkit.report.inputs import read_summary

    summary = read_summary(FROZEN / "summary.json")
    assert summary is not None and set(summary.models) >= {"teacher", "student_kd", "student_scratch"}
    assert summary.kd_vs_scratch is not None and summary.kd_vs_scratch.per_seed
    assert 0 < summary.models["student_kd"].test_accuracy <= 1


def test_frozen_distill_summary_round_trips_through_its_definition(tmp_path):
    from toolkit.rundir.summary import read_summary

    raw = json.loads((FROZEN / "summary.json").read_text())
    typed = read_summary(FROZEN / "summary.json")
    assert set(typed.models) == {"teacher", "student_kd", "student_scratch"}
    assert typed.kd_vs_scratch is not None and typed.kd_vs_scratch.per_seed[0].seed == 0
    assert typed.to_json_dict() == raw and list(typed.to_json_dict()) == list(raw)  # same keys, same order
    bad = tmp_path / "summary.json"
    bad.write_text(json.dumps(dict(raw, student_kd=dict(raw["student_kd"], test_accuracy=91.9))))
    with pytest.raises(ValueError, match="student_kd.test_accuracy: Input should be less than or equal to 1"):
        read_summary(bad)


def test_unknown_versions_are_refused(tmp_path):
    from toolkit.rundir.summary import read_summary

    line = json.loads((FROZEN / "record.jsonl").read_text())
    (tmp_path / "r.jsonl").write_text(json.dumps(dict(line, schema_version=2)) + "\n")
    with pytest.raises(ValueError, match=r"r\.jsonl:1: .*schema_version 2 is not one this edgekd reads"):
        read_records(tmp_path / "r.jsonl")
    raw = json.loads((FROZEN / "summary.json").read_text())
    (tmp_path / "s.json").write_text(json.dumps(dict(raw, schema_version=2)))
    with pytest.raises(ValueError, match=r"s\.json: schema_version: Input should be 1"):
        read_summary(tmp_path / "s.json")


def test_a_written_manifest_states_its_input_in_full(tmp_path):
    """Typed in, complete on disk: a resize step's interpolation is written even when left at its default."""
    from benchmarks.manifest import InputSpec, Preprocessing, ResizeStep
    from export.bundle import write_manifest

    steps = [ResizeStep(op="resize", size=[28, 28])]
    pre = Preprocessing(scale=1 / 255, mean=[0.5], std=[0.25], steps=steps)
    spec = InputSpec(name="input", shape=[None, 1, 28, 28], dtype="float32", layout="NCHW", preprocessing=pre)
    write_manifest(tmp_path, models=[], input_spec=spec, labels=["a"], test_data=None, failures=[])
    written = json.loads((tmp_path / "manifest.json").read_text())["input"]
    spec = InputSpec(name="input", shape=[None, 1, 28, 28], dtype="float32", layout="NCHW",
                     preprocessing=pre)  # fmt: skip
    assert written == spec.model_dump(mode="json")
