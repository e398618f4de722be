"""Error types the CLI turns into one-line messages (the library never prints or exits)."""

from __future__ import annotations

__all__ = ["EdgekdError", "ConfigError", "DataError", "ExportError", "RunDirError"]


class EdgekdError(Exception):
    """Base of every error edgekd reports to users as `error: <message>`."""


class ConfigError(EdgekdError, ValueError):
    """A config file or option is invalid."""


class DataError(EdgekdError, ValueError):
    """A data file is missing or malformed."""


class ExportError(EdgekdError):
    """A model could not be converted or failed its parity check."""


class RunDirError(EdgekdError):
    """A stage found its inputs missing in the run directory."""
