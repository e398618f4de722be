"""The four stages, each reading the files the previous one wrote in a run directory."""

from toolkit.pipeline.rundir import RunDir

__all__ = ["RunDir"]
