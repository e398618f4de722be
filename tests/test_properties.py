"""Property tests: the file parsers take any JSON-like data and either accept it or raise their one clean
error type (ValueError; ConfigError for configs) naming the file, never a KeyError, TypeError or crash.

Each parser gets arbitrary values, and a valid document with one field replaced, deleted or added.
"""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from benchmarks.manifest import parse_manifest
from benchmarks.records import BenchRecord, read_records
from benchmarks.suite import load_suite
from tests.conftest import manifest_dict
from tests.test_benchmarks import _record
from toolkit.config import load_config
from toolkit.errors import ConfigError

BOUNDED = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
# Keys with line breaks too: an error that echoes an unknown key must still be one line.
KEYS = st.text(max_size=8) | st.sampled_from(["two\nlines", "cr\rkey", "tab\tkey"])


def _values(keys: st.SearchStrategy[str]) -> st.SearchStrategy:
    return st.recursive(
        SCALARS,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(keys, inner, max_size=4),
        max_leaves=12,
    )


VALUES = _values(KEYS)


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    """Every path (tuple of keys/indices) into `value`, the root included."""
    out = [prefix]
    if isinstance(value, dict):
        for key, item in value.items():
            out += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += _paths(item, (*prefix, i))
    return out


@st.composite
def _mutated(draw, base: Any, keys: st.SearchStrategy[str]) -> Any:
    """`base` with one field, chosen by hypothesis, replaced by any value, deleted, or given a new key."""
    doc = copy.deepcopy(base)
    path = draw(st.sampled_from(_paths(doc)))
    value = draw(_values(keys))
    if not path:
        return value
    *head, last = path
    parent = doc
    for key in head:
        parent = parent[key]
    action = draw(st.sampled_from(["replace", "delete", "add"]))
    if action == "replace":
        parent[last] = value
    elif action == "delete":
        del parent[last]
    elif isinstance(parent, dict):
        parent[draw(keys)] = value
    else:
        parent.append(value)
    return doc


def _documents(base: Any, keys: st.SearchStrategy[str] = KEYS) -> st.SearchStrategy:
    """Arbitrary values, or `base` with one field changed."""
    return _mutated(base, keys) | _values(keys)


MANIFEST = manifest_dict(None, [{"name": "s", "file": "s.onnx", "format": "onnx", "precision": "fp32"}])
RECORD = _record().to_dict()
CONFIG = {
    "seed": 0,
    "device": "cpu",
    "data": {"root": "/data", "val_size": 10},
    "teacher": {"arch": "cnn_teacher", "epochs": 1},
    "student": {"arch": "cnn_student", "batch_size": 8},
    "distill": {"methods": ["kd"], "temperature": 2.0, "alpha": 0.5},
    "export": {"formats": ["onnx"], "opset": 18},
    "bench": {"threads": [1], "min_runs": 5},
}
SUITE = {
    "threads": [1, 2],
    "batch_sizes": [1],
    "streams": [1],
    "warmup": 2,
    "min_runs": 5,
    "max_runs": 50,
    "min_time_s": 0.1,
    "repeats": 1,
    "backends": {"onnx": ["onnxruntime"]},
    "target": {"kind": "native"},
}


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """One folder per module: hypothesis runs many examples per test, each rewrites its file."""
    return tmp_path_factory.mktemp("props")


def test_the_base_documents_are_valid(work):
    """Otherwise the mutations would only ever test the first error."""
    parse_manifest(MANIFEST, where="m.json")
    BenchRecord.from_dict(RECORD)
    (work / "c.yaml").write_text(yaml.safe_dump(CONFIG))
    load_config(work / "c.yaml")
    (work / "s.yaml").write_text(yaml.safe_dump(SUITE))
    load_suite(work / "s.yaml")


@BOUNDED
@given(doc=_documents(MANIFEST))
def test_manifest_parser_raises_only_value_error(doc):
    try:
        manifest = parse_manifest(doc, where="bundle/manifest.json")
    except ValueError as e:
        assert str(e).startswith("bundle/manifest.json: ") and "\n" not in str(e)
        return
    assert parse_manifest(json.loads(manifest.to_json()), where="again") == manifest  # round-trips


@BOUNDED
@given(doc=_documents(RECORD))
def test_record_parser_raises_only_value_error(doc):
    try:
        record = BenchRecord.from_dict(doc)
    except (ValueError, TypeError):  # read_records maps both to one line (checked below)
        return
    assert isinstance(record, BenchRecord)


@BOUNDED
@given(doc=_documents(RECORD))
def test_read_records_raises_only_value_error(work, doc):
    path = work / "results.jsonl"
    path.write_text(json.dumps(RECORD) + "\n" + json.dumps(doc) + "\n")
    try:
        records = read_records(path)
    except ValueError as e:
        assert str(e).startswith(f"{path}:2: invalid record (") and "\n" not in str(e)
        return
    assert len(records) == 2


def _yaml(doc: Any) -> str:
    # NaN never equals itself, so hypothesis would keep shrinking it; YAML writes it as .nan either way.
    return yaml.safe_dump(doc, allow_unicode=True)


@BOUNDED
@given(doc=_documents(CONFIG))
def test_config_parser_raises_only_config_error(work, doc):
    path = work / "config.yaml"
    path.write_text(_yaml(doc), encoding="utf-8")
    try:
        load_config(path)
    except ConfigError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)


@BOUNDED
@given(doc=_documents(SUITE))
def test_suite_parser_raises_only_value_error(work, doc):
    path = work / "suite.yaml"
    path.write_text(_yaml(doc), encoding="utf-8")
    try:
        suite = load_suite(path)
    except ValueError as e:
        assert str(e).startswith(f"{path}: ") and "\n" not in str(e)
        return
    assert all(isinstance(t, int) and t >= 1 for t in suite.threads)
    assert not math.isnan(suite.min_time_s)


def test_record_latency_key_with_a_line_break_stays_one_line(work):
    path = work / "results.jsonl"
    path.write_text(json.dumps(dict(RECORD, latency=dict(RECORD["latency"], **{"two\nlines": 1}))) + "\n")
    with pytest.raises(ValueError) as info:
        read_records(path)
    assert "\n" not in str(info.value)


def test_suite_key_with_a_line_break_stays_one_line(work):
    path = work / "suite.yaml"
    path.write_text(_yaml({"two\nlines": 1}))
    with pytest.raises(ValueError) as info:
        load_suite(path)
    assert "\n" not in str(info.value)
