"""Epoch time of response KD with cached teacher logits divided by plain training of the same student.

    python studies/kd_epoch_speed.py [--run RUN_DIR] [--rounds 2] [--limit N] [--device cpu|cuda] [--amp]
                                     [--views K]

With `--views K`, KD replays K stored augmented views per image (toolkit/distill/views.py) against their
stored soft targets, the teacher's logits on every view computed once before timing (that time is printed
too); the target for that ratio is 1.2 (it pays for the shift/flip of each batch).

Both trainings run the same student, data, batch size and optimizer through `toolkit.distill.train`;
they alternate (plain, KD, plain, KD, ...) so drift on a shared machine hits both. The teacher logits
are computed once before timing, as `edgekd distill` caches them; with `--run` they come from that run's
teacher, else from an untrained cnn_teacher (the timing does not depend on the values). Target: <= 1.15.
Also prints images/s of each, which is the figure to compare on a GPU (`--device cuda --amp`).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

from toolkit.config import RunConfig, load_config
from toolkit.distill.checkpoints import load_checkpoint
from toolkit.distill.context import load_splits
from toolkit.distill.train import Teacher, TrainSettings, predict, train_model
from toolkit.distill.views import SoftTargets, ViewSpec, draw_views, teacher_view_logits
from toolkit.models import ModelSpec, create_model

TARGET = 1.15
TARGET_VIEWS = 1.2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--run", type=Path, help="run directory whose teacher gives the logits")
    parser.add_argument("--rounds", type=int, default=2, help="epochs of each kind, alternating")
    parser.add_argument("--limit", type=int, default=None, help="use only this many training images")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--amp", action="store_true", help="float16 autocast (CUDA)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--views", type=int, default=0, help="stored augmented views per image (0: plain KD)")
    args = parser.parse_args(argv)

    cfg = load_config(args.run / "config.yaml") if args.run else RunConfig()
    if args.limit:
        cfg.data.limit_train = args.limit
    splits = load_splits(cfg)
    x, y = splits.normalize(splits.train_x), splits.train_y
    if args.run:
        teacher, _, _ = load_checkpoint(args.run / "distill" / "teacher.pt")
    else:
        torch.manual_seed(0)
        spec = ModelSpec(arch="cnn_teacher", input_shape=splits.input_shape, labels=splits.labels)
        teacher = create_model(spec).eval()
    logits = predict(teacher.to(args.device), x, device=args.device)
    spec, teachers, mode, target = None, [Teacher(logits=logits)], "cached", TARGET
    if args.views:
        spec = ViewSpec(count=args.views, shift=2, flip=True, seed=0)
        t0 = time.perf_counter()
        soft = SoftTargets.from_logits(
            teacher_view_logits(teacher, x, draw_views(len(x), spec), device=args.device), None
        )
        print(f"teacher logits on {args.views} views of {len(x):,} images: {time.perf_counter() - t0:.1f} s, "
              f"{soft.bytes_per_image} bytes per image")  # fmt: skip
        teachers, mode, target = [Teacher(view_logits=soft)], "views", TARGET_VIEWS
    student_spec = ModelSpec(arch=cfg.student.arch, kwargs=cfg.student.kwargs, input_shape=splits.input_shape)
    base = dict(epochs=1, batch_size=args.batch_size, lr=cfg.student.lr, device=args.device, amp=args.amp)
    times: dict[str, list[float]] = {"plain": [], "kd": []}
    for r in range(args.rounds):
        for kind in ("plain", "kd"):
            torch.manual_seed(r)
            model = create_model(student_spec)
            if kind == "plain":
                hist = train_model(model, x, y, TrainSettings(**base))
            else:
                d = cfg.distill
                kd = dict(methods=("kd",), temperature=d.temperature, alpha=d.alpha, views=spec)
                s = TrainSettings(**base, **kd)
                hist = train_model(model, x, y, s, teachers=teachers)
                assert hist[0]["teacher_targets"] == mode
            times[kind].append(hist[0]["seconds"])
            print(
                f"round {r + 1} {kind:>5}: {hist[0]['seconds']:.2f} s "
                f"{len(x) / hist[0]['seconds']:,.0f} images/s"
            )
    plain, kd = statistics.median(times["plain"]), statistics.median(times["kd"])
    ratio = kd / plain
    print(
        f"{cfg.student.arch} on {len(x):,} images, batch {args.batch_size}, {args.device}"
        f"{' AMP' if args.amp else ''}, {torch.get_num_threads()} threads: "
        f"plain {plain:.2f} s/epoch ({len(x) / plain:,.0f} img/s), KD {mode} {kd:.2f} s/epoch "
        f"({len(x) / kd:,.0f} img/s); ratio {ratio:.3f} (target <= {target})"
    )
    return 0 if ratio <= target else 1


if __name__ == "__main__":
    sys.exit(main())
