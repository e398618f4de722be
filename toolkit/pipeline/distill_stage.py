"""Stage 1: train or load the teacher(s), distill the student per seed, train the scratch control, into the
run directory's distill/ (the work is `toolkit.distill.service`'s)."""

from __future__ import annotations

from toolkit.config import RunConfig
from toolkit.rundir import RunDir
from toolkit.rundir.summary import DistillSummary

__all__ = ["run_distill"]


def run_distill(
    cfg: RunConfig, run: RunDir, *, on_step=None, resume: bool = False, teachers_only: bool = False
) -> DistillSummary:
    """Teachers (trained, reused or loaded), then per seed the KD and scratch students; summary.json (its
    `DistillSummary` returned, on every rank)."""
    from toolkit.distill.service import distill

    return distill(cfg, run, on_step=on_step, resume=resume, teachers_only=teachers_only)
