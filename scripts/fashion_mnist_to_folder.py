"""Write the built-in Fashion-MNIST as PNG files in an image folder, split as the IDX path splits it.

    python scripts/fashion_mnist_to_folder.py OUT [--root /usr/share/datasets/fashion-mnist] [--seed 0]

OUT/train, OUT/val and OUT/test each hold one folder per class (`0_T-shirt_top`, `1_Trouser`, ...: the
index prefix keeps the IDX label order, since an image folder's classes are its sorted folder names). val
is the same seeded hold-out `load_idx_splits` makes, so `data.kind: image_folder` on OUT trains on the
same images as `data.kind: idx` with the same seed and `val_size`.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from PIL import Image

from toolkit.data import DEFAULT_FASHION_MNIST_ROOT, load_idx_splits


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("out", type=Path)
    parser.add_argument("--root", type=Path, default=DEFAULT_FASHION_MNIST_ROOT)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--val-size", type=int, default=5000)
    args = parser.parse_args(argv)
    s = load_idx_splits(args.root, val_size=args.val_size, seed=args.seed)
    folders = [f"{i}_{name.replace('/', '_').replace(' ', '_')}" for i, name in enumerate(s.labels)]
    for split, x, y in (
        ("train", s.train_x, s.train_y),
        ("val", s.val_x, s.val_y),
        ("test", s.test_x, s.test_y),
    ):
        for i, (image, label) in enumerate(zip(x, y, strict=True)):
            folder = args.out / split / folders[label]
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(image[0]).save(folder / f"{i:05d}.png")
        print(f"{split}: {len(y)} images", file=sys.stderr)
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
