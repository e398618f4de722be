"""Stored augmented views (as in FKD, Shen & Xing 2022): `count` shift/flip (and random-erasing) draws per
training image (or, for token ids, token masks), fixed once, with the teacher's logits on each computed
once; a student replays one stored view per example per epoch against its stored soft targets, so an
epoch costs about what plain training costs."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from toolkit.errors import InputError

__all__ = [
    "ViewSpec",
    "Views",
    "SoftTargets",
    "shift_flip",
    "mask_tokens",
    "erase_boxes",
    "draw_views",
    "teacher_view_logits",
]


@dataclass(frozen=True)
class ViewSpec:
    """How the views are drawn and stored. View 0 of every image is the image itself."""

    count: int = 4
    shift: int = 2  # pixels, zero padding
    flip: bool = True
    top_k: int | None = None  # store only the k largest logits per view (many classes); None: all
    seed: int = 0
    # Token ids (N, L): each token of a view other than `keep_ids` (padding, [CLS], [SEP]) is replaced by
    # `mask_id` with probability `mask` (as in Tang et al. 2019's masking augmentation); 0: images.
    mask: float = 0.0
    mask_id: int = 0
    keep_ids: tuple[int, ...] = ()
    # Images: the probability that a view (other than view 0) has one random box set to 0, the normalized
    # mean (random erasing, Zhong et al. 2020: 2-25 % of the area, aspect 0.3-3.3); the image analogue of
    # the token masks.
    erase: float = 0.0

    def to_dict(self) -> dict:
        d = asdict(self)
        if not self.erase:  # the cache keys of views drawn before erasing existed stay as they were
            del d["erase"]
        return d


def shift_flip(
    x: torch.Tensor, oy: torch.Tensor, ox: torch.Tensor, flip: torch.Tensor, shift: int
) -> torch.Tensor:
    """Each NCHW image cropped at offset (oy, ox) of its `shift`-padded self, then flipped where `flip`."""
    b, _, h, w = x.shape
    padded = F.pad(x, (shift, shift, shift, shift))
    rows = oy.long()[:, None] + torch.arange(h)
    cols = ox.long()[:, None] + torch.arange(w)
    cols = torch.where(flip[:, None], cols.flip(1), cols)
    out = padded[torch.arange(b)[:, None, None], :, rows[:, :, None], cols[:, None, :]]  # (B, H, W, C)
    return out.permute(0, 3, 1, 2).contiguous()


def mask_tokens(x: torch.Tensor, hit: torch.Tensor, spec: ViewSpec) -> torch.Tensor:
    """Token ids `x` (B, L) with the positions `hit` replaced by `spec.mask_id`, except `spec.keep_ids`."""
    keep = torch.isin(x, torch.tensor(spec.keep_ids, dtype=x.dtype))
    return torch.where(hit & ~keep, torch.full_like(x, spec.mask_id), x)


def erase_boxes(x: torch.Tensor, box: torch.Tensor) -> torch.Tensor:
    """NCHW images with one box each set to 0; `box` (B, 4) holds top, left, height, width as fractions of
    the image's height and width (height 0: nothing erased)."""
    h, w = x.shape[-2:]
    scale = torch.tensor([h, w, h, w], dtype=torch.float32)
    top, left, bh, bw = (box.float() * scale).round().long().unbind(1)
    rows, cols = torch.arange(h), torch.arange(w)
    inside_rows = (rows >= top[:, None]) & (rows < (top + bh)[:, None])
    inside_cols = (cols >= left[:, None]) & (cols < (left + bw)[:, None])
    return x.masked_fill((inside_rows[:, :, None] & inside_cols[:, None, :])[:, None], 0.0)


def _draw_boxes(gen: torch.Generator, size: tuple[int, int], p: float) -> torch.Tensor:
    """(N, count, 4) float16 erase boxes as fractions (top, left, height, width); none in view 0."""
    area = torch.empty(size).uniform_(0.02, 0.25, generator=gen)
    aspect = torch.empty(size).uniform_(np.log(0.3), np.log(1 / 0.3), generator=gen).exp()
    bh, bw = (area * aspect).sqrt().clamp(max=1), (area / aspect).sqrt().clamp(max=1)
    top = torch.rand(size, generator=gen) * (1 - bh)
    left = torch.rand(size, generator=gen) * (1 - bw)
    on = torch.rand(size, generator=gen) < p
    on[:, 0] = False
    return torch.stack([top, left, bh * on, bw * on], dim=-1).half()


@dataclass
class Views:
    """Per (image, view) crop offsets and flips, (N, count) each; for token ids, per (example, view) token
    masks, (N, count, L); with `spec.erase`, per (image, view) erase boxes, (N, count, 4)."""

    spec: ViewSpec
    oy: torch.Tensor
    ox: torch.Tensor
    flip: torch.Tensor
    masked: torch.Tensor | None = None
    boxes: torch.Tensor | None = None

    def apply(self, x: torch.Tensor, idx: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """The stored `view` of each example of the batch `x` (rows `idx` of the training set)."""
        if self.masked is not None:
            return mask_tokens(x, self.masked[idx, view], self.spec)
        out = shift_flip(x, self.oy[idx, view], self.ox[idx, view], self.flip[idx, view], self.spec.shift)
        return out if self.boxes is None else erase_boxes(out, self.boxes[idx, view])


def draw_views(n: int, spec: ViewSpec, length: int = 0) -> Views:
    """`spec.count` seeded draws per example (token masks over `length` positions when `spec.mask`);
    view 0 is the unaugmented example."""
    if spec.count < 1 or spec.shift < 0 or not 0 <= spec.mask < 1 or not 0 <= spec.erase < 1:
        raise InputError(
            "views: count must be >= 1, shift >= 0, mask and erase in [0, 1), "
            f"got {spec.count}, {spec.shift}, {spec.mask}, {spec.erase}"
        )
    gen = torch.Generator().manual_seed(spec.seed)
    size = (n, spec.count)
    oy = torch.randint(0, 2 * spec.shift + 1, size, generator=gen, dtype=torch.uint8)
    ox = torch.randint(0, 2 * spec.shift + 1, size, generator=gen, dtype=torch.uint8)
    flip = (torch.rand(size, generator=gen) < 0.5) & spec.flip
    oy[:, 0], ox[:, 0], flip[:, 0] = spec.shift, spec.shift, False
    masked = None
    if spec.mask > 0:
        masked = torch.rand((*size, length), generator=gen) < spec.mask
        masked[:, 0] = False
    # drawn last, so views without erasing keep the offsets, flips and masks they had before it existed
    boxes = _draw_boxes(gen, size, spec.erase) if spec.erase > 0 else None
    return Views(spec, oy, ox, flip, masked, boxes)


@dataclass
class SoftTargets:
    """Stored teacher logits per (image, view): all of them in float16, or the top k with the others
    stored as one value (their log-mean-exp, so the softmax keeps their total mass at T = 1)."""

    values: np.ndarray  # (N, V, C) or (N, V, k) float16
    classes: int
    indices: np.ndarray | None = None  # (N, V, k) int16 with top-k
    rest: np.ndarray | None = None  # (N, V) float16 with top-k

    @property
    def bytes_per_image(self) -> int:
        parts = [self.values, self.indices, self.rest]
        return sum(p.nbytes for p in parts if p is not None) // len(self.values)

    def logits(self, idx: torch.Tensor, view: torch.Tensor) -> torch.Tensor:
        """(B, C) float32 logits of the given views."""
        i, v = idx.numpy(), view.numpy()
        vals = torch.from_numpy(self.values[i, v].astype(np.float32))
        if self.indices is None:
            return vals
        out = torch.from_numpy(self.rest[i, v].astype(np.float32))[:, None].repeat(1, self.classes)
        return out.scatter_(1, torch.from_numpy(self.indices[i, v].astype(np.int64)), vals)

    @classmethod
    def from_logits(cls, logits: np.ndarray, top_k: int | None) -> SoftTargets:
        """Compress (N, V, C) float32 logits: float16, and the top k only when k < C."""
        n, v, c = logits.shape
        if top_k is None or top_k >= c:
            return cls(logits.astype(np.float16), c)
        order = np.argpartition(-logits, top_k - 1, axis=2)
        top, others = order[..., :top_k], order[..., top_k:]
        rest = np.take_along_axis(logits, others, axis=2).astype(np.float64)
        peak = rest.max(axis=2, keepdims=True)
        lme = (peak[..., 0] + np.log(np.exp(rest - peak).mean(axis=2))).astype(np.float16)
        vals = np.take_along_axis(logits, top, axis=2).astype(np.float16)
        return cls(vals, c, top.astype(np.int16), lme)


@torch.no_grad()
def teacher_view_logits(
    model: nn.Module, x: np.ndarray, views: Views, *, batch_size: int = 512, device: str = "cpu"
) -> np.ndarray:
    """(N, count, C) float32 logits of `model` (eval mode) on every stored view of float32 NCHW `x` (or of
    token ids (N, L))."""
    model.eval().to(device)
    n, k = len(x), views.spec.count
    out = None
    for start in range(0, n, batch_size):
        idx = torch.arange(start, min(start + batch_size, n))
        xb = torch.from_numpy(np.asarray(x[idx.numpy()]))
        for v in range(k):
            logits = model(views.apply(xb, idx, torch.full_like(idx, v)).to(device)).float().cpu().numpy()
            if out is None:
                out = np.empty((n, k, logits.shape[1]), np.float32)
            out[start : start + len(idx), v] = logits
    return out


def read_soft_targets(path: Path) -> tuple[SoftTargets, str]:
    """A `{teacher}_views.npz` that distill wrote: its stored logits and the key they were computed for."""
    with np.load(path) as z:
        parts = {k: z[k] if k in z else None for k in ("values", "indices", "rest")}
        return SoftTargets(classes=int(z["classes"]), **parts), str(z["key"])
