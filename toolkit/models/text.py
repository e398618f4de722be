"""Tiny text classifiers over WordPiece token ids: a 1-D CNN (`text_cnn`) and a small transformer encoder
(`text_transformer`).

Input: int token ids (N, L) of the teacher's tokenizer, padded with `pad_id`; each model masks padding
itself. `keep_ids` prunes the vocabulary to the tokens seen in training: a lookup table inside the model
maps WordPiece ids to rows of a smaller embedding (unseen ids share one row), so a board feeds the
tokenizer's ids unchanged.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from toolkit.models.registry import TEXT_MODELS

__all__ = ["TokenEmbedding", "TextCNN", "TextTransformer", "text_cnn", "text_transformer"]

BERT_VOCAB = 30522  # all-MiniLM-L6-v2's WordPiece vocabulary


class TokenEmbedding(nn.Module):
    """Embeddings of token ids; with `keep_ids`, only those tokens get a row of their own."""

    def __init__(self, vocab_size: int, dim: int, keep_ids: Sequence[int] | None = None, pad_id: int = 0):
        super().__init__()
        self.pad_id = pad_id
        if keep_ids is None:
            self.register_buffer("row", None)
            rows = vocab_size
        else:
            # row 0: padding, row 1: every token not kept, then one row per kept token
            kept = sorted(set(keep_ids) - {pad_id})
            row = torch.ones(vocab_size, dtype=torch.int32)
            row[pad_id] = 0
            row[torch.tensor(kept, dtype=torch.long)] = torch.arange(2, 2 + len(kept), dtype=torch.int32)
            self.register_buffer("row", row)
            rows = 2 + len(kept)
        self.embed = nn.Embedding(rows, dim, padding_idx=0 if keep_ids is not None else pad_id)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.embed(ids if self.row is None else self.row[ids.long()].long())


class TextCNN(nn.Module):
    """Kim-style CNN: token embeddings, 1-D convolutions of several widths, max over time, linear head."""

    takes_token_ids = True

    def __init__(
        self,
        *,
        vocab_size: int = BERT_VOCAB,
        num_classes: int = 2,
        dim: int = 64,
        channels: int = 128,
        kernels: Sequence[int] = (3, 4, 5),
        dropout: float = 0.3,
        keep_ids: Sequence[int] | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.tokens = TokenEmbedding(vocab_size, dim, keep_ids, pad_id)
        self.convs = nn.ModuleList(nn.Conv1d(dim, channels, k, padding=k // 2) for k in kernels)
        self.num_features = channels * len(kernels)
        self.head = nn.Sequential(nn.Dropout(dropout), nn.Linear(self.num_features, num_classes))

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(ids).transpose(1, 2)  # (N, dim, L)
        return torch.cat([torch.relu(conv(x)).amax(dim=2) for conv in self.convs], dim=1)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(ids))


class EncoderLayer(nn.Module):
    """Pre-norm self-attention and MLP, written out so that ONNX and LiteRT see plain matmuls and softmax."""

    def __init__(self, dim: int, heads: int, mlp: int, dropout: float) -> None:
        super().__init__()
        self.heads = heads
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.mlp = nn.Sequential(nn.Linear(dim, mlp), nn.GELU(), nn.Linear(mlp, dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor, bias: torch.Tensor) -> torch.Tensor:
        n, length, dim = x.shape
        q, k, v = self.qkv(self.norm1(x)).reshape(n, length, 3, self.heads, dim // self.heads).unbind(2)
        q, k, v = (t.transpose(1, 2) for t in (q, k, v))  # (N, heads, L, dim/heads)
        scores = q @ k.transpose(-1, -2) / math.sqrt(dim // self.heads) + bias  # bias: -inf-ish on padding
        att = (scores.softmax(-1) @ v).transpose(1, 2).reshape(n, length, dim)
        x = x + self.drop(self.out(att))
        return x + self.drop(self.mlp(self.norm2(x)))


class TextTransformer(nn.Module):
    """A small transformer encoder (learned positions), mean-pooled over the non-padding tokens."""

    takes_token_ids = True

    def __init__(
        self,
        *,
        vocab_size: int = BERT_VOCAB,
        num_classes: int = 2,
        dim: int = 128,
        depth: int = 2,
        heads: int = 4,
        mlp: int = 256,
        max_len: int = 128,
        dropout: float = 0.1,
        keep_ids: Sequence[int] | None = None,
        pad_id: int = 0,
    ) -> None:
        super().__init__()
        self.pad_id = pad_id
        self.tokens = TokenEmbedding(vocab_size, dim, keep_ids, pad_id)
        self.position = nn.Parameter(torch.zeros(1, max_len, dim))
        nn.init.normal_(self.position, std=0.02)
        self.layers = nn.ModuleList(EncoderLayer(dim, heads, mlp, dropout) for _ in range(depth))
        self.norm = nn.LayerNorm(dim)
        self.num_features = dim
        self.head = nn.Linear(dim, num_classes)

    def forward_features(self, ids: torch.Tensor) -> torch.Tensor:
        keep = (ids != self.pad_id).to(torch.float32)  # (N, L)
        x = self.tokens(ids) + self.position[:, : ids.shape[1]]
        bias = ((1.0 - keep) * -1e4)[:, None, None, :]  # a large negative, not -inf: no NaN in int8 kernels
        for layer in self.layers:
            x = layer(x, bias)
        x = self.norm(x)
        return (x * keep[..., None]).sum(1) / keep.sum(1, keepdim=True).clamp(min=1.0)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(self.forward_features(ids))


@TEXT_MODELS.register
def text_cnn(**kwargs) -> TextCNN:
    """1-D CNN over token embeddings: width 64, 128 channels of kernels 3, 4, 5 (~0.8 M params with a
    pruned vocabulary of ~12 k tokens, 2 M with BERT's full 30 k)."""
    return TextCNN(**kwargs)


@TEXT_MODELS.register
def text_transformer(**kwargs) -> TextTransformer:
    """2-layer transformer encoder, width 128, 4 heads."""
    return TextTransformer(**kwargs)
