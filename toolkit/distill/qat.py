"""Quantization-aware distillation: a trained student fine-tuned with fake-quantized weights and activations
(PT2E `prepare_qat_pt2e` with the target format's quantizer) against the KD run's cached teacher logits and
hard labels, then converted; the format's exporter writes the int8 file from the converted program."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from toolkit.config import RunConfig
from toolkit.data import DataSplits
from toolkit.distill.losses import ensemble_logits, kd_loss
from toolkit.errors import InputError
from toolkit.rundir import RunDir

__all__ = ["QatProgram", "QatSettings", "qat_offer", "qat_distill", "program_outputs"]


@dataclass(frozen=True)
class QatSettings:
    """How long and how hard to fine-tune; temperature and alpha are the KD run's."""

    epochs: int
    lr: float
    batch_size: int
    temperature: float
    alpha: float
    seed: int = 0


def _prepare(model: torch.nn.Module, quantizer, example: torch.Tensor):
    """The model, its BatchNorms folded into the convolutions before them (the quantizer's QAT conv+BN
    pattern does not trace on torchao 0.18), as a PT2E program with a dynamic batch, fake-quantized."""
    from torch.fx.experimental.optimization import fuse
    from torchao.quantization.pt2e import move_exported_model_to_train
    from torchao.quantization.pt2e.quantize_pt2e import prepare_qat_pt2e

    folded = fuse(model.eval())
    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in folded.modules()):
        raise InputError(f"{type(model).__name__}: a BatchNorm after no convolution; QAT-KD folds every one")
    batch = torch.export.Dim("batch", min=1, max=1 << 16)
    program = torch.export.export(folded.train(), (example,), dynamic_shapes=({0: batch},))
    prepared = prepare_qat_pt2e(program.module(), quantizer)
    move_exported_model_to_train(prepared)
    return prepared


def _epoch(prepared, opt, x, y, logits, s: QatSettings, gen: torch.Generator) -> float:
    """One pass over the rows in a seeded order; returns the mean loss."""
    order = torch.randperm(len(x), generator=gen).numpy()
    losses = []
    for i in range(0, len(x) - s.batch_size + 1, s.batch_size):  # full batches: BN statistics stay sane
        idx = np.sort(order[i : i + s.batch_size])
        xb, yb, tb = (torch.from_numpy(a[idx]) for a in (x, y, logits))
        loss = kd_loss(prepared(xb), tb, yb.long(), temperature=s.temperature, alpha=s.alpha)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return float(np.mean(losses))


def qat_distill(
    model: torch.nn.Module, quantizer, x: np.ndarray, y: np.ndarray, teacher_logits, s: QatSettings
):
    """Fine-tune a copy of `model` under `quantizer`'s fake quantization on (x, y, teacher_logits) and convert
    it; returns (converted program in eval form, what was done: epochs, seconds, losses)."""
    import copy

    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e

    if len(x) != len(teacher_logits) or len(x) < s.batch_size:
        raise InputError(f"QAT needs one teacher logit row per training row and a full batch: {len(x)} rows, "
                         f"{len(teacher_logits)} logit rows, batch {s.batch_size}")  # fmt: skip
    torch.manual_seed(s.seed)
    t0 = time.perf_counter()
    prepared = _prepare(copy.deepcopy(model), quantizer, torch.from_numpy(np.asarray(x[: s.batch_size])))
    opt = torch.optim.Adam(prepared.parameters(), lr=s.lr)
    gen = torch.Generator().manual_seed(s.seed)
    losses = [_epoch(prepared, opt, x, y, teacher_logits, s, gen) for _ in range(s.epochs)]
    move_exported_model_to_eval(prepared)
    converted = move_exported_model_to_eval(convert_pt2e(prepared, fold_quantize=False))
    converted.training = False  # the flag litert-torch checks; the graph's ops are already in eval form
    seconds = round(time.perf_counter() - t0, 1)
    info = {
        "method": "qat-kd",
        "epochs": s.epochs,
        "lr": s.lr,
        "batch_size": s.batch_size,
        "seconds": seconds,
    }
    info["loss_per_epoch"] = [round(v, 4) for v in losses]
    return converted, info


def program_outputs(program, x, *, batch_size: int = 256) -> np.ndarray:
    """Logits of a converted PT2E program on all of `x` (exported programs refuse `.eval()`; no grad here)."""
    with torch.no_grad():
        parts = [
            program(torch.from_numpy(np.asarray(x[i : i + batch_size]))) for i in range(0, len(x), batch_size)
        ]
    return torch.cat(parts).numpy()


@dataclass(frozen=True)
class QatProgram:
    """A student distilled again under a PT2E quantizer: the converted program, the quantizer, what was done
    (epochs, seconds, loss per epoch)."""

    program: Any
    quantizer: Any
    done: dict

    def outputs(self, x) -> np.ndarray:
        """The converted program's logits on all of `x` (a shipped QAT-KD file is checked against them)."""
        return program_outputs(self.program, x)


def _training_rows(cfg: RunConfig, run: RunDir, splits: DataSplits) -> dict:
    """The training rows, their hard labels and the teachers' ensembled logits as the KD run cached them."""
    from toolkit.distill.targets import cached_train_logits
    from toolkit.distill.teachers import teacher_names
    from toolkit.errors import ExportError, RunDirError

    try:
        cached = [torch.from_numpy(cached_train_logits(run, n)) for n in teacher_names(cfg)]
    except RunDirError as e:  # one file fails, with the reason; the other files go on
        raise ExportError(f"{e}; QAT-KD distills from them") from e
    weights = [t.weight for t in cfg.teachers]
    table = ensemble_logits(cached, weights, temperature=cfg.distill.temperature).numpy()
    return dict(x=splits.model_input(splits.train_x), y=np.asarray(splits.train_y), logits=table)


def qat_offer(
    cfg: RunConfig, run: RunDir, splits: DataSplits, *, quantizer: Callable[[bool], Any]
) -> Callable[[torch.nn.Module], Callable[[bool], QatProgram]]:
    """student -> (per_channel -> QatProgram): trained once per student and weight granularity under
    `quantizer(per_channel)`, so every format's int8 file is converted from one program."""
    rows: dict = {}  # read once, on first use, for every student

    def offer(model: torch.nn.Module) -> Callable[[bool], QatProgram]:
        trained: dict[bool, QatProgram] = {}

        def qat(per_channel: bool) -> QatProgram:
            if per_channel not in trained:
                if not rows:
                    rows.update(_training_rows(cfg, run, splits))
                q, d = cfg.export.qat, cfg.distill
                settings = QatSettings(q.epochs, q.lr, q.batch_size, d.temperature, d.alpha, cfg.seed)
                fq = quantizer(per_channel)
                program, done = qat_distill(model, fq, rows["x"], rows["y"], rows["logits"], settings)
                trained[per_channel] = QatProgram(program, fq, done)
            return trained[per_channel]

        return qat

    return offer
