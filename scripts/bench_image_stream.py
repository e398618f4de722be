"""Stream a large generated image folder through student training: peak memory and images/s.

    python scripts/bench_image_stream.py [--dir /tmp/edgekd-stream] [--images 50000] [--side 96] [--workers 0]

Writes (once) `--images` RGB JPEGs of `--side` px in 10 classes, loads them with `data.kind: image_folder`
(which decodes them into the uint8 cache: ~1.4 GB at 50,000 x 96 x 96 x 3), then trains the default
student for two epochs reading batches from that cache. Prints the load rate (header scan, decoding every
split, channel statistics), images/s of the first epoch with the load counted in and of the second, and
peak RSS (the kernel's high-water mark) of this process and, with --workers, of the largest worker, each
labelled: with workers the footprint is the process plus every worker (target: under 1 GB in all). The
cache was just written, so both epochs likely read it from the page cache, not from disk.
"""

from __future__ import annotations

import argparse
import resource
import shutil
import sys
import time
from pathlib import Path

import numpy as np

from toolkit.config import RunConfig
from toolkit.data import load_splits
from toolkit.distill.train import TrainSettings, train_model
from toolkit.models import ModelSpec, create_model

TARGET_RSS_MB = 1024


def write_folder(root: Path, n: int, side: int, seed: int = 0) -> None:
    """`n` JPEGs in 10 class folders: noise plus a class-coloured square (skipped when already there)."""
    from PIL import Image

    if (root / ".complete").is_file():
        return
    rng = np.random.default_rng(seed)
    colors = rng.integers(0, 256, (10, 3))
    for i in range(n):
        c = i % 10
        img = rng.integers(0, 100, (side, side, 3), dtype=np.uint8)
        y, x = rng.integers(0, side - side // 3, 2)
        img[y : y + side // 3, x : x + side // 3] = colors[c]
        folder = root / f"class_{c}"
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(folder / f"{i:06d}.jpg", quality=90)
    (root / ".complete").write_text(str(n))


def peak_rss_mb() -> tuple[float, float]:
    """(this process, largest child) peak resident set in MB (Linux reports ru_maxrss in KiB)."""
    own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    children = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    return own, children


def main(argv: list[str] | None = None) -> int:
    raw = argparse.RawDescriptionHelpFormatter
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=raw)
    parser.add_argument("--dir", type=Path, default=Path("/tmp/edgekd-stream"))
    parser.add_argument("--images", type=int, default=50_000)
    parser.add_argument("--side", type=int, default=96)
    parser.add_argument("--workers", type=int, default=0, help="DataLoader workers (0: one process)")
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    write_folder(args.dir / "images", args.images, args.side)
    print(f"folder: {args.images} JPEGs of {args.side} px ready in {time.perf_counter() - t0:.0f} s")
    data = {"kind": "image_folder", "root": str(args.dir / "images"), "cache_dir": str(args.dir / "cache")}
    data |= {"val_fraction": 0.02, "test_fraction": 0.02, "workers": args.workers}
    cfg = RunConfig.model_validate({"data": data})
    shutil.rmtree(args.dir / "cache", ignore_errors=True)  # load_splits then decodes every image again
    t0 = time.perf_counter()
    splits = load_splits(cfg.data, seed=0)
    load_s = time.perf_counter() - t0
    n_all = len(splits.train_y) + len(splits.val_y) + len(splits.test_y)
    decoded_gb = n_all * int(np.prod(splits.input_shape)) / 1e9
    print(
        f"load (scan, decode all splits into the cache, channel stats): {load_s:.1f} s, "
        f"{n_all / load_s:,.0f} images/s, {decoded_gb:.2f} GB decoded"
    )
    spec = ModelSpec(arch="cnn_student", input_shape=splits.input_shape, labels=splits.labels)
    model = create_model(spec)
    settings = TrainSettings(epochs=2, batch_size=args.batch_size, lr=5e-3)
    x = splits.model_input(splits.train_x)
    history = train_model(model, x, splits.train_y, settings, workers=args.workers)
    for row in history:
        rate = len(splits.train_y) / row["seconds"]
        print(
            f"epoch {row['epoch']}: {row['seconds']:.1f} s, {rate:,.0f} images/s, "
            f"train accuracy {100 * row['train_accuracy']:.1f}%"
        )
    first = load_s + history[0]["seconds"]
    print(
        f"first epoch with the load counted in: {first:.1f} s, {len(splits.train_y) / first:,.0f} images/s; "
        f"second epoch, from the cache: {len(splits.train_y) / history[1]['seconds']:,.0f} images/s"
    )
    own, child = peak_rss_mb()
    workers = f", largest worker {child:.0f} MB (counted once per worker)" if args.workers else ""
    total = own + args.workers * child
    verdict = "meets" if total < TARGET_RSS_MB else "misses"
    print(f"peak RSS: this process {own:.0f} MB{workers}; {total:.0f} MB in all", end=" ")
    print(f"({verdict} < {TARGET_RSS_MB} MB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
