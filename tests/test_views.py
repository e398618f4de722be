"""Stored augmented views (FKD): drawn once, replayed exactly, soft targets stored once (top-k too), and
distillation on them needs no teacher forward during training."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from pydantic import ValidationError

from tests.test_distill_stage import _cfg
from tests.test_train import _data, _model
from toolkit.config import RunConfig
from toolkit.distill.targets import _view_spec
from toolkit.distill.train import Teacher, TrainSettings, predict, teacher_mode, train_model
from toolkit.distill.views import (
    SoftTargets,
    ViewSpec,
    draw_views,
    erase_boxes,
    shift_flip,
    teacher_view_logits,
)
from toolkit.pipeline.distill_stage import run_distill
from toolkit.rundir import RunDir


def test_views_are_seeded_and_view_0_is_the_image_itself():
    spec = ViewSpec(count=3, shift=2, seed=5)
    a, b = draw_views(50, spec), draw_views(50, spec)
    assert torch.equal(a.oy, b.oy) and torch.equal(a.ox, b.ox) and torch.equal(a.flip, b.flip)
    assert not torch.equal(a.oy, draw_views(50, ViewSpec(count=3, shift=2, seed=6)).oy)
    assert int(a.oy.max()) <= 4 and a.flip[:, 1:].any() and not a.flip[:, 0].any()
    x = torch.randn(50, 1, 8, 8)
    idx = torch.arange(50)
    assert torch.equal(a.apply(x, idx, torch.zeros(50, dtype=torch.long)), x)
    assert not draw_views(50, ViewSpec(count=3, flip=False)).flip.any()


def test_shift_flip_moves_pixels_by_the_stored_offsets():
    x = torch.arange(16, dtype=torch.float32).reshape(1, 1, 4, 4)
    # offset (oy, ox) = (0, 2) of the 1-padded image: one row down, one column left, zeros coming in
    out = shift_flip(x, torch.tensor([0]), torch.tensor([2]), torch.tensor([False]), 1)
    assert out[0, 0].tolist() == [[0, 0, 0, 0], [1, 2, 3, 0], [5, 6, 7, 0], [9, 10, 11, 0]]
    flipped = shift_flip(x, torch.tensor([1]), torch.tensor([1]), torch.tensor([True]), 1)
    assert torch.equal(flipped, x.flip(3))


def test_erase_boxes_zero_the_stored_box_of_each_image():
    x = torch.ones(2, 1, 10, 20)
    box = torch.tensor([[0.2, 0.3, 0.5, 0.2], [0.0, 0.0, 0.0, 0.0]])  # top, left, height, width
    out = erase_boxes(x, box)
    zero = (out[0, 0] == 0).nonzero()
    assert zero[:, 0].unique().tolist() == [2, 3, 4, 5, 6] and zero[:, 1].unique().tolist() == [6, 7, 8, 9]
    assert len(zero) == 20 and torch.equal(out[1], x[1])  # a box of height 0 erases nothing


def test_erasing_views_keep_the_shifts_flips_and_view_0_of_views_without_it():
    plain, spec = ViewSpec(count=4, shift=2, seed=3), ViewSpec(count=4, shift=2, seed=3, erase=0.5)
    a, b = draw_views(2000, plain), draw_views(2000, spec)
    assert a.boxes is None and torch.equal(a.oy, b.oy) and torch.equal(a.flip, b.flip)
    area = (b.boxes[..., 2] * b.boxes[..., 3]).float()
    assert not area[:, 0].any() and 0.45 < (area[:, 1:] > 0).float().mean() < 0.55
    assert 0.019 < area[area > 0].min() and area.max() < 0.251
    x = torch.randn(2000, 1, 28, 28)
    idx, view = torch.arange(2000), torch.full((2000,), 2)
    erased = b.apply(x, idx, view)
    shifted = a.apply(x, idx, view)
    changed = (erased != shifted).flatten(1).any(1)
    assert torch.equal(changed, area[:, 2] > 0)  # an erased view differs from its shift/flip in the box only
    assert torch.equal(b.apply(x, idx, torch.zeros_like(idx)), x)
    assert "erase" not in plain.to_dict() and spec.to_dict()["erase"] == 0.5  # old cache keys unchanged


def test_a_run_config_s_erase_reaches_the_stored_views(idx_folder):
    spec = _view_spec(_cfg(idx_folder, distill={"views": {"count": 3, "erase": 0.3}}))
    assert (spec.count, spec.erase, spec.shift, spec.seed) == (3, 0.3, 2, 0)


def test_top_k_soft_targets_keep_the_top_logits_and_the_rest_mass():
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 3, (20, 2, 100)).astype(np.float32)
    full = SoftTargets.from_logits(logits, None)
    assert full.bytes_per_image == 2 * 100 * 2  # float16
    soft = SoftTargets.from_logits(logits, 5)
    assert soft.bytes_per_image == 2 * (5 * 2 + 5 * 2 + 2)  # values, indices, one rest value per view
    idx, view = torch.arange(20), torch.tensor([0, 1] * 10)
    got = soft.logits(idx, view).numpy()
    want = logits[np.arange(20), view.numpy()]
    top = np.argsort(-want, axis=1)[:, :5]
    assert np.allclose(np.take_along_axis(got, top, 1), np.take_along_axis(want, top, 1), atol=0.02)
    p_got = torch.softmax(torch.from_numpy(got), 1).numpy()
    p_want = torch.softmax(torch.from_numpy(want), 1).numpy()
    rest_got = 1 - np.take_along_axis(p_got, top, 1).sum(1)
    rest_want = 1 - np.take_along_axis(p_want, top, 1).sum(1)
    assert np.allclose(rest_got, rest_want, atol=2e-3)  # the other 95 classes keep their total mass


def test_view_logits_are_the_teachers_outputs_on_each_replayed_view():
    x, _ = _data(40)
    teacher = _model((8, 8), seed=1).eval()
    views = draw_views(40, ViewSpec(count=3, shift=1))
    stored = teacher_view_logits(teacher, x, views, batch_size=16)
    for v in range(3):
        replayed = views.apply(torch.from_numpy(x), torch.arange(40), torch.full((40,), v)).numpy()
        assert np.allclose(stored[:, v], predict(teacher, replayed), atol=1e-5)
    assert np.allclose(stored[:, 0], predict(teacher, x), atol=1e-5)


def test_kd_on_stored_views_trains_without_a_teacher_model_and_repeats_exactly():
    x, y = _data()
    teacher = _model((16, 32), seed=1)
    train_model(teacher, x, y, TrainSettings(epochs=3, batch_size=16, lr=1e-2))
    spec = ViewSpec(count=2, shift=1)
    soft = SoftTargets.from_logits(teacher_view_logits(teacher, x, draw_views(len(x), spec)), None)
    only_logits = [Teacher(model=None, view_logits=soft)]  # no module: an online forward would fail
    s = TrainSettings(
        epochs=3, batch_size=16, lr=1e-2, methods=("kd",), alpha=0.7, temperature=2.0, views=spec
    )
    assert teacher_mode(s, only_logits) == "views"
    a, b = _model(), _model()
    hist = train_model(a, x, y, s, teachers=only_logits, val=(x, y))
    train_model(b, x, y, s, teachers=only_logits)
    assert hist[0]["teacher_targets"] == "views" and hist[-1]["val_accuracy"] > 0.6
    assert all(
        torch.equal(p, q) for p, q in zip(a.state_dict().values(), b.state_dict().values(), strict=True)
    )
    # DKD reads the same stored targets; the hint needs features, so the teacher runs on the replayed views
    assert teacher_mode(TrainSettings(methods=("dkd",), views=spec), only_logits) == "views"
    assert teacher_mode(TrainSettings(methods=("kd", "hint"), views=spec), only_logits) == "online"
    with pytest.raises(ValueError, match="needs logits on every view of 50 images"):
        train_model(_model(), x[:50], y[:50], s, teachers=only_logits)


def test_augment_and_views_are_one_or_the_other():
    with pytest.raises(ValueError, match="choose one"):
        TrainSettings(augment=True, views=ViewSpec())
    with pytest.raises(ValidationError, match="choose one"):
        RunConfig.model_validate({"distill": {"augment": True, "views": {"count": 2}}})


def test_distill_stage_stores_view_logits_once_and_the_scratch_control_trains_plain(idx_folder, tmp_path):
    cfg = _cfg(idx_folder, distill={"views": {"count": 3, "shift": 1}})
    run = RunDir(tmp_path / "run")
    summary = run_distill(cfg, run)
    kd, scratch = summary.models["student_kd"], summary.models["student_scratch"]
    assert kd.teacher_targets == "views" and kd.views["count"] == 3 and kd.views["seed"] == 0
    assert scratch.views is None and scratch.teacher_targets == "none"
    teacher = summary.models["teacher"]
    assert teacher.soft_target_bytes_per_image == 3 * 3 * 2  # 3 views x 3 classes x float16
    assert teacher.view_logits_seconds is not None
    cache = run.distill / "teacher_views.npz"
    stamp = cache.stat().st_mtime_ns
    again = run_distill(cfg, RunDir(tmp_path / "run"))  # the teacher is reused, and so are its view logits
    assert cache.stat().st_mtime_ns == stamp and again.models["teacher"].view_logits_seconds is None
    assert again.models["student_kd"].test_accuracy == kd.test_accuracy
    # QAT-KD's targets from a views run: view 0, the teacher's logits on the plain training images
    from toolkit.distill.checkpoints import load_checkpoint
    from toolkit.distill.context import load_splits
    from toolkit.distill.targets import cached_train_logits
    from toolkit.errors import RunDirError

    splits = load_splits(cfg)
    teacher, _, _ = load_checkpoint(run.checkpoint("teacher"))
    plain = predict(teacher, splits.normalize(splits.train_x))
    logits = cached_train_logits(run, "teacher")
    assert logits.shape == plain.shape and np.allclose(logits, plain, atol=2e-2, rtol=1e-2)  # float16
    cache.unlink()
    with pytest.raises(RunDirError, match="teacher_logits.npz: not found"):
        cached_train_logits(run, "teacher")


def test_a_teacher_of_its_own_augmentation_and_plain_students(idx_folder, tmp_path):
    """`teacher.augment` trains only the teacher augmented (so it does not memorize the images its cached
    logits are computed on); the students follow distill.augment (off)."""
    cfg = _cfg(idx_folder, teacher={"augment": True}, distill={"scratch_control": False})
    summary = run_distill(cfg, RunDir(tmp_path / "run"))
    assert summary.models["teacher"].augment is True and summary.models["student_kd"].augment is False
    assert summary.models["student_kd"].teacher_targets == "cached"
    with pytest.raises(ValidationError, match="distill.views replays stored ones"):
        RunConfig.model_validate(
            {"student": {"arch": "cnn_student", "augment": True}, "distill": {"views": {}}}
        )


def test_token_views_mask_words_but_never_padding_cls_or_sep_and_view_0_is_the_text():
    spec = ViewSpec(count=3, shift=0, mask=0.3, mask_id=103, keep_ids=(0, 101, 102), seed=4)
    views = draw_views(200, spec, length=12)
    x = torch.tensor([[101] + list(range(1000, 1009)) + [102, 0]] * 200)
    idx = torch.arange(200)
    assert torch.equal(views.apply(x, idx, torch.zeros(200, dtype=torch.long)), x)
    out = views.apply(x, idx, torch.full((200,), 2))
    masked = out != x
    assert torch.all(out[masked] == 103) and not masked[:, [0, 10, 11]].any()
    assert 0.2 < masked[:, 1:10].float().mean() < 0.4  # words masked at about the asked rate
    again = draw_views(200, spec, length=12)
    assert torch.equal(again.apply(x, idx, torch.full((200,), 2)), out)  # seeded: the same views
    assert not torch.equal(views.apply(x, idx, torch.ones(200, dtype=torch.long)), out)  # views differ


def test_text_views_train_kd_on_the_teachers_logits_of_masked_texts(text_run, tmp_path, monkeypatch):
    """The text run's config with `views`: the teacher scores each masked view once, the KD student
    replays them, the scratch control trains plain."""
    import yaml

    from toolkit.config import load_config
    from toolkit.distill.targets import _view_spec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    cfg = yaml.safe_load((text_run / "config.yaml").read_text())
    cfg["distill"]["views"] = {"count": 3, "mask": 0.2}
    cfg["student"]["epochs"] = 2
    (tmp_path / "views.yaml").write_text(yaml.safe_dump(cfg))
    loaded = load_config(tmp_path / "views.yaml")
    spec = _view_spec(loaded)
    assert spec.mask == 0.2 and spec.mask_id == 1 and spec.keep_ids == (0, 2, 3)  # no [MASK]: [UNK]
    run = RunDir(tmp_path / "run")
    run.root.mkdir()
    run.config.write_text((tmp_path / "views.yaml").read_text())
    summary = run_distill(loaded, run)
    models = summary.models
    assert models["teacher"].soft_target_bytes_per_image == 3 * 2 * 2  # 3 views x 2 classes, float16
    assert models["student_kd"].teacher_targets == "views"
    assert models["student_scratch"].teacher_targets == "none"
    with np.load(run.distill / "teacher_views.npz") as z:
        values = z["values"].astype(np.float32)
    assert values.shape[1:] == (3, 2) and not np.allclose(values[:, 0], values[:, 2])
