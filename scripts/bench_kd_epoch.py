"""Epoch time of response KD with cached teacher logits divided by plain training of the same student.

    python scripts/bench_kd_epoch.py [--run RUN_DIR] [--rounds 2] [--limit N] [--device cpu|cuda] [--amp]

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
from pathlib import Path

import torch

from toolkit.config import RunConfig, load_config
from toolkit.distill.train import Teacher, TrainSettings, predict, train_model
from toolkit.models import ModelSpec, create_model
from toolkit.pipeline.distill_stage import load_checkpoint, load_splits

TARGET = 1.15


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
                s = TrainSettings(
                    **base, methods=("kd",), temperature=cfg.distill.temperature, alpha=cfg.distill.alpha
                )
                hist = train_model(model, x, y, s, teachers=[Teacher(logits=logits)])
                assert hist[0]["teacher_targets"] == "cached"
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
        f"plain {plain:.2f} s/epoch ({len(x) / plain:,.0f} img/s), KD cached {kd:.2f} s/epoch "
        f"({len(x) / kd:,.0f} img/s); ratio {ratio:.3f} (target <= {TARGET})"
    )
    return 0 if ratio <= TARGET else 1


if __name__ == "__main__":
    sys.exit(main())
