"""Evaluation metrics against values worked out by hand."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.distill.evaluate import evaluate, expected_calibration_error, per_class_accuracy, topk_accuracy

LOGITS = np.array(
    [
        [3.0, 1.0, 0.0, -1.0, -2.0, -3.0],  # label 0: top-1 right
        [0.0, 2.0, 1.0, -1.0, -2.0, -3.0],  # label 2: 2nd, in top-5
        [0.0, 1.0, 2.0, 3.0, 4.0, 5.0],  # label 0: last, not in top-5
        [5.0, 0.0, 0.0, 0.0, 0.0, 0.0],  # label 0: right
    ]
)
Y = np.array([0, 2, 0, 0])


def test_topk_and_per_class_by_hand():
    assert topk_accuracy(LOGITS, Y, 1) == 0.5
    assert topk_accuracy(LOGITS, Y, 5) == 0.75
    assert topk_accuracy(LOGITS, Y, 6) == 1.0
    per = per_class_accuracy(LOGITS, Y)
    assert per[0] == pytest.approx(2 / 3) and per[2] == 0.0 and per[1] is None


def test_ece_by_hand():
    # Two-class logits with confidences 0.9 (right), 0.9 (wrong), 0.6 (right): with 10 bins,
    # bin (0.8, 0.9]: acc 0.5, conf 0.9 -> 2/3 * 0.4; bin (0.5, 0.6]: acc 1, conf 0.6 -> 1/3 * 0.4.
    logit = lambda p: np.log(p / (1 - p))  # noqa: E731
    logits = np.array([[logit(0.9), 0.0], [logit(0.9), 0.0], [logit(0.6), 0.0]])
    y = np.array([0, 1, 0])
    assert expected_calibration_error(logits, y, bins=10) == pytest.approx(2 / 3 * 0.4 + 1 / 3 * 0.4)
    # perfectly confident and right: no calibration error
    assert expected_calibration_error(np.array([[50.0, 0.0]]), np.array([0])) == pytest.approx(0.0, abs=1e-12)


def test_evaluate_names_classes_and_skips_top5_for_few_classes():
    out = evaluate(LOGITS, Y, labels=["a", "b", "c", "d", "e", "f"])
    assert out["top1"] == 0.5 and out["top5"] == 0.75 and set(out["per_class"]) == set("abcdef")
    assert 0 <= out["ece"] <= 1
    few = evaluate(LOGITS[:, :3], Y)
    assert "top5" not in few and list(few["per_class"]) == ["0", "1", "2"]
