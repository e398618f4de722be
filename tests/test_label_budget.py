"""Label budgets: N labels per class kept, stratified and seeded; the hidden labels reach no training path."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import yaml

from toolkit.data.budget import LabelBudget, label_budget_rows
from toolkit.errors import DataError


def _labels() -> np.ndarray:
    return np.repeat(np.arange(3), [20, 20, 3])


def test_each_class_keeps_its_budget_drawn_with_the_seed():
    y = _labels()
    rows = label_budget_rows(y, LabelBudget(per_class=5), "y")
    assert np.bincount(y[rows.kept]).tolist() == [5, 5, 3]  # a smaller class keeps all it has
    assert np.array_equal(np.sort(np.concatenate([rows.kept, rows.pool])), np.arange(len(y)))
    assert set(rows.walk[: rows.decided]) >= set(rows.kept)  # chosen in the walk's first rows
    assert len(rows.pool) == len(y) - 13 and rows.budget == "5 per class, seed 0"
    again = label_budget_rows(y, LabelBudget(per_class=5), "y")
    other = label_budget_rows(y, LabelBudget(per_class=5, seed=1), "y")
    assert again.sha256 == rows.sha256 and np.array_equal(again.kept, rows.kept)
    assert other.sha256 != rows.sha256
    share = label_budget_rows(y, LabelBudget(fraction=0.5), "y")
    assert np.bincount(y[share.kept]).tolist() == [10, 10, 2]


def test_a_budget_rule_is_one_of_two_and_a_single_class_is_refused():
    with pytest.raises(ValueError, match="give per_class or fraction, one of them"):
        LabelBudget(per_class=5, fraction=0.1)
    with pytest.raises(ValueError, match="give per_class or fraction"):
        LabelBudget()
    with pytest.raises(DataError, match="y: the label budget keeps a single class"):
        label_budget_rows(np.zeros(10, np.int64), LabelBudget(per_class=2), "y")


def _npz(path, y_train: np.ndarray) -> None:
    """Three classes of noisy 12x12 templates with their own val and test arrays (no split drawn from y)."""
    rng = np.random.default_rng(0)
    templates = rng.uniform(0, 255, size=(3, 1, 12, 12))

    def images(y):
        return np.clip(templates[y] + rng.normal(0, 50, size=(len(y), 1, 12, 12)), 0, 255).astype(np.uint8)

    x_train = images(np.repeat(np.arange(3), 60))  # the images follow the true labels, in class order
    y_eval = np.repeat(np.arange(3), 20)
    np.savez(
        path, x=x_train, y=y_train, x_val=images(y_eval), y_val=y_eval, x_test=images(y_eval), y_test=y_eval
    )


def _distill(tmp_path, name: str, y_train: np.ndarray) -> dict:
    data = tmp_path / f"{name}.npz"
    _npz(data, y_train)
    cfg = tmp_path / f"{name}.yaml"
    cfg.write_text(
        yaml.safe_dump(
            {
                "data": {"kind": "npz", "root": str(data), "label_budget": {"per_class": 8, "seed": 3}},
                "teacher": {"arch": "cnn_teacher", "epochs": 1, "batch_size": 16, "lr": 0.003},
                "student": {"arch": "cnn_student", "epochs": 1, "batch_size": 16, "lr": 0.005},
            }
        )
    )
    out = tmp_path / f"run-{name}"
    r = subprocess.run(
        [sys.executable, "-m", "toolkit.cli.main", "distill", str(cfg), "--out", str(out)],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert r.returncode == 0, r.stderr
    return {"summary": json.loads((out / "distill" / "summary.json").read_text()), "run": out}


@pytest.mark.slow
def test_no_hidden_label_reaches_training(tmp_path):
    """Permuting the labels the budget hides gives bit-identical teachers and students."""
    import torch

    y = np.repeat(np.arange(3), 60)
    rows = label_budget_rows(y, LabelBudget(per_class=8, seed=3), "y")
    late = rows.walk[rows.decided :]  # hidden rows the walk met after every class had its labels
    permuted = y.copy()
    permuted[late] = np.random.default_rng(7).permutation(y[late])
    assert (permuted != y).sum() > 50
    assert label_budget_rows(permuted, LabelBudget(per_class=8, seed=3), "y").sha256 == rows.sha256
    runs = [_distill(tmp_path, "plain", y), _distill(tmp_path, "permuted", permuted)]
    data = runs[0]["summary"]["data"]
    assert (data["labeled"], data["unlabeled"], data["train"]) == (24, 156, 24)
    assert data["label_budget"] == "8 per class, seed 3" and len(data["labeled_rows_sha256"]) == 64
    for name in ("teacher", "student_kd", "student_scratch"):
        assert runs[0]["summary"][name]["labeled_images"] == 24, name
        assert runs[0]["summary"][name]["unlabeled_images"] == 0, name
        states = [
            torch.load(r["run"] / "distill" / f"{name}.pt", weights_only=False)["state_dict"] for r in runs
        ]
        assert all(torch.equal(v, states[1][k]) for k, v in states[0].items()), name
    same = [{k: v for k, v in r["summary"]["data"].items() if k != "root"} for r in runs]
    assert same[0] == same[1]  # the same rows kept, by hash
