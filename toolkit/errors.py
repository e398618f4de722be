"""Error types the CLI turns into one-line messages (the library never prints or exits).

The root types live in `benchmarks.errors`, so a board install without toolkit raises the same ones.
"""

from __future__ import annotations

from benchmarks.errors import EdgekdError, InputError, first_line

__all__ = [
    "EdgekdError",
    "InputError",
    "ConfigError",
    "DataError",
    "ExportError",
    "RunDirError",
    "first_line",
]


class ConfigError(InputError):
    """A config file or option is invalid."""


class DataError(InputError):
    """A data file is missing or malformed."""


class ExportError(EdgekdError):
    """A model could not be converted or failed its parity check."""


class RunDirError(EdgekdError):
    """A stage found its inputs missing in the run directory."""
