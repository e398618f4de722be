"""Which teacher targets make KD beat scratch on the built-in data (issue #22): prints per-seed test accuracy.

    python studies/kd_targets.py [--epochs N] [--widths 24,48,96] [--train N] EXPERIMENT...
    e.g. scratch kd views:k=4:sh=2:fl=1 cf:ep=4:f=2 kd:tep=4:taug=1

Each argument is one experiment; students: cnn_student, --epochs epochs (default 4, the pre-sweep
default; the default run now trains 7), seeds 0/1/2:
  scratch                      plain training
  kd[:T=..:a=..]               KD from logits cached on the plain training images
  views:k=K:sh=S:fl=0|1[:er=P] KD replaying K stored shift/flip views (toolkit/distill/views.py), with
                               one random box erased in a view with probability P
  cf:ep=E:f=F                  KD from cross-fitted logits: F teachers, each trained E epochs on the other
                               folds and scoring its own fold (out-of-fold soft targets)
  tep=E, taug=1                the teacher's epochs (default 2) and whether it trains augmented
--train N trains teachers and students on N training images only (a seeded subset: a small data set).
Teachers and cross-fitted logits are cached in /tmp/edgekd-kd-study (train<N>/ with --train).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import torch

from toolkit.config import load_config
from toolkit.distill.context import load_splits
from toolkit.distill.train import Teacher, TrainSettings, accuracy, predict, train_model
from toolkit.distill.views import SoftTargets, ViewSpec, draw_views, teacher_view_logits
from toolkit.models import ModelSpec, create_model

SEEDS = (0, 1, 2)
OUT = Path("/tmp/edgekd-kd-study")


def _data():
    s = load_splits(load_config(Path(__file__).parents[1] / "toolkit/configs/default.yaml"))
    split = {k: (s.normalize(getattr(s, f"{k}_x")), getattr(s, f"{k}_y")) for k in ("train", "val", "test")}
    return s, split


def _net(arch: str, s, seed: int, **kwargs):
    torch.manual_seed(seed)
    return create_model(ModelSpec(arch=arch, input_shape=s.input_shape, labels=s.labels, kwargs=kwargs))


def _teacher(s, data, epochs: int, augment: bool):
    path = OUT / f"teacher_{epochs}{'a' if augment else ''}.pt"
    model = _net("cnn_teacher", s, 0)
    if path.exists():
        model.load_state_dict(torch.load(path))
        return model
    (x, y), t0 = data["train"], time.perf_counter()
    train_model(model, x, y, TrainSettings(epochs=epochs, batch_size=128, lr=0.002, augment=augment))
    torch.save(model.state_dict(), path)
    scores = {k: f"{accuracy(predict(model, v[0]), v[1]):.4f}" for k, v in data.items()}
    how = " augmented" if augment else ""
    print(f"teacher {epochs} epochs{how}: {time.perf_counter() - t0:.0f} s, {scores}")
    return model


def _crossfit(s, data, epochs: int, folds: int) -> np.ndarray:
    path = OUT / f"crossfit_{epochs}_{folds}.npy"
    if path.exists():
        return np.load(path)
    x, y = data["train"]
    fold = np.random.default_rng(0).permutation(len(x)) % folds
    logits = np.zeros((len(x), len(s.labels)), np.float32)
    for f in range(folds):
        model, rest = _net("cnn_teacher", s, f), fold != f
        train_model(model, x[rest], y[rest], TrainSettings(epochs=epochs, batch_size=128, lr=0.002, seed=f))
        logits[~rest] = predict(model, x[~rest])
    print(f"cross-fitted logits ({folds} x {epochs} epochs): out-of-fold accuracy {accuracy(logits, y):.4f}")
    np.save(path, logits)
    return logits


def _targets(kind: str, opts: dict, s, data) -> tuple[list[Teacher], ViewSpec | None]:
    if kind == "scratch":
        return [], None
    if kind == "cf":
        return [Teacher(logits=_crossfit(s, data, int(opts.get("ep", 4)), int(opts.get("f", 2))))], None
    teacher = _teacher(s, data, int(opts.get("tep", 2)), opts.get("taug") == "1")
    x = data["train"][0]
    if kind == "kd":
        return [Teacher(logits=predict(teacher, x))], None
    spec = ViewSpec(
        count=int(opts.get("k", 4)),
        shift=int(opts.get("sh", 2)),
        flip=opts.get("fl", "1") == "1",
        erase=float(opts.get("er", 0)),
    )
    soft = SoftTargets.from_logits(teacher_view_logits(teacher, x, draw_views(len(x), spec)), None)
    return [Teacher(view_logits=soft)], spec


def main(argv: list[str]) -> int:
    global OUT
    epochs, student, train = 4, {}, None
    while argv[:1] in (["--epochs"], ["--widths"], ["--train"]):
        if argv[0] == "--epochs":
            epochs = int(argv[1])
        elif argv[0] == "--train":
            train, OUT = int(argv[1]), OUT / f"train{argv[1]}"
        else:
            student = {"widths": [int(w) for w in argv[1].split(",")]}
        argv = argv[2:]
    OUT.mkdir(parents=True, exist_ok=True)
    s, data = _data()
    if train is not None:
        keep = np.random.default_rng(0).permutation(len(data["train"][1]))[:train]
        data["train"] = (data["train"][0][keep], data["train"][1][keep])
    (x, y), (xt, yt) = data["train"], data["test"]
    for arg in argv:
        kind, *rest = arg.split(":")
        opts = dict(o.split("=", 1) for o in rest)
        teachers, views = _targets(kind, opts, s, data)
        kd = dict(methods=("kd",), temperature=float(opts.get("T", 2)), alpha=float(opts.get("a", 0.5)))
        test = []
        for seed in SEEDS:
            net = _net("cnn_student", s, seed, **student)
            settings = TrainSettings(epochs=epochs, batch_size=128, lr=0.005, seed=seed, views=views,
                                     **(kd if teachers else {}))  # fmt: skip
            train_model(net, x, y, settings, teachers=teachers)
            test.append(100 * accuracy(predict(net, xt), yt))
        scores = " / ".join(f"{t:.2f}" for t in test)
        what = f"{epochs} epochs" + (f", {student}" if student else "")
        what += f", {train} training images" if train else ""
        print(f"{arg} ({what}): test {scores} %, mean {np.mean(test):.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
