"""Distillation losses against hand-computed values."""

from __future__ import annotations

import math

import pytest

torch = pytest.importorskip("torch")

from toolkit.distill.losses import LOSSES, KDLoss, kd_loss  # noqa: E402


def _hand_kd(s, t, y, T, alpha):
    def softmax(v):
        e = [math.exp(x) for x in v]
        return [x / sum(e) for x in e]

    total = 0.0
    for si, ti, yi in zip(s, t, y, strict=True):
        ps, pt = softmax([x / T for x in si]), softmax([x / T for x in ti])
        kl = sum(p * math.log(p / q) for p, q in zip(pt, ps, strict=True))
        ce = -math.log(softmax(si)[yi])
        total += alpha * T * T * kl + (1 - alpha) * ce
    return total / len(s)


@pytest.mark.parametrize("T,alpha", [(1.0, 0.5), (4.0, 0.9), (2.0, 0.0), (3.0, 1.0)])
def test_kd_loss_matches_hand_computation(T, alpha):
    s = [[1.0, 2.0, 0.5], [0.0, -1.0, 3.0]]
    t = [[2.0, 1.0, 0.0], [0.5, 0.5, 2.0]]
    y = [1, 2]
    got = kd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha)
    assert float(got) == pytest.approx(_hand_kd(s, t, y, T, alpha), rel=1e-5)


def test_kd_loss_zero_soft_term_when_student_equals_teacher():
    logits = torch.tensor([[1.0, 2.0, 3.0]])
    assert float(kd_loss(logits, logits, torch.tensor([2]), temperature=4.0, alpha=1.0)) == pytest.approx(
        0, abs=1e-7
    )


def test_kdloss_module_is_registered_and_matches_function():
    s, t, y = torch.randn(4, 5), torch.randn(4, 5), torch.tensor([0, 1, 2, 3])
    mod = LOSSES.create("kd", temperature=2.0, alpha=0.3)
    assert isinstance(mod, KDLoss)
    assert torch.allclose(mod(s, t, y), kd_loss(s, t, y, temperature=2.0, alpha=0.3))


@pytest.mark.parametrize(
    "kw,msg", [({"temperature": 0}, "temperature must be > 0"), ({"alpha": 1.5}, "alpha must be in")]
)
def test_kd_loss_rejects_bad_hyperparameters(kw, msg):
    with pytest.raises(ValueError, match=msg):
        kd_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.tensor([0]), **kw)
