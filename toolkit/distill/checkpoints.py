"""Checkpoints as `edgekd distill` writes them (spec, info, weights or the teacher's source), and the one
public loader that rebuilds a model from one (the export stage, `predict` tests and studies use it)."""

from __future__ import annotations

from pathlib import Path

__all__ = ["load_checkpoint", "read_checkpoint", "load_source"]


def load_checkpoint(path: Path):
    """Rebuild the model a checkpoint describes; returns (model in eval mode, spec, checkpoint dict)."""
    from toolkit.models import ModelSpec, create_model

    ckpt = read_checkpoint(path)
    spec = ModelSpec.from_dict(ckpt["spec"])
    if ckpt.get("source") is not None:  # a teacher loaded from the user's file: load it from there again
        model, _ = load_source(ckpt["source"], spec)
        return model.eval(), spec, ckpt
    model = create_model(spec)
    model.load_state_dict(ckpt["state_dict"])
    return model.eval(), spec, ckpt


def read_checkpoint(path: Path) -> dict:
    """A checkpoint this stage wrote, loaded weights-only; one `EdgekdError` line naming it otherwise."""
    from toolkit.errors import RunDirError
    from toolkit.models.teacher_files import torch_load

    ckpt = torch_load(path, "cpu")
    if not isinstance(ckpt, dict) or not {"spec", "info"} <= ckpt.keys():
        raise RunDirError(f"{path}: not an edgekd checkpoint (expected its spec and info keys)")
    return ckpt


def load_source(source: dict, spec):
    """Load a teacher from its source; with preprocessing of its own, behind a `TeacherInput` adapter."""
    from toolkit.models.sources import TeacherSource, load_teacher

    src = TeacherSource(**source)
    shape = (spec.input_shape[0], *src.input_size) if src.input_size else spec.input_shape
    model, described = load_teacher(src, input_shape=shape, num_classes=len(spec.labels) or 10)
    if src.input_size or src.mean or src.std:
        from toolkit.models.adapt import TeacherInput

        model = TeacherInput(
            model, mean_in=spec.mean, std_in=spec.std, mean=src.mean, std=src.std, size=src.input_size
        ).eval()
    return model, described
