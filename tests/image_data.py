"""Image folders and a user-style model factory written by tests: real PNG/JPEG files, learnable classes."""

from __future__ import annotations

from pathlib import Path

import numpy as np

CLASS_COLORS = {"cat": (200, 40, 40), "dog": (40, 180, 60), "fox": (50, 60, 210)}

# A user's own model module: any nn.Module factory, at any input size (global pooling).
USER_ZOO = """
import torch
from torch import nn


def tiny_net(num_classes: int = 3, in_chans: int = 3, width: int = 24) -> nn.Module:
    return nn.Sequential(
        nn.Conv2d(in_chans, width, 3, padding=1), nn.BatchNorm2d(width), nn.ReLU(),
        nn.MaxPool2d(2),
        nn.Conv2d(width, 2 * width, 3, padding=1), nn.BatchNorm2d(2 * width), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2 * width, num_classes),
    )
"""


def class_image(rng: np.random.Generator, color: tuple[int, int, int], size: tuple[int, int]) -> np.ndarray:
    """HWC uint8: noise, plus a square of the class colour at a random place (learnable, not trivial)."""
    h, w = size
    img = rng.integers(0, 120, (h, w, 3), dtype=np.uint8)
    side = max(4, min(h, w) // 3)
    y, x = rng.integers(0, h - side), rng.integers(0, w - side)
    img[y : y + side, x : x + side] = np.clip(np.array(color) + rng.integers(-30, 30, 3), 0, 255)
    return img


def write_image_folder(
    root: Path,
    counts: dict[str, int] | None = None,
    *,
    sizes: tuple[tuple[int, int], ...] = ((40, 40), (44, 36)),
    seed: int = 0,
) -> Path:
    """`root/<class>/*.png|jpg`: RGB, uneven class sizes, mixed image sizes, alternating PNG and JPEG."""
    from PIL import Image

    counts = counts or {"cat": 48, "dog": 36, "fox": 24}
    rng = np.random.default_rng(seed)
    for name, n in counts.items():
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(n):
            arr = class_image(rng, CLASS_COLORS[name], sizes[i % len(sizes)])
            suffix = "png" if i % 2 == 0 else "jpg"
            Image.fromarray(arr).save(root / name / f"{name}_{i:04d}.{suffix}", quality=95)
    return root


def write_user_zoo(folder: Path) -> Path:
    """`folder/userzoo.py` with `tiny_net`; add `folder` to PYTHONPATH to import it."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "userzoo.py").write_text(USER_ZOO)
    return folder


def user_model(folder: Path, monkeypatch, *, seed: int = 0):
    """`userzoo` written to `folder` and imported afresh, a seeded `tiny_net` (eval mode) and its weights
    saved as `folder/w.pt`: the user model a config names as `{factory: "userzoo:tiny_net", path: ...}`."""
    import sys

    import torch

    monkeypatch.syspath_prepend(str(write_user_zoo(folder)))
    sys.modules.pop("userzoo", None)
    import userzoo

    torch.manual_seed(seed)
    net = userzoo.tiny_net().eval()
    torch.save(net.state_dict(), folder / "w.pt")
    return net, folder / "w.pt"
