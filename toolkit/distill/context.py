"""What every model of one `edgekd distill` run shares: config, splits, run dir, device, rank (one process or
several under `torchrun`, where rank 0 alone writes files)."""

from __future__ import annotations

import os

from benchmarks.files import atomic_path
from toolkit.config import RunConfig
from toolkit.data import DataSplits
from toolkit.rundir import RunDir

__all__ = ["load_splits"]


def load_splits(cfg: RunConfig) -> DataSplits:
    """The run's train/val/test splits, read as its config's data section and seed say."""
    from toolkit.data import load_splits as load_data

    return load_data(cfg.data, cfg.seed)


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
