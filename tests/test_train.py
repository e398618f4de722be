"""The training engine: each method trains, teachers are cached or online as stated, resume is exact."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from toolkit.distill.losses import DKDOptions, HintOptions, LossTerm, ensemble_logits, kd_loss
from toolkit.distill.train import (
    FeatureTap,
    Teacher,
    TrainSettings,
    augment_batch,
    predict,
    teacher_mode,
    train_model,
)
from toolkit.extensions import DISTILL_METHODS, DistillMethod
from toolkit.models import ModelSpec, create_model


def _data(n=96, seed=0):
    """8x8 images over 3 classes, class = brightest quadrant (learnable in a few steps)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n).astype(np.int64)
    x = rng.normal(0, 0.3, (n, 1, 8, 8)).astype(np.float32)
    for i, c in enumerate(y):
        x[i, 0, (c // 2) * 4 : (c // 2) * 4 + 4, (c % 2) * 4 : (c % 2) * 4 + 4] += 2.0
    return x, y


def _model(widths=(4, 8), seed=0):
    torch.manual_seed(seed)
    spec = ModelSpec(
        arch="cnn_student", kwargs={"widths": widths}, input_shape=(1, 8, 8), labels=("a", "b", "c")
    )
    return create_model(spec)


def _teacher(x, y):
    t = _model((16, 32), seed=1)
    train_model(t, x, y, TrainSettings(epochs=3, batch_size=16, lr=1e-2))
    return t.eval()


def test_plain_training_learns_and_writes_metrics(tmp_path):
    x, y = _data()
    model = _model()
    hist = train_model(
        model,
        x,
        y,
        TrainSettings(epochs=3, batch_size=16, lr=1e-2),
        val=(x, y),
        metrics_path=tmp_path / "m.jsonl",
    )
    assert [h["epoch"] for h in hist] == [1, 2, 3]
    assert hist[-1]["loss"] < hist[0]["loss"]
    assert hist[-1]["val_accuracy"] > 0.6
    assert hist[0]["teacher_targets"] == "none"
    lines = (tmp_path / "m.jsonl").read_text().splitlines()
    assert len(lines) == 3
    csv_rows = (tmp_path / "m.csv").read_text().splitlines()
    assert csv_rows[0].startswith("epoch,loss,train_accuracy") and len(csv_rows) == 4


def test_teacher_mode_says_when_logits_can_be_cached():
    t = [Teacher(logits=np.zeros((1, 3), np.float32))]
    assert teacher_mode(TrainSettings(methods=("kd",)), t) == "cached"
    assert teacher_mode(TrainSettings(methods=("kd", "dkd")), t) == "cached"
    assert teacher_mode(TrainSettings(methods=("kd",), augment=True), t) == "online"
    assert teacher_mode(TrainSettings(methods=("kd", "hint")), t) == "online"
    assert teacher_mode(TrainSettings(), t) == "none"


def test_kd_alpha_zero_is_plain_training_and_the_teacher_changes_the_result():
    x, y = _data()
    teacher = _teacher(x, y)
    logits = predict(teacher, x)
    plain, zero, kd = _model(), _model(), _model()
    train_model(plain, x, y, TrainSettings(epochs=2, batch_size=16, lr=1e-2))
    s0 = TrainSettings(epochs=2, batch_size=16, lr=1e-2, methods=("kd",), alpha=0.0)
    hist = train_model(zero, x, y, s0, teachers=[Teacher(logits=logits)])
    assert hist[0]["teacher_targets"] == "cached"
    s = TrainSettings(epochs=2, batch_size=16, lr=1e-2, methods=("kd",), temperature=2.0, alpha=0.7)
    train_model(kd, x, y, s, teachers=[Teacher(logits=logits)])
    w = "features.0.0.weight"
    assert torch.equal(plain.state_dict()[w], zero.state_dict()[w])
    assert not torch.equal(plain.state_dict()[w], kd.state_dict()[w])


def test_every_method_and_combination_trains(tmp_path):
    x, y = _data()
    teacher = _teacher(x, y)
    logits = predict(teacher, x)
    for methods, extra in [
        (("kd",), {}),
        (("dkd",), {"options": {"dkd": DKDOptions(warmup_epochs=2)}}),
        (
            ("hint",),
            {"options": {"hint": HintOptions(student_layer="features.0", teacher_layer="features.1")}},
        ),
        (("kd", "hint"), {"options": {"hint": HintOptions(student_layer="features.1")}}),
        (("kd",), {"augment": True}),
    ]:
        s = TrainSettings(
            epochs=3, batch_size=16, lr=1e-2, methods=methods, temperature=2.0, alpha=0.5, **extra
        )
        model = _model()
        hist = train_model(model, x, y, s, teachers=[Teacher(model=teacher, logits=logits)], val=(x, y))
        assert all(np.isfinite(h["loss"]) for h in hist), methods
        expect = "online" if ("hint" in methods or extra.get("augment")) else "cached"
        assert hist[0]["teacher_targets"] == expect
        assert hist[-1]["loss"] < hist[0]["loss"], methods
        assert hist[-1]["val_accuracy"] > 0.45, (methods, hist)  # 3 classes: chance is 0.33


@pytest.mark.parametrize("method", DISTILL_METHODS.names())
def test_every_registered_method_trains_on_the_targets_teacher_mode_picks(method):
    x, y = _data()
    teacher = _model((16, 32), seed=1).eval()
    teachers = [Teacher(model=teacher, logits=predict(teacher, x))]
    s = TrainSettings(epochs=1, batch_size=32, lr=1e-2, methods=(method,))
    hist = train_model(_model(), x, y, s, teachers=teachers)
    assert np.isfinite(hist[0]["loss"]) and hist[0]["teacher_targets"] == teacher_mode(s, teachers)


@pytest.mark.parametrize("with_ce", [False, True], ids=["adds-to-ce", "holds-the-ce"])
def test_a_new_method_is_one_registered_term_and_the_hard_label_ce_counts_once(monkeypatch, with_ce):
    """A term that holds the CE replaces it, any other is added to it: either way, a term that adds
    nothing trains the plain cross-entropy student bit for bit."""

    def build(options, settings, **_):
        if with_ce:
            return LossTerm(lambda step: torch.nn.functional.cross_entropy(step.logits, step.y), with_ce=True)
        return LossTerm(lambda step: 0.0 * (step.logits - step.teacher).square().mean())

    monkeypatch.setitem(DISTILL_METHODS._entries, "probe", DistillMethod("probe", build))
    x, y = _data()
    plain, probed = _model(), _model()
    train_model(plain, x, y, TrainSettings(epochs=1, batch_size=16, lr=1e-2))
    s = TrainSettings(epochs=1, batch_size=16, lr=1e-2, methods=("probe",))
    hist = train_model(probed, x, y, s, teachers=[Teacher(logits=np.zeros((len(x), 3), np.float32))])
    assert hist[0]["teacher_targets"] == "cached"
    for k, v in plain.state_dict().items():
        assert torch.equal(v, probed.state_dict()[k]), k


def _hint_settings(beta: float = 1.0, **kw):
    hint = HintOptions(student_layer="features.0", teacher_layer="features.1", beta=beta)
    return TrainSettings(
        **{"epochs": 1, "batch_size": 16, "lr": 1e-2, "methods": ("hint",), **kw}, options={"hint": hint}
    )


def test_hint_adapter_maps_student_channels_to_teacher_channels_and_learns(tmp_path):
    x, y = _data()
    teacher = _teacher(x, y)
    seen = {}

    def on_step(done, total, m):
        seen["n"] = total

    def state_after(settings, name, **kw):
        path = tmp_path / name
        train_model(_model(), x, y, settings, teachers=[Teacher(model=teacher)], state_path=path, **kw)
        return torch.load(path, weights_only=False)["student"]  # student model and hint adapter

    # lr 0 takes no step (AdamW's decay is lr-scaled too): the state holds the adapter as initialized
    untrained = state_after(_hint_settings(lr=0.0), "init.pt")
    assert torch.equal(untrained["model.features.0.0.weight"], _model().state_dict()["features.0.0.weight"])
    initial = untrained["hint.adapter.weight"]
    trained = state_after(_hint_settings(), "trained.pt", on_step=on_step)["hint.adapter.weight"]
    # student features.0 has 4 channels at 4x4, teacher features.1 has 32 channels at 2x2: a 1x1 conv 4->32
    assert tuple(trained.shape) == tuple(initial.shape) == (32, 4, 1, 1)
    assert seen["n"] == 6  # 96 images / batch 16
    moved = (trained - initial).abs().amax(dim=(1, 2, 3))
    assert (moved > 1e-4).all(), moved  # every output channel of the adapter was trained


def test_hint_beta_weights_the_hint_and_zero_turns_it_off():
    x, y = _data()
    teacher = _teacher(x, y)

    def student(settings):
        model = _model()
        train_model(model, x, y, settings, teachers=[Teacher(model=teacher)] if settings.methods else ())
        return model.state_dict()

    plain = student(TrainSettings(epochs=1, batch_size=16, lr=1e-2))
    off, low, high = (student(_hint_settings(beta=b)) for b in (0.0, 1.0, 10.0))
    # beta 0: the same student as plain cross-entropy training (same seed, same batch order)
    for k, v in plain.items():
        assert torch.equal(v, off[k]), k
    # the hint reaches the student's tapped layer, scaled by beta
    w = "features.0.0.weight"
    assert not torch.equal(low[w], plain[w])
    assert not torch.equal(low[w], high[w])
    assert (high[w] - plain[w]).abs().sum() > (low[w] - plain[w]).abs().sum()


def test_unknown_layer_and_method_are_one_line_errors():
    x, y = _data()
    with pytest.raises(ValueError, match="no submodule 'features.9'"):
        FeatureTap(_model(), "features.9")
    with pytest.raises(ValueError, match="unknown distillation method"):
        TrainSettings(methods=("fitnet",))
    with pytest.raises(ValueError, match="need a teacher"):
        train_model(_model(), x, y, TrainSettings(methods=("kd",)))
    with pytest.raises(ValueError, match="50 cached logit rows for 96"):
        cached = Teacher(logits=np.zeros((50, 3), np.float32))
        train_model(_model(), x, y, TrainSettings(methods=("kd",)), teachers=[cached])


def test_multi_teacher_targets_are_the_weighted_average_of_soft_targets():
    z1 = torch.tensor([[2.0, 0.0, -1.0]])
    z2 = torch.tensor([[0.0, 1.0, 0.0]])
    T = 2.0
    p1, p2 = torch.softmax(z1 / T, 1), torch.softmax(z2 / T, 1)
    combined = ensemble_logits([z1, z2], [3.0, 1.0], temperature=T)
    assert torch.allclose(torch.softmax(combined / T, 1), 0.75 * p1 + 0.25 * p2, atol=1e-6)
    # equal weights by default
    assert torch.allclose(
        torch.softmax(ensemble_logits([z1, z2], temperature=T) / T, 1), (p1 + p2) / 2, atol=1e-6
    )
    # the KD loss against the ensemble is the KL to the averaged distribution
    s = torch.tensor([[0.5, 0.2, 0.1]])
    y = torch.tensor([0])
    expect = (T**2) * torch.sum(
        (0.75 * p1 + 0.25 * p2) * (torch.log(0.75 * p1 + 0.25 * p2) - torch.log_softmax(s / T, 1))
    )
    assert torch.allclose(kd_loss(s, combined, y, temperature=T, alpha=1.0), expect, atol=1e-5)
    with pytest.raises(ValueError, match="non-negative"):
        ensemble_logits([z1, z2], [1.0, -1.0])


def test_two_teachers_train_cached_and_online():
    x, y = _data()
    t1, t2 = _teacher(x, y), _model((8, 16), seed=3)
    teachers = [
        Teacher(model=t1, logits=predict(t1, x), weight=2.0),
        Teacher(model=t2, logits=predict(t2, x)),
    ]
    for augment in (False, True):
        s = TrainSettings(epochs=1, batch_size=16, methods=("kd",), augment=augment)
        hist = train_model(_model(), x, y, s, teachers=teachers)
        assert hist[0]["teacher_targets"] == ("online" if augment else "cached")


class _WeightedEnsemble(torch.nn.Module):
    """One teacher module whose logits are `ensemble_logits` of two teachers with fixed weights."""

    def __init__(self, t1, t2, weights, temperature):
        super().__init__()
        self.t1, self.t2, self.weights, self.temperature = t1, t2, weights, temperature

    def forward(self, x):
        return ensemble_logits([self.t1(x), self.t2(x)], self.weights, temperature=self.temperature)


@pytest.mark.parametrize("augment", [False, True], ids=["cached", "online"])
def test_teacher_weights_train_the_student_on_the_weighted_ensemble(augment):
    """Teachers weighted [3, 1] train the very student that one teacher with their weighted ensemble
    logits trains, and another student than equal weights do."""
    x, y = _data()
    t1, t2 = _teacher(x, y), _model((8, 16), seed=3).eval()
    l1, l2 = predict(t1, x), predict(t2, x)
    s = TrainSettings(
        epochs=1, batch_size=16, lr=1e-2, methods=("kd",), temperature=2.0, alpha=0.7, augment=augment
    )

    def student(teachers):
        model = _model()
        hist = train_model(model, x, y, s, teachers=teachers)
        assert hist[0]["teacher_targets"] == ("online" if augment else "cached")
        return model.state_dict()

    def pair(w1, w2):
        return [Teacher(model=t1, logits=l1, weight=w1), Teacher(model=t2, logits=l2, weight=w2)]

    weighted, equal = student(pair(3.0, 1.0)), student(pair(1.0, 1.0))
    combined = ensemble_logits([torch.from_numpy(l1), torch.from_numpy(l2)], [3.0, 1.0], temperature=2.0)
    one = student([Teacher(model=_WeightedEnsemble(t1, t2, [3.0, 1.0], 2.0), logits=combined.numpy())])
    for k, v in weighted.items():
        assert torch.equal(v, one[k]), k
    w = "features.0.0.weight"
    assert not torch.equal(weighted[w], equal[w])


def test_augment_batch_shifts_and_flips_deterministically():
    x = torch.arange(2 * 1 * 6 * 6, dtype=torch.float32).reshape(2, 1, 6, 6)
    a = augment_batch(x, torch.Generator().manual_seed(0))
    b = augment_batch(x, torch.Generator().manual_seed(0))
    assert a.shape == x.shape and torch.equal(a, b)
    assert not torch.equal(a, x)
    # every output row is a (possibly flipped) shifted window of the zero-padded input
    for i in range(2):
        vals = set(a[i].flatten().tolist()) - {0.0}
        assert vals <= set(x[i].flatten().tolist())


def test_resume_after_a_kill_ends_with_the_same_weights(tmp_path):
    x, y = _data()
    teacher = _teacher(x, y)
    logits = predict(teacher, x)
    s = TrainSettings(
        epochs=3, batch_size=16, lr=1e-2, methods=("kd",), augment=False, temperature=2.0, alpha=0.5
    )
    straight = _model()
    hist = train_model(straight, x, y, s, teachers=[Teacher(logits=logits)])

    class Killed(Exception):
        pass

    def kill_in_epoch_2(done, total, m):
        if m["epoch"] == 2 and done == 8:
            raise Killed

    killed = _model()
    state = tmp_path / "student.train.pt"
    with pytest.raises(Killed):
        train_model(
            killed, x, y, s, teachers=[Teacher(logits=logits)], state_path=state, on_step=kill_in_epoch_2
        )
    assert torch.load(state, weights_only=False)["epoch"] == 1  # the state of the last whole epoch
    resumed = _model()
    hist2 = train_model(resumed, x, y, s, teachers=[Teacher(logits=logits)], state_path=state, resume=True)
    assert [h["epoch"] for h in hist2] == [1, 2, 3]
    assert hist2[-1]["loss"] == pytest.approx(hist[-1]["loss"], rel=1e-6)
    for (k, a), b in zip(straight.state_dict().items(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b), k
    # other settings cannot resume this state
    with pytest.raises(ValueError, match="other training settings"):
        train_model(_model(), x, y, TrainSettings(epochs=4), state_path=state, resume=True)


def test_resume_with_augmentation_and_hint_is_exact(tmp_path):
    x, y = _data()
    teacher = _teacher(x, y)
    s = TrainSettings(epochs=2, batch_size=32, lr=1e-2, methods=("kd", "hint"), augment=True)
    straight = _model()
    train_model(straight, x, y, s, teachers=[Teacher(model=teacher)])
    state = tmp_path / "s.pt"

    def stop(done, total, m):
        if m["epoch"] == 2:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(_model(), x, y, s, teachers=[Teacher(model=teacher)], state_path=state, on_step=stop)
    resumed = _model()
    train_model(resumed, x, y, s, teachers=[Teacher(model=teacher)], state_path=state, resume=True)
    for a, b in zip(straight.state_dict().values(), resumed.state_dict().values(), strict=True):
        assert torch.equal(a, b)


def test_keep_best_hands_back_the_best_validation_epoch_and_survives_a_resume(tmp_path):
    x, y = _data()
    xv, yv = _data(60, seed=5)
    settings = TrainSettings(epochs=6, batch_size=16, lr=5e-2, keep_best=True)  # a high LR: val wobbles
    model = _model()
    hist = train_model(model, x, y, settings, val=(xv, yv))
    vals = [h["val_accuracy"] for h in hist]
    kept = [i for i, h in enumerate(hist) if h.get("kept")]
    assert len(kept) == 1 and vals[kept[0]] == max(vals) and vals.index(max(vals)) == kept[0]
    got = float((predict(model, xv).argmax(1) == yv).mean())
    assert got == pytest.approx(max(vals))  # the weights handed back are that epoch's
    # the last epoch's weights differ unless the last epoch was the best
    plain = _model()
    train_model(plain, x, y, TrainSettings(epochs=6, batch_size=16, lr=5e-2), val=(xv, yv))
    pairs = zip(model.state_dict().values(), plain.state_dict().values(), strict=True)
    same = all(torch.equal(a, b) for a, b in pairs)
    assert same == (kept[0] == 5)
    # killed in epoch 5, resumed: the best epoch before the kill still counts, the same weights come back
    state = tmp_path / "state.pt"

    def kill_in_epoch_5(done, total, m):
        if m["epoch"] == 5:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        train_model(_model(), x, y, settings, val=(xv, yv), state_path=state, on_step=kill_in_epoch_5)
    resumed = _model()
    again = train_model(resumed, x, y, settings, val=(xv, yv), state_path=state, resume=True)
    assert [h.get("kept", False) for h in again] == [h.get("kept", False) for h in hist]
    pairs = zip(model.state_dict().values(), resumed.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
