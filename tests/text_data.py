"""A small sentiment corpus, a WordPiece tokenizer.json and a random tiny BERT, all written by the tests, and
one text run through the CLI: the text path end to end without `make text-data`."""

from __future__ import annotations

import csv
import os
from pathlib import Path

import numpy as np
import pytest

GOOD = ["great", "moving", "funny", "brilliant", "charming", "warm"]
BAD = ["dull", "boring", "lifeless", "clumsy", "tedious", "flat"]
FILLER = ["the", "film", "story", "actors", "plot", "is", "was", "and", "a", "very", "quite", "ending"]
SPECIAL = ["[PAD]", "[UNK]", "[CLS]", "[SEP]"]


def write_corpus(path: Path, n: int = 1200, seed: int = 0) -> Path:
    """`n` labelled sentences in a CSV (columns review, sentiment): filler words and one to three
    sentiment words, one in five of them from the other class."""
    rng = np.random.default_rng(seed)
    with open(path, "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["review", "sentiment"])
        for i in range(n):
            label = i % 2
            words = list(rng.choice(FILLER, rng.integers(4, 10)))
            for _ in range(rng.integers(1, 4)):
                own = rng.random() > 0.2
                words.insert(rng.integers(0, len(words)), rng.choice(GOOD if label == own else BAD))
            w.writerow([" ".join(words).capitalize() + ".", "positive" if label else "negative"])
    return path


def torch_labels(run: Path, csv_path: Path, *, n: int, seed: int) -> tuple[list[str], list[int]]:
    """`n` new sentences written to `csv_path`, and the labels the run's torch KD student gives them."""
    import torch

    from benchmarks.text import encode_texts, load_tokenizer
    from toolkit.distill.checkpoints import load_checkpoint

    corpus = write_corpus(csv_path, n=n, seed=seed)
    texts = [line.rsplit(",", 1)[0] for line in corpus.read_text().splitlines()[1:]]  # no commas in texts
    model, _, _ = load_checkpoint(run / "distill" / "student_kd.pt")
    ids = encode_texts(load_tokenizer(run / "bundle" / "tokenizer.json", 16), texts)
    with torch.no_grad():
        return texts, model(torch.from_numpy(ids)).argmax(1).tolist()


def write_tokenizer(path: Path) -> Path:
    """A BERT-style WordPiece tokenizer.json over the corpus' words (built with the tokenizers package)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, processors

    vocab = {t: i for i, t in enumerate(SPECIAL + GOOD + BAD + FILLER + [".", "##s"])}
    tok = Tokenizer(models.WordPiece(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.BertNormalizer(lowercase=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", special_tokens=[("[CLS]", 2), ("[SEP]", 3)]
    )
    tok.save(str(path))
    return path


def write_bert(folder: Path, vocab_size: int) -> Path:
    """A random one-layer BERT saved as the MiniLM folder is (config.json + model.safetensors)."""
    import torch
    import transformers

    config = transformers.BertConfig(
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    torch.manual_seed(0)
    transformers.BertModel(config).save_pretrained(folder)
    return folder


def text_config(root: Path, *, epochs: int = 4) -> Path:
    """A run config over the files above: text_csv, the tiny BERT teacher, a small pruned text_cnn."""
    import yaml

    vocab = len(SPECIAL + GOOD + BAD + FILLER) + 2
    corpus = write_corpus(root / "reviews.csv")
    cfg = {
        "seed": 0,
        "data": {
            "kind": "text_csv",
            "root": str(corpus),
            "text_column": "review",
            "label_column": "sentiment",
            "tokenizer": str(write_tokenizer(root / "tokenizer.json")),
            "seq_len": 16,
            "test_fraction": 0.2,
        },
        "teacher": {"arch": "minilm", "kwargs": {"path": str(write_bert(root / "bert", vocab))}, "lr": 0.01},
        "student": {
            "arch": "text_cnn",
            "kwargs": {"prune_vocab": True, "dim": 16, "channels": 16},
            "epochs": epochs,
            "batch_size": 32,
            "lr": 0.005,
        },
        "distill": {"temperature": 2.0, "alpha": 0.5},
        "export": {
            "formats": ["onnx", "tflite"],
            "precisions": ["fp32", "int8", "dynamic-int8"],
            "teacher_precisions": ["fp32"],
            "scratch_precisions": ["fp32"],
            "tflite_precisions": ["fp32", "int8"],
            "sensitivity": False,
        },
        "bench": {"threads": [1], "warmup": 2, "min_runs": 10, "min_time_s": 0.0, "repeats": 1},
    }
    path = root / "text.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


@pytest.fixture(scope="session")
def text_run(tmp_path_factory) -> Path:
    """`edgekd run` on the text config above (~1 min); sentence embeddings cached in its own folder."""
    pytest.importorskip("transformers")
    from typer.testing import CliRunner

    from toolkit.cli.main import app

    root = tmp_path_factory.mktemp("text")
    old = os.environ.get("XDG_CACHE_HOME")
    os.environ["XDG_CACHE_HOME"] = str(root / "cache")
    try:
        result = CliRunner().invoke(app, ["run", str(text_config(root)), "--out", str(root / "run")])
    finally:
        os.environ.pop("XDG_CACHE_HOME") if old is None else os.environ.update(XDG_CACHE_HOME=old)
    assert result.exit_code == 0, result.output + repr(result.exception)
    (root / "run" / "output.txt").write_text(result.output)
    return root / "run"
