"""`edgekd export --model`: a user's own torch model, bundled without distilling.

The model goes through the run directory like a loaded teacher (it is the bundle's baseline, `teacher`, in
every configured precision), so export, bench and report take the result unchanged.
"""

from __future__ import annotations

from pathlib import Path

from toolkit.config import RunConfig, TeacherConfig, TeacherSource, load_config, save_config
from toolkit.errors import ConfigError
from toolkit.models.teacher_kinds import LOADERS
from toolkit.rundir import RunDir

__all__ = ["model_run"]


def model_run(model: str, weights: Path | None, data_config: Path, out: Path) -> tuple[RunConfig, RunDir]:
    """The config and run directory that load `model` (a factory, `.pt2` or TorchScript file) on the data
    and export settings of `data_config`; no student is trained."""
    src = TeacherSource.parse(model)
    if weights is not None:
        if src.kind == "auto" or not LOADERS.get(src.kind).weights_file:
            raise ConfigError(f"{weights}: --weights goes with --model package.module:factory, not a file")
        src.path = weights
    base = load_config(data_config)
    cfg = base.model_copy(update={"teachers": [TeacherConfig(source=src)]})
    cfg.distill = cfg.distill.model_copy(update={"scratch_control": False})
    run = RunDir(out)
    run.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run.config)
    return cfg, run
