"""The training engine: plain supervised or distillation (KD, DKD, FitNets hint, several teachers).

Teacher targets come from cached logits when they can (response KD then costs about what plain training
does), else from a teacher forward on every batch (`batch_targets.py`). CPU or CUDA (AMP on CUDA); under
`torchrun` the student is wrapped in DistributedDataParallel and each rank takes its share of every batch.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from benchmarks.files import atomic_path, write_text_atomic
from toolkit.distill.batch_targets import TARGETS, TargetFn, Targets, Teacher, check_teachers, teacher_mode
from toolkit.distill.losses import FeatureTap, LossTerm, Step
from toolkit.distill.views import Views, ViewSpec, draw_views, shift_flip
from toolkit.errors import InputError
from toolkit.extensions import DISTILL_METHODS

__all__ = [
    "Teacher",
    "TrainSettings",
    "FeatureTap",
    "Targets",
    "teacher_mode",
    "train_model",
    "predict",
    "accuracy",
    "augment_batch",
]

# on_step(done_batches, total_batches, metrics) lets the CLI draw a progress bar; library code never prints.
StepCallback = Callable[[int, int, dict], None]


@dataclass
class TrainSettings:
    epochs: int = 1
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    methods: tuple[str, ...] = ()  # registered distillation methods, their terms summed; (): plain CE
    temperature: float = 4.0
    alpha: float = 0.9  # kd: weight of the soft loss; the hard loss gets 1 - alpha
    # Each method's options (`DistillConfig.options(name)`); a method missing here takes its defaults.
    options: dict[str, Any] = field(default_factory=dict)
    augment: bool = False  # random 2-pixel shifts and horizontal flips, seeded
    views: ViewSpec | None = None  # replay stored augmented views (teachers' view logits stored once)
    device: str = "cpu"
    amp: bool = False  # float16 autocast + gradient scaling; CUDA only
    # Conv weights in NHWC order while training: oneDNN's NHWC kernels train cnn_student on 2 CPU cores
    # 1.4-1.6x faster than NCHW (studies/kd_epoch_speed.py); the model is handed back in NCHW order.
    channels_last: bool = True
    # Hand back the weights of the epoch with the best validation accuracy (needs `val`), not the last.
    keep_best: bool = False

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in DISTILL_METHODS]
        if unknown:
            raise InputError(f"unknown distillation method(s) {unknown}; known: {DISTILL_METHODS.names()}")
        for name in self.methods:
            self.options.setdefault(name, DISTILL_METHODS.get(name).default_options())
        if isinstance(self.views, dict):
            self.views = ViewSpec(**self.views)
        if self.augment and self.views is not None:
            raise InputError("augment draws new views every batch, views replays stored ones: choose one")


class _Student(nn.Module):
    """The student plus the feature terms' trainable modules (the hint adapter), all run in one forward so
    one DDP wrapper and one optimizer cover them."""

    def __init__(self, model: nn.Module, terms: dict[str, LossTerm]) -> None:
        super().__init__()
        self.model = model
        self._taps: dict[str, FeatureTap] = {}
        for name, term in terms.items():
            if term.module is not None:
                self.add_module(name, term.module)  # state dict keys: model.*, hint.*
                self._taps[name] = FeatureTap(model, term.layers[0])

    def forward(self, x: torch.Tensor, teacher_features: dict[str, torch.Tensor]):
        logits = self.model(x)
        parts = {
            name: getattr(self, name)(tap.output, teacher_features[name]) for name, tap in self._taps.items()
        }
        return logits, parts

    def remove_taps(self) -> None:
        for tap in self._taps.values():
            tap.remove()


@dataclass
class _Epoch:
    loss: float = 0.0
    correct: int = 0
    seen: int = 0


@dataclass
class _Run:
    """What one training run carries from batch to batch and from epoch to epoch."""

    settings: TrainSettings
    mode: str  # teacher targets: none, cached or online
    student: _Student
    wrapped: nn.Module  # the student, or its DDP wrapper under torchrun
    targets: TargetFn
    objective: Callable[[Step], torch.Tensor]
    teacher_taps: dict[str, FeatureTap]
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    scaler: torch.amp.GradScaler
    gen: torch.Generator  # batch order and augmentation
    device: torch.device
    amp: bool
    rank: int
    world: int
    x: torch.Tensor | Any  # in-memory images, or a view that reads and normalizes batches (FloatView)
    y: torch.Tensor
    steps: int  # batches per epoch
    views: Views | None = None  # the stored augmented views replayed, one per image per epoch
    workers: int = 0  # DataLoader processes reading batches (for images read from disk)
    history: list[dict] = field(default_factory=list)
    start: int = 0  # the first epoch still to train (after a resume)
    best: dict | None = None  # keep_best: {"epoch", "val_accuracy", "state"} of the best epoch so far


@torch.no_grad()
def predict(
    model: nn.Module, x: np.ndarray, *, batch_size: int = 256, device: str | torch.device = "cpu"
) -> np.ndarray:
    """Logits of `model` (eval mode) on float32 NCHW `x`, as a numpy array."""
    model.eval()
    out = []
    for i in range(0, len(x), batch_size):
        out.append(model(torch.from_numpy(x[i : i + batch_size]).to(device)).float().cpu().numpy())
    return np.concatenate(out)


def accuracy(logits: np.ndarray, y: np.ndarray) -> float:
    return float((logits.argmax(1) == y).mean())


def augment_batch(x: torch.Tensor, gen: torch.Generator, *, shift: int = 2) -> torch.Tensor:
    """Random shifts of up to `shift` pixels (zero padding) and horizontal flips, one draw per image."""
    b = len(x)
    oy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    return shift_flip(x, oy, ox, flip, shift)


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _write_metrics(metrics_path: Path, history: list[dict]) -> None:
    """JSON lines and a CSV of the same rows, rewritten whole each epoch (a resumed run stays one file)."""
    write_text_atomic(metrics_path, "".join(json.dumps(row) + "\n" for row in history))
    keys = list(dict.fromkeys(k for row in history for k in row))
    with atomic_path(metrics_path.with_suffix(".csv")) as tmp, open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _save_state(path: Path, state: dict) -> None:
    with atomic_path(path) as tmp:  # a kill mid-write leaves the previous epoch's state intact
        torch.save(state, tmp)


def _objective(terms: Sequence[LossTerm]) -> Callable[[Step], torch.Tensor]:
    """Sum of the terms; the hard-label CE appears once (in the term that holds it, else on its own)."""
    base = next((t for t in terms if t.with_ce), None)
    rest = [t for t in terms if t is not base]

    def objective(step: Step) -> torch.Tensor:
        loss = base.fn(step) if base is not None else F.cross_entropy(step.logits, step.y)
        for term in rest:
            loss = loss + term.fn(step)
        return loss

    return objective


def _terms(settings: TrainSettings, model: nn.Module, teachers, x: np.ndarray) -> dict[str, LossTerm]:
    """The methods' loss terms, built in name order (only the hint draws from the seeded RNG)."""
    methods = (DISTILL_METHODS.get(name) for name in DISTILL_METHODS.names() if name in settings.methods)
    return {
        m.name: m.term(settings.options[m.name], settings, model=model, teachers=teachers, x=x)
        for m in methods
    }


def _ddp(student: nn.Module, device: torch.device, world: int) -> nn.Module:
    if world == 1:
        return student
    ids = [device.index] if device.type == "cuda" else None
    return nn.parallel.DistributedDataParallel(student, device_ids=ids)


def _prepare(model: nn.Module, x: np.ndarray, y: np.ndarray, settings: TrainSettings, teachers) -> _Run:
    """Terms, student, teacher targets, optimizer and generator, seeded alike for every run of `settings`."""
    mode = teacher_mode(settings, teachers)
    check_teachers(mode, settings, teachers, len(x))
    rank, world = _dist()
    device = torch.device(settings.device)
    amp = settings.amp and device.type == "cuda"
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)
    terms = _terms(settings, model, teachers, x)
    fmt = torch.channels_last if settings.channels_last else torch.contiguous_format
    student = _Student(model, terms).to(device, memory_format=fmt)
    taps = {n: FeatureTap(teachers[0].model, t.layers[1]) for n, t in terms.items() if t.module is not None}
    steps = (len(x) + settings.batch_size - 1) // settings.batch_size
    opt = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    return _Run(
        settings=settings,
        mode=mode,
        student=student,
        wrapped=_ddp(student, device, world),
        targets=TARGETS[mode](settings, teachers, device, taps),
        objective=_objective(list(terms.values())),
        teacher_taps=taps,
        opt=opt,
        sched=torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=settings.lr, total_steps=settings.epochs * steps
        ),
        scaler=torch.amp.GradScaler("cuda", enabled=amp),
        gen=gen,
        device=device,
        amp=amp,
        rank=rank,
        world=world,
        x=torch.from_numpy(x) if isinstance(x, np.ndarray) else x,
        y=torch.from_numpy(y),
        steps=steps,
        views=draw_views(len(x), settings.views, x.shape[-1]) if settings.views is not None else None,
    )


def _state(run: _Run, epoch: int) -> dict:
    """Everything a resume needs to continue after `epoch` whole epochs to the same result."""
    return {
        "epoch": epoch,
        "settings": _settings_record(run.settings),
        "student": run.student.state_dict(),
        "optimizer": run.opt.state_dict(),
        "scheduler": run.sched.state_dict(),
        "scaler": run.scaler.state_dict(),
        "generator": run.gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "history": run.history,
        "best": run.best,
    }


def _settings_record(settings: TrainSettings) -> dict:
    """The settings as plain data (a weights-only load reads no pydantic models): what a resume must match."""
    options = {k: v.model_dump() if v is not None else None for k, v in settings.options.items()}
    return dict(asdict(settings), options=options)


def _restore(run: _Run, path: Path) -> None:
    from toolkit.models.teacher_files import torch_load

    # Weights-only like every other load: a run directory from elsewhere must not run code on --resume.
    # The state holds only tensors, numbers, strings and containers (history rows are JSON-ready).
    state = torch_load(path, "cpu")
    if not isinstance(state, dict) or "settings" not in state:
        raise InputError(f"{path}: not an edgekd training state (no settings key); delete it to start over")
    if state["settings"] != _settings_record(run.settings):
        raise InputError(f"{path}: saved with other training settings; cannot resume with these")
    run.student.load_state_dict(state["student"])
    run.opt.load_state_dict(state["optimizer"])
    run.sched.load_state_dict(state["scheduler"])
    run.scaler.load_state_dict(state["scaler"])
    run.gen.set_state(state["generator"])
    torch.set_rng_state(state["torch_rng"])
    run.start, run.history, run.best = state["epoch"], state["history"], state.get("best")


def _step(run: _Run, xb: torch.Tensor, yb: torch.Tensor, idx: torch.Tensor, view, epoch: int):
    """One optimizer step on this rank's share of a batch; returns (loss, student logits)."""
    with torch.autocast(run.device.type, dtype=torch.float16, enabled=run.amp):
        targets = run.targets(xb, idx, view)
        logits, parts = run.wrapped(xb, targets.features)
        loss = run.objective(Step(logits.float(), yb, targets.logits, parts, epoch))
    run.opt.zero_grad(set_to_none=True)
    run.scaler.scale(loss).backward()
    run.scaler.step(run.opt)
    run.scaler.update()
    run.sched.step()
    return loss, logits


class _Batches(torch.utils.data.Dataset):
    """Batch `i` of an epoch's order, read from the training images (in a DataLoader worker or here)."""

    def __init__(self, x, batches: list[torch.Tensor]) -> None:
        self.x, self.batches = x, batches

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, i: int) -> torch.Tensor:
        idx = self.batches[i]
        if isinstance(self.x, torch.Tensor):
            return self.x[idx]
        return torch.from_numpy(np.asarray(self.x[idx.numpy()]))


def _batch_images(run: _Run, batches: list[torch.Tensor]):
    """The epoch's batches of images in order; read ahead by `run.workers` processes when there are any."""
    data = _Batches(run.x, batches)
    if run.workers == 0:
        return (data[i] for i in range(len(data)))
    return iter(torch.utils.data.DataLoader(data, batch_size=None, num_workers=run.workers))


def _train_epoch(run: _Run, epoch: int, on_step: StepCallback | None) -> _Epoch:
    s, acc = run.settings, _Epoch()
    run.student.train()
    order = torch.randperm(len(run.x), generator=run.gen)
    batches = [order[b * s.batch_size : (b + 1) * s.batch_size] for b in range(run.steps)]
    for b, (idx, xb) in enumerate(zip(batches, _batch_images(run, batches), strict=True)):
        view = None
        if s.augment:
            xb = augment_batch(xb, run.gen)  # drawn for the whole batch on every rank: same stream
        elif run.views is not None:
            view = torch.randint(0, run.views.spec.count, (len(idx),), generator=run.gen)
            xb = run.views.apply(xb, idx, view)
        share = slice(run.rank, None, run.world)  # this rank's share of the batch
        idx, xb, view = idx[share], xb[share], view[share] if view is not None else None
        yb = run.y[idx].to(run.device, non_blocking=True)
        loss, logits = _step(run, xb.to(run.device, non_blocking=True), yb, idx, view, epoch)
        acc.loss += loss.item() * len(idx)
        acc.correct += int((logits.argmax(1) == yb).sum())
        acc.seen += len(idx)
        if on_step is not None and run.rank == 0:
            on_step(
                epoch * run.steps + b + 1,
                s.epochs * run.steps,
                {"epoch": epoch + 1, "loss": loss.item(), "accuracy": acc.correct / acc.seen},
            )
    return acc


def _epoch_row(run: _Run, acc: _Epoch, epoch: int, t0: float) -> dict:
    """The epoch's metrics over all ranks (and BatchNorm statistics averaged over them)."""
    totals = torch.tensor([acc.loss, acc.correct, acc.seen], dtype=torch.float64)
    if run.world > 1:
        torch.distributed.all_reduce(totals)
        _average_buffers(run.student, run.world)
    return {
        "epoch": epoch + 1,
        "loss": totals[0].item() / totals[2].item(),
        "train_accuracy": totals[1].item() / totals[2].item(),
        "seconds": round(time.perf_counter() - t0, 3),
        "teacher_targets": run.mode,
    }


def train_model(
    model: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    settings: TrainSettings,
    *,
    teachers: Sequence[Teacher] = (),
    val: tuple[np.ndarray, np.ndarray] | None = None,
    state_path: str | Path | None = None,
    resume: bool = False,
    metrics_path: str | Path | None = None,
    on_step: StepCallback | None = None,
    workers: int = 0,
) -> list[dict]:
    """Train `model` in place (AdamW + one-cycle LR) with `settings.methods` against `teachers`.

    With `state_path` the full training state is saved after every epoch; `resume=True` continues from it
    to the same result. `x` is float32 images, or a view read batch by batch (`workers` processes reading
    ahead). Returns per-epoch metrics.
    """
    run = _prepare(model, x, y, settings, teachers)
    run.workers = workers
    state_path = Path(state_path) if state_path is not None else None
    try:
        if resume and state_path is not None and state_path.exists():
            _restore(run, state_path)
        for epoch in range(run.start, settings.epochs):
            t0 = time.perf_counter()
            row = _epoch_row(run, _train_epoch(run, epoch, on_step), epoch, t0)
            if val is not None:
                row["val_accuracy"] = accuracy(predict(model, val[0], device=run.device), val[1])
                _remember_best(run, model, row, epoch)
            run.history.append(row)
            if run.rank == 0 and metrics_path is not None:
                _write_metrics(Path(metrics_path), run.history)
            if run.rank == 0 and state_path is not None:
                _save_state(state_path, _state(run, epoch + 1))
    finally:
        for tap in run.teacher_taps.values():
            tap.remove()
        run.student.remove_taps()
    model.to("cpu", memory_format=torch.contiguous_format)
    if run.best is not None:
        model.load_state_dict(run.best["state"])
        run.history[run.best["epoch"]]["kept"] = True
    return run.history


def _remember_best(run: _Run, model: nn.Module, row: dict, epoch: int) -> None:
    """keep_best: a CPU copy of the weights when this epoch's validation accuracy is the best so far."""
    if run.settings.keep_best and (run.best is None or row["val_accuracy"] > run.best["val_accuracy"]):
        state = {k: v.detach().to("cpu", copy=True).contiguous() for k, v in model.state_dict().items()}
        run.best = {"epoch": epoch, "val_accuracy": row["val_accuracy"], "state": state}


def _average_buffers(module: nn.Module, world: int) -> None:
    """Average BatchNorm running statistics over ranks: each rank updated them on its own shard."""
    for buf in module.buffers():
        if buf.dtype.is_floating_point:
            torch.distributed.all_reduce(buf)
            buf /= world
