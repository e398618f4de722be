"""The training engine: plain supervised or distillation (KD, DKD, FitNets hint, several teachers).

Teacher targets come from logits cached once on the augmentation-free training images when they can
(response KD costs about what plain training does), else from a teacher forward on every batch
("online": random augmentation or feature KD). CPU or CUDA (AMP on CUDA); under `torchrun` the student
is wrapped in DistributedDataParallel and each rank takes its share of every batch.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.distill.losses import HintLoss, dkd_loss, ensemble_logits, kd_loss

__all__ = [
    "METHODS",
    "Teacher",
    "TrainSettings",
    "FeatureTap",
    "teacher_mode",
    "train_model",
    "predict",
    "accuracy",
    "augment_batch",
]

METHODS = ("kd", "dkd", "hint")

# on_step(done_batches, total_batches, metrics) lets the CLI draw a progress bar; library code never prints.
StepCallback = Callable[[int, int, dict], None]


@dataclass
class TrainSettings:
    epochs: int = 1
    batch_size: int = 128
    lr: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    methods: tuple[str, ...] = ()  # any of METHODS, combined by summing; () = plain cross-entropy
    temperature: float = 4.0
    alpha: float = 0.9  # kd: weight of the soft loss; the hard loss gets 1 - alpha
    dkd_alpha: float = 1.0
    dkd_beta: float = 8.0
    dkd_warmup_epochs: int = 0  # DKD's weight ramps up linearly over these epochs, as in the paper
    hint_student: str = "features.1"
    hint_teacher: str = "features.1"
    hint_beta: float = 1.0
    augment: bool = False  # random 2-pixel shifts and horizontal flips, seeded
    device: str = "cpu"
    amp: bool = False  # float16 autocast + gradient scaling; CUDA only

    def __post_init__(self) -> None:
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown:
            raise ValueError(f"unknown distillation method(s) {unknown}; known: {list(METHODS)}")


@dataclass
class Teacher:
    """One teacher: its module (for online targets) and/or its logits cached on the training images."""

    model: nn.Module | None = None
    logits: np.ndarray | None = None
    weight: float = 1.0
    name: str = "teacher"


@dataclass
class _Epoch:
    loss: float = 0.0
    correct: int = 0
    seen: int = 0
    extra: dict = field(default_factory=dict)


class FeatureTap:
    """Keeps the output of one named submodule from the latest forward (a forward hook)."""

    def __init__(self, model: nn.Module, name: str) -> None:
        try:
            module = model.get_submodule(name)
        except AttributeError:
            names = [n for n, _ in model.named_children()]
            raise ValueError(
                f"{type(model).__name__} has no submodule {name!r} (top level: {names})"
            ) from None
        self.name, self.output = name, None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output) -> None:
        self.output = output

    def remove(self) -> None:
        self._handle.remove()


class _Student(nn.Module):
    """The student plus the hint adapter, so one DDP wrapper and one optimizer cover both."""

    def __init__(self, model: nn.Module, hint: HintLoss | None, tap: str) -> None:
        super().__init__()
        self.model, self.hint = model, hint
        self._tap = FeatureTap(model, tap) if hint is not None else None

    def forward(self, x: torch.Tensor, teacher_feature: torch.Tensor | None = None):
        logits = self.model(x)
        if self.hint is None:
            return logits, None
        return logits, self.hint(self._tap.output, teacher_feature)


def teacher_mode(settings: TrainSettings, teachers: Sequence[Teacher]) -> str:
    """ "none", "cached" (logits computed once) or "online" (teacher forward per batch), and why."""
    if not teachers or not set(settings.methods) & {"kd", "dkd", "hint"}:
        return "none"
    if settings.augment or "hint" in settings.methods:
        return "online"
    return "cached"


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
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    oy = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    ox = torch.randint(0, 2 * shift + 1, (b,), generator=gen)
    flip = torch.rand(b, generator=gen) < 0.5
    rows = oy[:, None] + torch.arange(h)
    cols = ox[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def _dist() -> tuple[int, int]:
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def _hint_loss(model: nn.Module, teacher: nn.Module, settings: TrainSettings, x: np.ndarray) -> HintLoss:
    """A hint loss whose adapter maps the student's tapped channels to the teacher's (probed on one image)."""
    s_tap, t_tap = FeatureTap(model, settings.hint_student), FeatureTap(teacher, settings.hint_teacher)
    try:
        with torch.no_grad():
            sample = torch.from_numpy(x[:1])
            was_training = model.training
            model.eval(), teacher.eval()
            model(sample), teacher(sample)
            model.train(was_training)
    finally:
        s_tap.remove(), t_tap.remove()
    return HintLoss(s_tap.output.shape[1], t_tap.output.shape[1], beta=settings.hint_beta)


def _write_metrics(metrics_path: Path, history: list[dict]) -> None:
    """JSON lines and a CSV of the same rows, rewritten whole each epoch (a resumed run stays one file)."""
    metrics_path.write_text("".join(json.dumps(row) + "\n" for row in history))
    keys = list(dict.fromkeys(k for row in history for k in row))
    with open(metrics_path.with_suffix(".csv"), "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=keys)
        writer.writeheader()
        writer.writerows(history)


def _save_state(path: Path, state: dict) -> None:
    tmp = path.with_suffix(path.suffix + ".partial")
    torch.save(state, tmp)
    tmp.replace(path)  # a kill mid-write leaves the previous epoch's state intact


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
) -> list[dict]:
    """Train `model` in place (AdamW + one-cycle LR) with `settings.methods` against `teachers`.

    With `state_path` the full training state is saved after every epoch; `resume=True` continues from it
    to the same result. Returns per-epoch metrics.
    """
    mode = teacher_mode(settings, teachers)
    _check_teachers(mode, settings, teachers, len(x))
    rank, world = _dist()
    device = torch.device(settings.device)
    amp = settings.amp and device.type == "cuda"
    torch.manual_seed(settings.seed)
    gen = torch.Generator().manual_seed(settings.seed)

    hint = _hint_loss(model, teachers[0].model, settings, x) if "hint" in settings.methods else None
    student = _Student(model, hint, settings.hint_student).to(device)
    t_models = [t.model.to(device).eval() for t in teachers] if mode == "online" else []
    t_tap = FeatureTap(teachers[0].model, settings.hint_teacher) if hint is not None else None
    weights = [t.weight for t in teachers]
    cached = None
    if mode == "cached":  # combine the teachers once: the soft targets do not change between epochs
        cached = ensemble_logits(
            [torch.from_numpy(t.logits) for t in teachers], weights, temperature=settings.temperature
        )
    wrapped: nn.Module = student
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        wrapped = nn.parallel.DistributedDataParallel(student, device_ids=ids)

    xt, yt = torch.from_numpy(x), torch.from_numpy(y)
    steps = (len(x) + settings.batch_size - 1) // settings.batch_size
    opt = torch.optim.AdamW(student.parameters(), lr=settings.lr, weight_decay=settings.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=settings.lr, total_steps=settings.epochs * steps)
    scaler = torch.amp.GradScaler("cuda", enabled=amp)
    history: list[dict] = []
    start = 0
    state_path = Path(state_path) if state_path is not None else None
    if resume and state_path is not None and state_path.exists():
        state = torch.load(state_path, map_location="cpu", weights_only=False)
        if state["settings"] != asdict(settings):
            raise ValueError(f"{state_path}: saved with other training settings; cannot resume with these")
        student.load_state_dict(state["student"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        scaler.load_state_dict(state["scaler"])
        gen.set_state(state["generator"])
        torch.set_rng_state(state["torch_rng"])
        start, history = state["epoch"], state["history"]

    try:
        for epoch in range(start, settings.epochs):
            student.train()
            t0, acc = time.perf_counter(), _Epoch()
            order = torch.randperm(len(x), generator=gen)
            warm = min(1.0, (epoch + 1) / settings.dkd_warmup_epochs) if settings.dkd_warmup_epochs else 1.0
            for b in range(steps):
                idx = order[b * settings.batch_size : (b + 1) * settings.batch_size]
                xb = xt[idx]
                if settings.augment:
                    xb = augment_batch(xb, gen)  # drawn for the whole batch on every rank: same stream
                idx, xb = idx[rank::world], xb[rank::world]  # this rank's share of the global batch
                xb, yb = xb.to(device, non_blocking=True), yt[idx].to(device, non_blocking=True)
                with torch.autocast(device.type, dtype=torch.float16, enabled=amp):
                    target, t_feat = None, None
                    if mode == "online":
                        with torch.no_grad():
                            outs = [t(xb).float() for t in t_models]
                        target = ensemble_logits(outs, weights, temperature=settings.temperature)
                        t_feat = t_tap.output if t_tap is not None else None
                    elif mode == "cached":
                        target = cached[idx].to(device, non_blocking=True)
                    logits, hint_value = wrapped(xb, t_feat)
                    loss = _objective(logits.float(), target, yb, hint_value, settings, warm)
                opt.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                scaler.step(opt)
                scaler.update()
                sched.step()
                acc.loss += loss.item() * len(idx)
                acc.correct += int((logits.argmax(1) == yb).sum())
                acc.seen += len(idx)
                if on_step is not None and rank == 0:
                    on_step(
                        epoch * steps + b + 1,
                        settings.epochs * steps,
                        {"epoch": epoch + 1, "loss": loss.item(), "accuracy": acc.correct / acc.seen},
                    )
            totals = torch.tensor([acc.loss, acc.correct, acc.seen], dtype=torch.float64)
            if world > 1:
                torch.distributed.all_reduce(totals)
                _average_buffers(student, world)
            row = {
                "epoch": epoch + 1,
                "loss": totals[0].item() / totals[2].item(),
                "train_accuracy": totals[1].item() / totals[2].item(),
                "seconds": round(time.perf_counter() - t0, 3),
                "teacher_targets": mode,
            }
            if val is not None:
                row["val_accuracy"] = accuracy(predict(model, val[0], device=device), val[1])
            history.append(row)
            if rank == 0:
                if metrics_path is not None:
                    _write_metrics(Path(metrics_path), history)
                if state_path is not None:
                    state = {
                        "epoch": epoch + 1,
                        "settings": asdict(settings),
                        "student": student.state_dict(),
                        "optimizer": opt.state_dict(),
                        "scheduler": sched.state_dict(),
                        "scaler": scaler.state_dict(),
                        "generator": gen.get_state(),
                        "torch_rng": torch.get_rng_state(),
                        "history": history,
                    }
                    _save_state(state_path, state)
    finally:
        if t_tap is not None:
            t_tap.remove()
        if student._tap is not None:
            student._tap.remove()
    model.to("cpu")
    return history


def _average_buffers(module: nn.Module, world: int) -> None:
    """Average BatchNorm running statistics over ranks: each rank updated them on its own shard."""
    for buf in module.buffers():
        if buf.dtype.is_floating_point:
            torch.distributed.all_reduce(buf)
            buf /= world


def _check_teachers(mode: str, settings: TrainSettings, teachers: Sequence[Teacher], n: int) -> None:
    if settings.methods and not teachers:
        raise ValueError(f"methods {list(settings.methods)} need a teacher")
    if mode == "cached":
        for t in teachers:
            if t.logits is None:
                raise ValueError(f"{t.name}: cached-logit training needs its logits on the training images")
            if len(t.logits) != n:
                raise ValueError(f"{t.name}: {len(t.logits)} cached logit rows for {n} training images")
    if mode == "online":
        for t in teachers:
            if t.model is None:
                raise ValueError(f"{t.name}: online targets (augmentation or hint) need the teacher model")


def _objective(
    logits: torch.Tensor,
    target: torch.Tensor | None,
    y: torch.Tensor,
    hint_value: torch.Tensor | None,
    s: TrainSettings,
    dkd_weight: float,
) -> torch.Tensor:
    """Sum of the configured methods; the hard-label CE appears once (weighted 1 - alpha under KD)."""
    if "kd" in s.methods:
        loss = kd_loss(logits, target, y, temperature=s.temperature, alpha=s.alpha)
    else:
        loss = F.cross_entropy(logits, y)
    if "dkd" in s.methods:
        dkd = dkd_loss(logits, target, y, temperature=s.temperature, alpha=s.dkd_alpha, beta=s.dkd_beta)
        loss = loss + dkd_weight * dkd
    if hint_value is not None:
        loss = loss + hint_value.float()
    return loss
