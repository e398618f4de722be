"""`edgekd predict`: classify image files (or texts) with one file of a bundle, as the board runs it.

numpy only at import; Pillow is imported when an image is decoded, `tokenizers` when a text bundle's
tokenizer is read, the runtime when the file is loaded.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.backends import available, backend_for, load_backend
from benchmarks.errors import InputError
from benchmarks.manifest import Manifest, ModelEntry, TokenPreprocessing, check_files, read_manifest
from benchmarks.preprocess import decode_image, image_steps, to_float

__all__ = ["Label", "Prediction", "PredictResult", "choose_entry", "softmax", "top_labels", "predict"]

CHUNK = 64  # images decoded and run at a time by a file with a dynamic batch axis


@dataclass(frozen=True)
class Label:
    label: str
    index: int
    probability: float


@dataclass(frozen=True)
class Prediction:
    image: str  # the image file, or the text
    top: list[Label]
    kind: str = "image"  # or "text"


@dataclass(frozen=True)
class PredictResult:
    """The file that ran (its name in the manifest), the backend that ran it and one prediction per image."""

    file: str
    backend: str
    predictions: list[Prediction]

    def to_dict(self) -> dict[str, Any]:
        """The `--json` document: file, the backend that ran it, and predictions (label, index, probability,
        best first)."""
        return {
            "file": self.file,
            "backend": self.backend,
            "predictions": [{p.kind: p.image, "top": [vars(t) for t in p.top]} for p in self.predictions],
        }


def choose_entry(manifest: Manifest, file: str | None, *, where: str | Path) -> ModelEntry:
    """The entry named `file`; by default the KD student's fp32 ONNX, else the first student, else the
    first entry."""
    if file is not None:
        found = next((m for m in manifest.models if m.file == file), None)
        if found is None:
            names = [m.file for m in manifest.models]
            closest = difflib.get_close_matches(file, names, n=5, cutoff=0.0)  # most alike first
            raise InputError(
                f"--file {file!r}: not in {where}; its files ({len(closest)} of {len(names)}, closest "
                f"first): {', '.join(closest) or 'none'}"
            )
        return found
    if not manifest.models:
        raise InputError(f"{where}: lists no model files")
    default = (
        m for m in manifest.models if (m.name, m.format, m.precision) == ("student_kd", "onnx", "fp32")
    )
    students = (m for m in manifest.models if m.role == "student")
    return next(default, None) or next(students, None) or manifest.models[0]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def top_labels(probs: np.ndarray, labels: Sequence[str], k: int) -> list[Label]:
    """The `k` most probable classes of one row, best first (ties: lower index first, as argmax)."""
    order = np.argsort(-probs, kind="stable")[:k]
    return [Label(labels[i] if labels else str(i), int(i), float(probs[i])) for i in order]


def _chw(manifest: Manifest) -> tuple[int | None, ...]:
    """(C, H, W) the manifest declares for one image; None where a dim is dynamic."""
    shape = manifest.input.shape
    if len(shape) != 4:
        return (None, None, None)
    return (shape[3], shape[1], shape[2]) if manifest.input.layout == "NHWC" else tuple(shape[1:])


def _images(paths: Sequence[Path], manifest: Manifest, size: int) -> Iterator[tuple[int, np.ndarray]]:
    """(start, uint8 NCHW batch) of at most `size` images decoded through the manifest's steps."""
    chw = _chw(manifest)
    steps = manifest.input.preprocessing.steps
    if not steps and chw[0] in (1, 3):  # bundles from before `steps`: at least match the channel count
        steps = image_steps(mode="L" if chw[0] == 1 else "RGB")
    for start in range(0, len(paths), size):
        batch = []
        for path in paths[start : start + size]:
            x = decode_image(path, steps)
            if any(want is not None and want != got for want, got in zip(chw, x.shape, strict=True)):
                raise InputError(
                    f"{path}: decodes to {'x'.join(map(str, x.shape))} (C x H x W) through the manifest's "
                    f"steps; the model takes {'x'.join(str(d or '?') for d in chw)}"
                )
            batch.append(x)
        yield start, np.stack(batch)


def _model_input(x: np.ndarray, entry: ModelEntry, manifest: Manifest, dtype: Any) -> np.ndarray:
    """uint8 NCHW images -> the file's float input, in its layout and float dtype."""
    if entry.layout == "NHWC":
        x = to_float(x.transpose(0, 2, 3, 1), manifest.input.preprocessing, channel_axis=-1)
    else:
        x = to_float(x, manifest.input.preprocessing)
    return x.astype(dtype) if np.dtype(dtype).kind == "f" else x  # int8 files: the backend quantizes


def _load(bundle: Path, entry: ModelEntry, threads: int) -> tuple[str, Any, Any]:
    """(backend name, backend module, handle) for the entry's file; ValueError if no runtime is installed."""
    path = bundle / entry.file
    name = backend_for(path)
    if not available(name):
        raise InputError(
            f"{path}: needs the {name} runtime, which is not installed here "
            "(pip install 'edgekd[predict]', or pick an .onnx/.tflite file with --file)"
        )
    backend = load_backend(name)
    return name, backend, backend.load(path, threads=threads)


def _probabilities(backend: Any, handle: Any, x: np.ndarray, fixed: int | None, feed) -> np.ndarray:
    """Softmax rows for the uint8 images (or token ids) `x`, padded to a fixed-batch file's batch (padding
    dropped)."""
    n = len(x)
    if fixed and n < fixed:  # a fixed-batch file takes full batches only
        x = np.concatenate([x, np.zeros((fixed - n, *x.shape[1:]), x.dtype)])
    logits = np.asarray(backend.run(handle, feed(x)))
    return softmax(logits.reshape(len(x), -1)[:n])


def _token_ids(texts: Sequence[str], bundle: Path, pre: TokenPreprocessing, size: int):
    """(start, int64 token ids) of at most `size` texts, tokenized with the bundle's tokenizer."""
    from benchmarks.text import encode_texts, load_tokenizer

    tokenizer = load_tokenizer(bundle / pre.tokenizer, pre.seq_len)
    for start in range(0, len(texts), size):
        yield start, encode_texts(tokenizer, list(texts[start : start + size]))


def _inputs_match(manifest: Manifest, images: Sequence, texts: Sequence[str], where: Path) -> None:
    is_text = isinstance(manifest.input.preprocessing, TokenPreprocessing)
    if is_text and images:
        raise InputError(f"{where}: a text bundle (token ids) classifies texts (--text), not image files")
    if not is_text and texts:
        raise InputError(f"{where}: an image bundle classifies image files, not texts")
    if not images and not texts:
        raise InputError(f"{where}: give {'texts (--text)' if is_text else 'image files'} to classify")


def predict(
    bundle: str | Path,
    images: Sequence[str | Path] = (),
    *,
    texts: Sequence[str] = (),
    file: str | None = None,
    top_k: int = 5,
    threads: int = 1,
) -> PredictResult:
    """Top-`top_k` labels for each image (or text, for a text bundle), from `file` of `bundle` (default:
    the KD student's fp32 ONNX)."""
    manifest = read_manifest(bundle)
    bundle = Path(bundle)
    bundle = bundle.parent if bundle.suffix == ".json" else bundle
    _inputs_match(manifest, images, texts, bundle / "manifest.json")
    entry = choose_entry(manifest, file, where=bundle / "manifest.json")
    # Only the file that runs is checked: a board may hold a bundle trimmed to the files it uses.
    check_files(manifest.model_copy(update={"models": [entry], "test_data": None}), bundle)
    name, backend, handle = _load(bundle, entry, threads)
    _, shape, dtype = backend.input_spec(handle)
    fixed = entry.batch or (shape[0] if shape else None)
    labels = manifest.labels
    predictions, pre = [], manifest.input.preprocessing
    if isinstance(pre, TokenPreprocessing):
        batches, feed, kind, names = (
            _token_ids(texts, bundle, pre, fixed or CHUNK),
            (lambda a: a),
            "text",
            texts,
        )
    else:
        batches, kind, names = _images([Path(p) for p in images], manifest, fixed or CHUNK), "image", images
        feed = lambda a: _model_input(a, entry, manifest, dtype)  # noqa: E731
    for start, x in batches:
        probs = _probabilities(backend, handle, x, fixed, feed)
        if labels and probs.shape[1] != len(labels):
            raise InputError(
                f"{bundle / entry.file}: outputs {probs.shape[1]} classes, "
                f"the manifest lists {len(labels)} labels"
            )
        for i, row in enumerate(probs):
            predictions.append(Prediction(str(names[start + i]), top_labels(row, labels, top_k), kind))
    return PredictResult(entry.file, name, predictions)
