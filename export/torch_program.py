"""torch -> `.pt2` (a saved `torch.export` ExportedProgram): the teacher's own framework as a baseline."""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

from export._files import atomic_path, failure_reason
from toolkit.errors import ExportError

__all__ = ["export_program"]


def export_program(model, sample, dst: str | Path, *, dynamic_batch: bool = True) -> Path:
    """Save `model` traced on `sample` as an ExportedProgram; `torch.export.load` runs it without edgekd."""
    import torch

    model = model.eval()
    dynamic_shapes = None
    if dynamic_batch:
        dynamic_shapes = ({0: torch.export.Dim("batch", min=1, max=4096)},)
        # torch.export specializes a size-1 dimension to the constant 1, so trace with a batch of 2.
        sample = torch.cat([sample[:1], sample[:1]])
    dst = Path(dst)
    # The private folder lies outside the bundle: a killed export leaves no folder there to be archived.
    with atomic_path(dst) as tmp, tempfile.TemporaryDirectory(prefix="edgekd-pt2-") as work:
        try:
            program = torch.export.export(model, (sample,), dynamic_shapes=dynamic_shapes)
            # The archive's root folder is named after the file torch writes: write it under the final
            # name (in a private folder), so the archive holds `teacher/...`, never a temporary name.
            torch.export.save(program, str(Path(work) / dst.name))
        except Exception as e:
            raise ExportError(f"{dst}: torch.export failed: {failure_reason(e)}") from e
        shutil.move(Path(work) / dst.name, tmp)  # another file system, perhaps: copied then
    return dst
