"""The text teacher: a sentence-transformers encoder (all-MiniLM-L6-v2) read from a local folder, mean-pooled
as sentence-transformers pools it, with a linear classification head; one int input of token ids."""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from toolkit.models.registry import TEXT_MODELS

__all__ = ["SentenceClassifier", "load_encoder", "minilm"]


def load_encoder(model_dir: Path) -> nn.Module:
    """The BERT encoder in `model_dir` (config.json + model.safetensors), never from the internet."""
    from transformers import AutoModel
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars: the library never prints
    hf_logging.set_verbosity_error()

    if not (Path(model_dir) / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (run `make text-data`)")
    return AutoModel.from_pretrained(str(model_dir), local_files_only=True).eval()


class SentenceClassifier(nn.Module):
    """Encoder, mean pooling over the non-padding tokens, linear head. With `frozen_encoder`, only the
    head trains: the pipeline fits it on sentence embeddings computed once (`toolkit.distill.head`)."""

    takes_token_ids = True

    def __init__(
        self, encoder: nn.Module, num_classes: int, pad_id: int = 0, frozen_encoder: bool = True
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.frozen_encoder = frozen_encoder
        encoder.requires_grad_(not frozen_encoder)
        self.pad_id = pad_id
        self.num_features = encoder.config.hidden_size
        self.head = nn.Linear(self.num_features, num_classes)

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        """The sentence embedding (what sentence-transformers' mean pooling gives)."""
        ids = ids.long()
        keep = (ids != self.pad_id).long()
        hidden = self.encoder(input_ids=ids, attention_mask=keep).last_hidden_state
        weight = keep.unsqueeze(-1).to(hidden.dtype)
        return (hidden * weight).sum(1) / weight.sum(1).clamp(min=1e-9)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(ids))


@TEXT_MODELS.register
def minilm(
    *, num_classes: int = 2, path: str | None = None, pad_id: int = 0, vocab_size: int | None = None
) -> SentenceClassifier:
    """all-MiniLM-L6-v2 from `path` (default: where `make text-data` put it), frozen, with a linear head;
    `vocab_size`: the tokenizer's, checked against the encoder's."""
    from toolkit.data.text import DEFAULT_TEXT_ROOT, TEXT_DEFAULT_FILES

    model_dir = Path(path) if path else DEFAULT_TEXT_ROOT / TEXT_DEFAULT_FILES["minilm"]
    try:
        encoder = load_encoder(model_dir)
    except FileNotFoundError as e:
        from toolkit.errors import ConfigError

        raise ConfigError(str(e)) from None
    if vocab_size is not None and vocab_size > encoder.config.vocab_size:
        from toolkit.errors import ConfigError

        raise ConfigError(
            f"{model_dir}: the encoder knows {encoder.config.vocab_size} token ids, the data's tokenizer "
            f"{vocab_size}; use the tokenizer.json of the encoder's folder"
        )
    return SentenceClassifier(encoder, num_classes, pad_id)
