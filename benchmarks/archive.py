"""Bundle archives (`bundle.tar.gz`): recognize one and extract it safely into a temporary folder."""

from __future__ import annotations

import gzip
import os
import sys
import tarfile
import tempfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from benchmarks.errors import InputError

__all__ = ["is_bundle_archive", "open_bundle_archive"]


ARCHIVE_SUFFIXES = (".tar.gz", ".tgz")  # what `edgekd export` writes beside the bundle, and its short form
# Why tarfile's "data" filter refused a member, in words that do not name the temporary folder. By name:
# Pythons before 3.10.12 / 3.11.4 have no filters, and `import benchmarks` must still work there.
_REFUSED = {
    "AbsolutePathError": "has an absolute path",
    "OutsideDestinationError": "would be written outside the bundle folder",
    "AbsoluteLinkError": "links to the absolute path {link}",
    "LinkOutsideDestinationError": "links to {link}, outside the bundle folder",
    "SpecialFileError": "is a device or FIFO, not a regular file",
}


def is_bundle_archive(path: str | Path) -> bool:
    """Whether `path` is a file named like a bundle archive (`.tar.gz` or `.tgz`)."""
    return str(path).lower().endswith(ARCHIVE_SUFFIXES) and Path(path).is_file()


def _member_filter(member: tarfile.TarInfo, dest: str) -> tarfile.TarInfo | None:
    # The "data" filter strips a leading "/" and extracts the member anyway; a bundle never has one.
    if member.name.startswith(("/", os.sep)) or os.path.isabs(member.name):
        raise tarfile.AbsolutePathError(member)
    return tarfile.data_filter(member, dest)


def _refusal(archive: Path, error: tarfile.FilterError) -> InputError:
    member = error.tarinfo
    name = member.name if member.name.isprintable() else repr(member.name)  # one line, whatever the name
    link = member.linkname if member.linkname.isprintable() else repr(member.linkname)
    known = _REFUSED.get(type(error).__name__)
    reason = known.format(link=link) if known is not None else " ".join(str(error).split())
    return InputError(f"{archive}: refused member {name}: {reason}")


def _archive_bundle(folder: Path, archive: Path) -> Path:
    """The extracted bundle: the folder itself, or the one folder in it (`edgekd export` writes `bundle/`)."""
    if (folder / "manifest.json").is_file():
        return folder
    entries = list(folder.iterdir())
    if len(entries) == 1 and (entries[0] / "manifest.json").is_file():
        return entries[0]
    raise InputError(
        f"{archive}: no manifest.json at its top or in its one top folder (is it an edgekd bundle archive?)"
    )


@contextmanager
def open_bundle_archive(path: str | Path) -> Iterator[Path]:
    """Extract a bundle archive into a temporary folder, removed on exit; yield the bundle folder in it.

    Members with absolute or escaping paths, links out of the folder and device files raise InputError.
    """
    archive = Path(path)
    if not hasattr(tarfile, "data_filter"):
        raise InputError(
            f"{archive}: Python {sys.version.split()[0]} cannot extract archives safely (3.10.12+, 3.11.4+ "
            "and 3.12+ can); extract it with `tar xzf` and benchmark the folder"
        )
    with tempfile.TemporaryDirectory(prefix="edgekd-archive-") as tmp:
        try:
            with tarfile.open(archive, "r:gz", errorlevel=1) as tar:  # errorlevel 1: refusals raise
                tar.extractall(tmp, filter=_member_filter)
        except tarfile.FilterError as exc:
            raise _refusal(archive, exc) from exc
        except (tarfile.TarError, EOFError, zlib.error, gzip.BadGzipFile) as exc:
            why = " ".join(str(exc).split())  # one line
            raise InputError(f"{archive}: not a readable .tar.gz bundle archive ({why})") from exc
        yield _archive_bundle(Path(tmp), archive)
