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


def _softmax(v):
    e = [math.exp(x) for x in v]
    return [x / sum(e) for x in e]


def _kl(p, q):
    return sum(a * math.log(a / b) for a, b in zip(p, q, strict=True) if a > 0)


def _hand_dkd(s, t, y, T, alpha, beta):
    total = 0.0
    for si, ti, yi in zip(s, t, y, strict=True):
        ps, pt = _softmax([x / T for x in si]), _softmax([x / T for x in ti])
        tckd = _kl([pt[yi], 1 - pt[yi]], [ps[yi], 1 - ps[yi]])
        qs = _softmax([x / T for k, x in enumerate(si) if k != yi])
        qt = _softmax([x / T for k, x in enumerate(ti) if k != yi])
        total += T * T * (alpha * tckd + beta * _kl(qt, qs))
    return total / len(s)


@pytest.mark.parametrize("T,alpha,beta", [(1.0, 1.0, 8.0), (4.0, 1.0, 8.0), (2.0, 0.5, 2.0)])
def test_dkd_loss_matches_hand_computation(T, alpha, beta):
    from toolkit.distill.losses import dkd_loss

    s = [[1.0, 2.0, 0.5, -1.0], [0.0, -1.0, 3.0, 0.2]]
    t = [[2.0, 1.0, 0.0, 0.5], [0.5, 0.5, 2.0, -0.3]]
    y = [1, 2]
    got = dkd_loss(torch.tensor(s), torch.tensor(t), torch.tensor(y), temperature=T, alpha=alpha, beta=beta)
    assert torch.isfinite(got)
    assert float(got) == pytest.approx(_hand_dkd(s, t, y, T, alpha, beta), rel=1e-5)


def test_dkd_is_zero_and_has_finite_gradients_when_student_equals_teacher():
    from toolkit.distill.losses import LOSSES

    s = torch.tensor([[1.0, 2.0, 3.0], [30.0, -30.0, 0.0]], requires_grad=True)
    loss = LOSSES.create("dkd", temperature=4.0)(s, s.detach().clone(), torch.tensor([2, 0]))
    loss.backward()
    # float32 rounding between log_softmax and log(softmax), scaled by beta * T^2 = 128
    assert float(loss) == pytest.approx(0, abs=1e-5) and torch.isfinite(s.grad).all()


def test_hint_loss_adapter_shapes_and_value():
    from toolkit.distill.losses import HintLoss

    same = HintLoss(8, 8, beta=2.0)
    assert isinstance(same.adapter, torch.nn.Identity)
    a, b = torch.ones(2, 8, 4, 4), torch.zeros(2, 8, 4, 4)
    assert float(same(a, b)) == pytest.approx(2.0)  # beta * mean((1 - 0)^2)
    hint = HintLoss(4, 16)
    assert isinstance(hint.adapter, torch.nn.Conv2d) and hint.adapter.weight.shape == (16, 4, 1, 1)
    s_feat, t_feat = torch.randn(3, 4, 7, 7, requires_grad=True), torch.randn(3, 16, 14, 14)
    loss = hint(s_feat, t_feat)  # 7x7 student map resized to the teacher's 14x14
    loss.backward()
    assert loss.ndim == 0 and hint.adapter.weight.grad is not None and s_feat.grad.shape == (3, 4, 7, 7)
