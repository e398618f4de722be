"""Text to model input: WordPiece token ids from a `tokenizer.json`, with the `tokenizers` package only.

Training, export, parity and a board's `edgekd predict` all encode text here, so a sentence becomes the
same ids on every machine. One int input per model: padding is id `pad_id`, and models mask it
themselves (no attention-mask input to feed on a board).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.errors import InputError, first_line

__all__ = ["load_tokenizer", "encode_texts"]


def load_tokenizer(path: str | Path, seq_len: int) -> Any:
    """A `tokenizers.Tokenizer` from `path` that truncates and pads every text to `seq_len` tokens."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise InputError(f"{path}: reading a tokenizer needs the tokenizers package") from None
    try:
        tok = Tokenizer.from_file(str(path))
    except Exception as e:  # tokenizers raises its own Exception subclass for a bad file
        raise InputError(f"{path}: not a tokenizer.json ({first_line(e, limit=120)})") from None
    tok.enable_truncation(max_length=seq_len)
    pad_id = tok.token_to_id("[PAD]")
    tok.enable_padding(length=seq_len, pad_id=0 if pad_id is None else pad_id, pad_token="[PAD]")
    return tok


def encode_texts(tokenizer: Any, texts: list[str], *, batch: int = 1024) -> np.ndarray:
    """int64 token ids, shape (len(texts), seq_len), with the tokenizer's special tokens and padding."""
    rows = []
    for i in range(0, len(texts), batch):
        rows += [e.ids for e in tokenizer.encode_batch(list(texts[i : i + batch]))]
    width = tokenizer.padding["length"] if tokenizer.padding else max(map(len, rows), default=0)
    out = np.zeros((len(rows), width), dtype=np.int64)
    for n, ids in enumerate(rows):
        out[n, : len(ids)] = ids
    return out
