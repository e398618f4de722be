"""File helpers shared by the exporters: atomic writes and hashes."""

from __future__ import annotations

import contextlib
import logging
import os
import re
import warnings
from collections.abc import Iterator

from benchmarks.files import atomic_path, sha256_file  # noqa: F401  (export's writers use them from here)

__all__ = ["atomic_path", "sha256_file", "quiet_converters", "native_stderr_hidden", "failure_reason"]


VERBOSE_ENV = "EDGEKD_VERBOSE"  # set by `edgekd --verbose`: third-party log lines are shown


@contextlib.contextmanager
def native_stderr_hidden() -> Iterator[None]:
    """Send what C++ libraries write to fd 2 (absl `I0000 ...` lines, TFLite's XNNPACK notice) to a
    discarded temporary file, unless EDGEKD_VERBOSE is set. edgekd prints nothing inside this block."""
    import sys
    import tempfile

    if os.environ.get(VERBOSE_ENV):
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            yield
        finally:
            sys.stderr.flush()
            os.dup2(saved, 2)
            os.close(saved)


@contextlib.contextmanager
def quiet_converters() -> Iterator[None]:
    """Silence the converters' chatter (deprecations, absl/TF log lines; not errors, which are raised) so
    the CLI's own lines stay readable; `edgekd --verbose` shows it."""
    loggers = [logging.getLogger(name) for name in ("torch.onnx", "torchao", "absl")]
    levels = [log.level for log in loggers]
    verbose = bool(os.environ.get(VERBOSE_ENV))
    for log in loggers:  # e.g. "torchvision is not installed. Skipping torchvision::nms"
        log.setLevel(logging.DEBUG if verbose else logging.ERROR)
    try:
        with warnings.catch_warnings(), native_stderr_hidden():
            if not verbose:
                warnings.simplefilter("ignore", FutureWarning)
                warnings.simplefilter("ignore", DeprecationWarning)
                warnings.simplefilter("ignore", UserWarning)
            yield
    finally:
        for log, level in zip(loggers, levels, strict=True):
            log.setLevel(level)


_ANSI = re.compile(r"\x1b\[[0-9;]*m")
# "op='aten.cummax', overload='default'" (torch.onnx) or "aten.cummax.default" (litert-torch lowering).
_OP_OVERLOAD = re.compile(r"op='(aten\.\w+)', overload='(\w+)'")
_OP_NAME = re.compile(r"\b(aten\.\w+(?:\.\w+)?)")


def failure_reason(exc: BaseException) -> str:
    """One line for a converter exception: the unsupported op when one is named anywhere in the chain."""
    texts, seen = [], set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        texts.append(_ANSI.sub("", str(exc)))
        exc = exc.__cause__ or exc.__context__
    full = "\n".join(texts)
    first = next((line.strip() for line in full.splitlines() if line.strip()), "unknown error")
    if m := _OP_OVERLOAD.search(full):
        return f"unsupported op {m.group(1)}.{m.group(2)} ({first})"
    if m := _OP_NAME.search(full):
        return f"unsupported op {m.group(1)} ({first})"
    return first
