"""The distillation service behind `edgekd distill`: the teacher(s) trained, reused or loaded, their logits
cached per checkpoint, the student distilled per seed and the scratch control trained, every model
checkpointed (and continued after a cut-off); CPU or CUDA, one process or several under `torchrun` (every
rank runs `distill`; rank 0 alone writes files).
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

import numpy as np

from benchmarks.files import atomic_path, sha256_file
from toolkit.config import RunConfig, TeacherConfig, TrainConfig
from toolkit.data import DataSplits
from toolkit.distill.checkpoints import load_checkpoint, load_source, read_checkpoint
from toolkit.rundir import RunDir
from toolkit.rundir.summary import write_summary

__all__ = ["distill", "load_splits", "teacher_names", "validation_warnings"]


def load_splits(cfg: RunConfig) -> DataSplits:
    from toolkit.data import load_splits as load_data

    return load_data(cfg.data, cfg.seed)


def teacher_names(cfg: RunConfig) -> list[str]:
    """`teacher` for the first (the baseline every report compares against), then teacher_2, teacher_3, …"""
    return ["teacher"] + [f"teacher_{i + 1}" for i in range(1, len(cfg.teachers))]


def _dist() -> tuple[int, int]:
    """(rank, world size); joins the process group torchrun describes in the environment."""
    import torch.distributed as dist

    if int(os.environ.get("WORLD_SIZE", "1")) > 1 and not dist.is_initialized():
        import torch

        dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    return 0, 1


def _device(cfg: RunConfig) -> str:
    import torch

    if cfg.device == "cuda" and not torch.cuda.is_available():
        from toolkit.errors import ConfigError

        raise ConfigError(
            "device: cuda asked for, but torch sees no CUDA GPU (torch.cuda.is_available() is False)"
        )
    if cfg.device == "cpu" or not torch.cuda.is_available():
        return "cpu"
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def _spec(arch: str, kwargs: dict, splits: DataSplits):
    from toolkit.models import ModelSpec

    kwargs = dict(kwargs)
    if kwargs.pop("prune_vocab", False):  # a text model's embedding rows for the training tokens only
        if not splits.is_text:
            from toolkit.errors import ConfigError

            raise ConfigError(f"{arch}: prune_vocab applies to text models (token ids), not images")
        kwargs["keep_ids"] = np.unique(np.asarray(splits.train_x)).tolist()
    if splits.is_text:  # the tokenizer's padding id and vocabulary, whichever tokenizer the data names
        kwargs.setdefault("pad_id", splits.tokens.pad_id)
        kwargs.setdefault("vocab_size", splits.vocab_size)
    return ModelSpec(
        arch=arch,
        kwargs=kwargs,
        input_shape=splits.input_shape,
        layout="NL" if splits.is_text else "NCHW",
        mean=splits.mean,
        std=splits.std,
        labels=splits.labels,
    )


def _evaluate(model, xs: dict, splits: DataSplits, device: str, val_accuracy: float | None = None) -> dict:
    """Test-split metrics, and validation accuracy unless training already measured it on these weights."""
    from toolkit.distill.evaluate import evaluate
    from toolkit.distill.train import accuracy, predict

    test = evaluate(predict(model.to(device), xs["test"], device=device), splits.test_y, labels=splits.labels)
    model.to("cpu")
    if val_accuracy is None:
        val_accuracy = accuracy(predict(model, xs["val"]), splits.val_y)
    return {
        "val_accuracy": val_accuracy,
        "test_accuracy": test["top1"],
        "test": test,
    }


class _Ctx:
    """What every model's training needs: config, data, run dir, device, rank and callbacks."""

    def __init__(self, cfg: RunConfig, run: RunDir, on_step, resume: bool) -> None:
        self.cfg, self.run, self.on_step, self.resume = cfg, run, on_step, resume
        self.rank, self.world = _dist()
        self.device = _device(cfg)
        self.splits = load_splits(cfg)
        s = self.splits
        self.xs = {k: s.model_input(getattr(s, f"{k}_x")) for k in ("train", "val", "test")}


def _save(ctx: _Ctx, name: str, ckpt: dict) -> None:
    import torch

    if ctx.rank == 0:
        with atomic_path(ctx.run.checkpoint(name)) as tmp:
            torch.save(ckpt, tmp)
    if ctx.world > 1:  # other ranks read the file (its hash keys the logits cache) only once it is whole
        torch.distributed.barrier()


def _settings(ctx: _Ctx, tcfg: TrainConfig, seed: int, methods: tuple[str, ...]):
    """The training settings of one model: its own config, the run's distillation options, the device."""
    from toolkit.distill.train import TrainSettings

    d = ctx.cfg.distill
    return TrainSettings(
        epochs=tcfg.epochs,
        batch_size=tcfg.batch_size,
        lr=tcfg.lr,
        weight_decay=tcfg.weight_decay,
        seed=seed,
        methods=methods,
        temperature=d.temperature,
        alpha=d.alpha,
        dkd_alpha=d.dkd.alpha,
        dkd_beta=d.dkd.beta,
        dkd_warmup_epochs=d.dkd.warmup_epochs,
        hint_student=d.hint.student_layer,
        hint_teacher=d.hint.teacher_layer,
        hint_beta=d.hint.beta,
        augment=d.augment if tcfg.augment is None else tcfg.augment,
        keep_best=tcfg.keep_best,
        views=_view_spec(ctx.cfg) if methods else None,  # the scratch control trains on the plain images
        device=ctx.device,
        amp=ctx.cfg.amp,
    )


def _view_spec(cfg: RunConfig):
    """The run's stored views (one draw, seeded by the run, shared by every student and seed), or None.
    Text: token masks with the tokenizer's [MASK] (else [UNK]), never on padding, [CLS] or [SEP]."""
    from toolkit.distill.views import ViewSpec

    v = cfg.distill.views
    if v is None:
        return None
    if not cfg.data.is_text:
        return ViewSpec(**v.model_dump(exclude={"mask"}), seed=cfg.seed)
    from benchmarks.text import load_tokenizer

    tok = load_tokenizer(cfg.data.tokenizer, cfg.data.seq_len or 64)
    ids = {t: tok.token_to_id(t) for t in ("[MASK]", "[UNK]", "[PAD]", "[CLS]", "[SEP]")}
    keep = tuple(sorted({i for t, i in ids.items() if t in ("[PAD]", "[CLS]", "[SEP]") and i is not None}))
    mask_id = ids["[MASK]"] if ids["[MASK]"] is not None else ids["[UNK]"]
    if mask_id is None:
        from toolkit.errors import ConfigError

        raise ConfigError(f"{cfg.data.tokenizer}: no [MASK] or [UNK] token to mask views with")
    return ViewSpec(
        count=v.count,
        top_k=v.top_k,
        seed=cfg.seed,
        mask=v.mask,
        mask_id=mask_id,
        keep_ids=keep,
        shift=0,
        flip=False,
    )


def _train_info(ctx: _Ctx, spec, model, settings, history: list[dict], t0: float) -> dict:
    """A trained model's summary entry: size, training facts and its test (and validation) metrics."""
    from toolkit.models import count_macs, count_params

    methods, d = settings.methods, ctx.cfg.distill
    kept = next((i for i, h in enumerate(history) if h.get("kept")), None)  # keep_best: that epoch's weights
    last = history[kept if kept is not None else -1] if history else {}
    return {
        "arch": spec.arch,
        "params": count_params(model),
        "macs": count_macs(model, spec.input_shape),
        "epochs": settings.epochs,
        "seed": settings.seed,
        "train_seconds": round(time.perf_counter() - t0, 1),
        "epoch_seconds": [h["seconds"] for h in history],
        "device": ctx.device,
        "world_size": ctx.world,
        "methods": list(methods),
        "teacher_targets": history[0]["teacher_targets"] if history else None,
        "temperature": d.temperature if methods else None,
        "alpha": d.alpha if "kd" in methods else None,
        "augment": settings.augment,
        "views": settings.views.to_dict() if settings.views is not None else None,
        **({"kept_epoch": kept + 1} if kept is not None else {}),
        # the kept (or last) epoch's validation pass ran on these final weights: not repeated
        **_evaluate(model, ctx.xs, ctx.splits, ctx.device, last.get("val_accuracy")),
    }


def _train(
    ctx: _Ctx,
    name: str,
    tcfg: TrainConfig,
    *,
    seed: int,
    methods: tuple[str, ...] = (),
    teachers: list = (),
) -> tuple[dict, object]:
    """Train one model (teacher, KD or scratch student); save its checkpoint; return (info, model)."""
    import torch

    from toolkit.models import create_model

    fingerprint = _fingerprint(ctx.cfg, tcfg, seed, methods)
    if ctx.resume and (done := _finished(ctx, name, fingerprint)) is not None:
        return done  # trained to the end before the run was cut off: not trained or evaluated again
    spec = _spec(tcfg.arch, tcfg.kwargs, ctx.splits)
    settings = _settings(ctx, tcfg, seed, tuple(methods))
    torch.manual_seed(seed)  # same init for the KD and scratch students of a seed: only the loss differs
    model = create_model(spec)
    state = ctx.run.distill / f"{name}.train.pt"
    if not ctx.resume and ctx.rank == 0:
        state.unlink(missing_ok=True)
    on_step = ctx.on_step and (lambda done, total, m: ctx.on_step(name, done, total, m))
    t0 = time.perf_counter()
    if getattr(model, "frozen_encoder", False):
        history = _fit_frozen(ctx, model, settings)
    else:
        history = _train_model(ctx, name, model, settings, teachers, state, on_step)
    info = _train_info(ctx, spec, model, settings, history, t0)
    if history and "embeddings" in history[0]:
        info["embeddings"] = history[0]["embeddings"]
    ckpt = {
        "spec": spec.to_dict(),
        "train": tcfg.model_dump(mode="json"),
        "seed": seed,
        "data": ctx.cfg.data.model_dump(mode="json"),
        "fingerprint": fingerprint,
        "state_dict": model.state_dict(),
        "info": info,
    }
    _save(ctx, name, ckpt)
    return info, model


def _train_model(ctx: _Ctx, name: str, model, settings, teachers, state: Path, on_step) -> list[dict]:
    from toolkit.distill.train import train_model

    return train_model(
        model,
        ctx.xs["train"],
        ctx.splits.train_y,
        settings,
        teachers=teachers,
        val=(ctx.xs["val"], ctx.splits.val_y),
        state_path=state,
        resume=ctx.resume,
        metrics_path=ctx.run.distill / f"{name}_metrics.jsonl" if ctx.rank == 0 else None,
        on_step=on_step,
        workers=ctx.cfg.data.workers,
    )


def _fit_frozen(ctx: _Ctx, model, settings) -> list[dict]:
    """A frozen-encoder teacher: embeddings of train and val (cached), then its head fitted on them."""
    from toolkit.distill.head import default_cache_dir, fit_head, sentence_embeddings

    emb, took = {}, {}
    for split in ("train", "val"):
        emb[split], cache = sentence_embeddings(model, ctx.xs[split], default_cache_dir(), device=ctx.device)
        took[split] = {"path": str(cache.path), "seconds": cache.seconds}  # seconds None: read from cache
    history = fit_head(
        model.head,
        (emb["train"], ctx.splits.train_y),
        (emb["val"], ctx.splits.val_y),
        lr=settings.lr,
        weight_decay=settings.weight_decay,
        seed=settings.seed,
    )
    history[0]["embeddings"] = took
    return history


def _fingerprint(cfg: RunConfig, tcfg: TrainConfig, seed: int, methods) -> str:
    """What a trained model depends on: its own settings, the distillation, the teachers, data and seed."""
    parts = {
        "train": tcfg.model_dump(mode="json"),
        "seed": seed,
        "methods": list(methods),
        "distill": cfg.distill.model_dump(mode="json") if methods else None,
        "teachers": [t.model_dump(mode="json") for t in cfg.teachers] if methods else None,
        "data": cfg.data.model_dump(mode="json"),
        "amp": cfg.amp,
    }
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _finished(ctx: _Ctx, name: str, fingerprint: str) -> tuple[dict, object] | None:
    """(info, model) of a checkpoint this run already finished with the same fingerprint, else None."""
    path = ctx.run.checkpoint(name)
    if not path.exists():
        return None
    model, _, ckpt = load_checkpoint(path)
    return (dict(ckpt["info"]), model) if ckpt.get("fingerprint") == fingerprint else None


def _reusable_teacher(ctx: _Ctx, name: str, tcfg: TeacherConfig) -> dict | None:
    """The saved teacher's info if it was trained with exactly this teacher, data and seed config."""
    path = ctx.run.checkpoint(name)
    if not path.exists():
        return None
    # Only the metadata is compared: no need to build the model and load its weights here.
    ckpt = read_checkpoint(path)
    same = (
        ckpt.get("source") is None
        and ckpt["train"] == _as_train_config(tcfg).model_dump(mode="json")
        and ckpt["seed"] == ctx.cfg.seed
        and ckpt["data"] == ctx.cfg.data.model_dump(mode="json")
    )
    return dict(ckpt["info"], reused=True) if same else None


def _get_teacher(ctx: _Ctx, name: str, tcfg: TeacherConfig) -> tuple[dict, object]:
    """Load a teacher from its source, reuse a matching trained one, or train it."""
    if tcfg.source is not None:
        from toolkit.models import count_macs, count_params

        src = tcfg.source
        source = src.to_dict()
        spec = _spec("loaded", {}, ctx.splits)
        model, described = load_source(source, spec)
        spec.arch = f"{described['kind']}:{src.arch or src.factory or Path(src.path or '').name}"
        # The logits cache key: the file's hash, or the source itself when there is no file.
        key = (
            described.get("sha256") or hashlib.sha256(json.dumps(source, sort_keys=True).encode()).hexdigest()
        )
        info = {
            "arch": spec.arch,
            "source": described,
            "source_sha256": key,
            "params": count_params(model),
            "macs": count_macs(model, spec.input_shape),
            "loaded": True,
            **_evaluate(model, ctx.xs, ctx.splits, "cpu"),
        }
        _save(ctx, name, {"spec": spec.to_dict(), "source": source, "train": None, "info": info})
        return info, model
    info = _reusable_teacher(ctx, name, tcfg)
    if info is not None:
        model, _, _ = load_checkpoint(ctx.run.checkpoint(name))
        return info, model
    return _train(ctx, name, _as_train_config(tcfg), seed=ctx.cfg.seed)


def _as_train_config(tcfg: TeacherConfig) -> TrainConfig:
    """The training part of a teacher's config (its ensemble weight does not change its weights)."""
    return TrainConfig.model_validate(tcfg.model_dump(exclude={"source", "weight"}))


def _logits_key(ctx: _Ctx, name: str, info: dict, *extra) -> str:
    """The teacher (its file or checkpoint, its config with any input adapter) and the images it scored."""
    parts = [info.get("source_sha256") or sha256_file(ctx.run.checkpoint(name)), ctx.cfg.seed]
    parts += [[t.model_dump(mode="json") for t in ctx.cfg.teachers], ctx.cfg.data.model_dump(mode="json")]
    return hashlib.sha256(json.dumps([*parts, *extra], sort_keys=True, default=str).encode()).hexdigest()


def _teacher_logits(ctx: _Ctx, name: str, model, info: dict) -> np.ndarray:
    """Teacher logits on the (augmentation-free) training images, computed once per teacher."""
    from toolkit.distill.train import predict

    x = ctx.xs["train"]
    key = _logits_key(ctx, name, info)
    cache = ctx.run.distill / f"{name}_logits.npz"
    if cache.exists():
        with np.load(cache) as z:
            if str(z["teacher_sha256"]) == key and len(z["logits"]) == len(x):
                return z["logits"]
    if getattr(model, "frozen_encoder", False):  # from its cached embeddings: no second encoding pass
        from toolkit.distill.head import default_cache_dir, head_logits, sentence_embeddings

        logits = head_logits(
            model.head, sentence_embeddings(model, x, default_cache_dir(), device=ctx.device)[0]
        )
    else:
        logits = predict(model, x)
    if ctx.rank == 0:
        with atomic_path(cache) as tmp:
            np.savez(tmp, logits=logits, teacher_sha256=key)
    return logits


def cached_train_logits(distill: Path, name: str) -> np.ndarray:
    """A teacher's (N, C) logits on the training rows as distill cached them: `{name}_logits.npz`, or view 0
    (the example itself) of `{name}_views.npz` where the KD run replayed stored views."""
    import torch

    from toolkit.distill.views import read_soft_targets

    plain, views = distill / f"{name}_logits.npz", distill / f"{name}_views.npz"
    if plain.exists():
        with np.load(plain) as z:
            return z["logits"]
    if not views.exists():
        from toolkit.errors import RunDirError

        raise RunDirError(f"{plain}: not found (nor {views.name}): no cached teacher logits")
    soft, _ = read_soft_targets(views)
    n = len(soft.values)
    return soft.logits(torch.arange(n), torch.zeros(n, dtype=torch.long)).numpy()


def _teacher_view_logits(ctx: _Ctx, name: str, model, info: dict, spec):
    """Teacher logits on every stored view of the training images (`SoftTargets`), computed once per
    teacher and view spec; the seconds it took go into the teacher's summary entry."""
    from toolkit.distill.views import SoftTargets, draw_views, read_soft_targets, teacher_view_logits

    x = ctx.xs["train"]
    key = _logits_key(ctx, name, info, spec.to_dict())
    cache = ctx.run.distill / f"{name}_views.npz"
    if cache.exists():
        soft, stored = read_soft_targets(cache)
        if stored == key and len(soft.values) == len(x):
            return soft
    t0 = time.perf_counter()
    views = draw_views(len(x), spec, x.shape[-1])
    soft = SoftTargets.from_logits(teacher_view_logits(model, x, views, device=ctx.device), spec.top_k)
    info["view_logits_seconds"] = round(time.perf_counter() - t0, 1)
    if ctx.rank == 0:
        arrays = {k: v for k, v in (("indices", soft.indices), ("rest", soft.rest)) if v is not None}
        with atomic_path(cache) as tmp:
            np.savez(tmp, values=soft.values, classes=soft.classes, key=key, **arrays)
    return soft


def validation_warnings(summary: dict, teachers: list[str]) -> list[str]:
    """Validation-split warnings: a teacher not better than the scratch student, KD below scratch."""
    scratch = summary["student_scratch"]["val_accuracy"]
    out = [
        f"{name} scores {100 * summary[name]['val_accuracy']:.2f} % on validation, not better than the "
        f"student trained from scratch ({100 * scratch:.2f} %): distilling from it can make the student worse"
        for name in teachers
        if summary[name].get("val_accuracy") is not None and summary[name]["val_accuracy"] <= scratch
    ]
    kd = summary["student_kd"]["val_accuracy"]
    if kd < scratch:
        out.append(
            f"the KD student scores {100 * kd:.2f} % on validation, below the scratch control "
            f"({100 * scratch:.2f} %): ship the scratch student or change the teacher or settings"
        )
    return out


def _kd_vs_scratch(summary: dict, seeds: list[int]) -> dict:
    """Per-seed test accuracy of the KD and scratch students, their means and the difference in points."""
    rows = []
    for i, seed in enumerate(seeds):
        suffix = "" if i == 0 else f"_seed{seed}"
        rows.append(
            {
                "seed": seed,
                "student_kd": summary[f"student_kd{suffix}"]["test_accuracy"],
                "student_scratch": summary[f"student_scratch{suffix}"]["test_accuracy"],
            }
        )
    kd = float(np.mean([r["student_kd"] for r in rows]))
    scratch = float(np.mean([r["student_scratch"] for r in rows]))
    return {
        "per_seed": rows,
        "mean_kd": kd,
        "mean_scratch": scratch,
        "delta_points": round(100 * (kd - scratch), 3),
        "kd_wins": sum(r["student_kd"] > r["student_scratch"] for r in rows),
    }


def distill(
    cfg: RunConfig, run: RunDir, *, on_step=None, resume: bool = False, teachers_only: bool = False
) -> dict:
    """Teachers (trained, reused or loaded), then per seed the KD and scratch students; summary.json."""
    from toolkit.distill.train import Teacher

    run.distill.mkdir(parents=True, exist_ok=True)
    ctx = _Ctx(cfg, run, on_step, resume)
    s = ctx.splits
    summary: dict = {
        "data": {
            "kind": cfg.data.kind,
            "root": str(cfg.data.root or cfg.data.factory),
            "train": len(s.train_y),
            "val": len(s.val_y),
            "test": len(s.test_y),
            "classes": list(s.labels),
        },
        "device": ctx.device,
        "world_size": ctx.world,
    }
    teachers = []
    for name, tcfg in zip(teacher_names(cfg), cfg.teachers, strict=True):
        info, model = _get_teacher(ctx, name, tcfg)
        summary[name] = dict(info, weight=tcfg.weight)
        teachers.append(Teacher(model=model, weight=tcfg.weight, name=name))
    if not teachers_only:
        _teacher_targets(ctx, teachers, summary)
        _students(ctx, teachers, summary)
    if ctx.rank == 0:
        write_summary(run.summary, summary)
    return summary


def _teacher_targets(ctx: _Ctx, teachers: list, summary: dict) -> None:
    """Each teacher's logits on the training images (or on their stored views), when training uses them."""
    from toolkit.distill.train import TrainSettings, teacher_mode

    cfg = ctx.cfg
    spec = _view_spec(cfg)
    settings = TrainSettings(methods=tuple(cfg.distill.methods), augment=cfg.distill.augment, views=spec)
    mode = teacher_mode(settings, teachers)
    for t in teachers:
        if mode == "cached":
            t.logits = _teacher_logits(ctx, t.name, t.model, summary[t.name])
        elif mode == "views":
            t.view_logits = _teacher_view_logits(ctx, t.name, t.model, summary[t.name], spec)
            summary[t.name]["soft_target_bytes_per_image"] = t.view_logits.bytes_per_image


def _students(ctx: _Ctx, teachers: list, summary: dict) -> None:
    """Per seed the KD student and, with the scratch control, the same student without a teacher."""
    cfg, seeds = ctx.cfg, ctx.cfg.student_seeds
    for i, seed in enumerate(seeds):
        suffix = "" if i == 0 else f"_seed{seed}"
        summary[f"student_kd{suffix}"], _ = _train(
            ctx, f"student_kd{suffix}", cfg.student, seed=seed, methods=tuple(cfg.distill.methods),
            teachers=teachers,
        )  # fmt: skip
        if cfg.distill.scratch_control:
            name = f"student_scratch{suffix}"
            summary[name], _ = _train(ctx, name, cfg.student, seed=seed)
    if not cfg.distill.scratch_control and ctx.rank == 0:
        ctx.run.checkpoint("student_scratch").unlink(missing_ok=True)
    if cfg.distill.scratch_control:
        summary["kd_vs_scratch"] = _kd_vs_scratch(summary, seeds)
        summary["warnings"] = validation_warnings(summary, teacher_names(cfg))
