"""Can a tiny student stand in for MiniLM on Rotten Tomatoes? A study ahead of the text pipeline (#21).

Teacher: all-MiniLM-L6-v2 (frozen) + a linear head trained on its sentence embeddings. Students
(text_cnn by default, pruned vocabulary) from scratch and with response KD, per seed. Every model goes
to ONNX (int64 token ids, batch 1) and is timed in onnxruntime, 1 thread, with edgekd's timing loop.
Prints accuracy, parameters, file size and p50 for each, and KD minus scratch per seed.

    python scripts/text_study.py [--seeds 0 1 2] [--seq-len 64] [--epochs 8] [--arch text_cnn]

Needs `make text-data`. The teacher's embeddings are cached in OUT (encoding is the slow part).
"""

from __future__ import annotations

import argparse
import hashlib
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.backends import onnxruntime as ort_backend
from benchmarks.measure import time_runs
from benchmarks.text import encode_texts, load_tokenizer
from toolkit.data.text import DEFAULT_TEXT_ROOT, read_rotten_tomatoes, split_texts
from toolkit.distill.losses import kd_loss
from toolkit.errors import ExportError
from toolkit.models import TEXT_MODELS
from toolkit.models.minilm import SentenceClassifier, load_encoder


def teacher_embeddings(teacher: SentenceClassifier, ids: np.ndarray, cache: Path) -> np.ndarray:
    """Sentence embeddings of every row, cached by the ids' digest."""
    key = hashlib.sha256(ids.tobytes()).hexdigest()[:12]
    path = cache / f"minilm-{key}.npy"
    if path.is_file():
        return np.load(path)
    t0 = time.perf_counter()
    with torch.no_grad():
        out = [teacher.forward_features(torch.from_numpy(ids[i : i + 64])) for i in range(0, len(ids), 64)]
    emb = torch.cat(out).numpy()
    print(f"  encoded {len(ids)} texts with MiniLM in {time.perf_counter() - t0:.0f} s")
    cache.mkdir(parents=True, exist_ok=True)
    np.save(path, emb)
    return emb


def fit_head(head: torch.nn.Linear, emb: dict[str, np.ndarray], y: dict[str, np.ndarray]) -> None:
    """Full-batch Adam on the embeddings; the epoch with the best validation accuracy is kept."""
    x = {k: torch.from_numpy(v) for k, v in emb.items()}
    t = {k: torch.from_numpy(v) for k, v in y.items()}
    opt = torch.optim.Adam(head.parameters(), lr=1e-2, weight_decay=1e-4)
    best, state = -1.0, None
    for _ in range(300):
        opt.zero_grad()
        F.cross_entropy(head(x["train"]), t["train"]).backward()
        opt.step()
        with torch.no_grad():
            acc = (head(x["val"]).argmax(1) == t["val"]).float().mean().item()
        if acc > best:
            best, state = acc, {k: v.clone() for k, v in head.state_dict().items()}
    head.load_state_dict(state)


def train_student(args, seed, ids, y, soft, keep_ids, num_classes) -> torch.nn.Module:
    """The student, trained with CE (soft None) or KD; the epoch with the best validation accuracy kept."""
    torch.manual_seed(seed)
    model = TEXT_MODELS.create(args.arch, num_classes=num_classes, keep_ids=keep_ids)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    x, t = torch.from_numpy(ids["train"]), torch.from_numpy(y["train"])
    g = torch.Generator().manual_seed(seed)
    best, state = -1.0, None
    for _ in range(args.epochs):
        model.train()
        for idx in torch.randperm(len(t), generator=g).split(args.batch_size):
            logits = model(x[idx])
            loss = (
                F.cross_entropy(logits, t[idx])
                if soft is None
                else kd_loss(logits, soft[idx], t[idx], temperature=args.temperature, alpha=args.alpha)
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
        acc = accuracy(model, ids["val"], y["val"])
        if acc > best:
            best, state = acc, {k: v.clone() for k, v in model.state_dict().items()}
    model.load_state_dict(state)
    return model.eval()


def accuracy(model: torch.nn.Module, ids: np.ndarray, y: np.ndarray) -> float:
    model.eval()
    with torch.no_grad():
        pred = torch.cat(
            [model(torch.from_numpy(ids[i : i + 256])).argmax(1) for i in range(0, len(ids), 256)]
        )
    return float((pred.numpy() == y).mean())


def onnx_p50(model: torch.nn.Module, rows: np.ndarray, path: Path) -> tuple[float, int, float]:
    """(p50 ms in onnxruntime, 1 thread, batch 1; file bytes; max |ONNX - torch| over `rows`) of `model`
    exported to `path`."""
    example = (torch.from_numpy(rows[:1]),)
    torch.onnx.export(model, example, str(path), dynamo=True, external_data=False, verbose=False)
    handle = ort_backend.load(path, threads=1)
    with torch.no_grad():
        ref = model(torch.from_numpy(rows)).numpy()
    got = np.concatenate([ort_backend.run(handle, rows[i : i + 1]) for i in range(len(rows))])
    diff = float(np.abs(got - ref).max())
    feed = ort_backend.prepare(handle, rows[:1])
    ms = time_runs(lambda: ort_backend.invoke(handle, feed), warmup=20, min_runs=200, min_time_s=1.0,
                   max_runs=5000)  # fmt: skip
    return float(np.median(ms)), path.stat().st_size, diff


def file_rows(name: str, model: torch.nn.Module, ids: np.ndarray, y: np.ndarray, out: Path) -> None:
    """Print each file of `model` (ONNX and TFLite, fp32 and dynamic int8): input dtype, size, test
    accuracy at batch 1, p50 (1 thread) and max |file - torch| over the first 64 rows."""
    from benchmarks.backends import litert
    from export.quantize import quantize_dynamic
    from export.tflite import export_tflite, export_tflite_dynamic_int8

    sample = torch.from_numpy(ids[:1])
    onnx = out / f"{name}.onnx"
    torch.onnx.export(model, (sample,), str(onnx), dynamo=True, external_data=False, verbose=False)
    files = {"onnx fp32": onnx, "onnx dynamic-int8": out / f"{name}_dynamic_int8.onnx"}
    quantize_dynamic(onnx, files["onnx dynamic-int8"])
    files["tflite fp32"] = export_tflite(model, sample, out / f"{name}.tflite")
    files["tflite dynamic-int8"] = out / f"{name}_dynamic_int8.tflite"
    try:
        export_tflite_dynamic_int8(model, sample, files["tflite dynamic-int8"])
    except ExportError as e:
        print(f"  {name} tflite dynamic-int8: export fails: {e}")
    with torch.no_grad():
        ref = model(torch.from_numpy(ids[:64])).numpy()
    for what, path in files.items():
        backend = ort_backend if what.startswith("onnx") else litert
        if not path.is_file():  # its export failed (said above)
            continue
        try:
            handle = backend.load(path, threads=1)
        except ValueError as e:  # a file the runtime refuses is a finding, not the end of the study
            print(f"  {name} {what:20s} {path.stat().st_size / 1024:9.0f} KiB  the runtime refuses it: {e}")
            continue
        dtype = backend.input_spec(handle)[2]
        logits = np.concatenate([backend.run(handle, ids[i : i + 1]) for i in range(len(ids))])
        feed = backend.prepare(handle, ids[:1])
        ms = time_runs(lambda h=handle, f=feed, b=backend: b.invoke(h, f), warmup=20, min_runs=200,
                       min_time_s=1.0, max_runs=5000)  # fmt: skip
        acc = float((logits.argmax(1) == y).mean())
        diff = float(np.abs(logits[:64] - ref).max())
        print(f"  {name} {what:20s} input {np.dtype(dtype).name:5s} {path.stat().st_size / 1024:9.0f} KiB  "
              f"test {acc * 100:.2f} %  p50 {float(np.median(ms)):.4f} ms  max|diff| {diff:.1e}")  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--root", type=Path, default=DEFAULT_TEXT_ROOT)
    p.add_argument("--out", type=Path, default=Path("runs/text_study"))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--arch", default="text_cnn")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--temperature", type=float, default=2.0)
    p.add_argument("--alpha", type=float, default=0.5)
    p.add_argument(
        "--files", action="store_true", help="also every ONNX/TFLite file of the teacher and seed 0 KD"
    )
    args = p.parse_args()
    t_start = time.perf_counter()
    texts, labels_y, names = read_rotten_tomatoes(args.root / "rotten_tomatoes.csv.bz2")
    s = split_texts(texts, labels_y, names, val=0.1, test=0.1, seed=0, where="rotten tomatoes")
    tok = load_tokenizer(args.root / "all-MiniLM-L6-v2" / "tokenizer.json", args.seq_len)
    ids = {n: encode_texts(tok, getattr(s, f"{n}_text")) for n in ("train", "val", "test")}
    y = {n: getattr(s, f"{n}_y") for n in ("train", "val", "test")}
    print(f"Rotten Tomatoes: {', '.join(f'{n} {len(v)}' for n, v in y.items())}; sequence {args.seq_len}")

    torch.manual_seed(0)
    teacher = SentenceClassifier(load_encoder(args.root / "all-MiniLM-L6-v2"), len(names)).eval()
    emb = {n: teacher_embeddings(teacher, v, args.out) for n, v in ids.items()}
    fit_head(teacher.head, emb, y)
    with torch.no_grad():
        soft = teacher.head(torch.from_numpy(emb["train"]))
        t_acc = float((teacher.head(torch.from_numpy(emb["test"])).argmax(1).numpy() == y["test"]).mean())
    t_params = sum(q.numel() for q in teacher.parameters())
    rows = ids["test"][:64]  # parity rows, and the first one is the timed input
    t_p50, t_size, t_diff = onnx_p50(teacher, rows, args.out / "teacher.onnx")
    print(f"teacher MiniLM+head: test {t_acc * 100:.2f} %, {t_params / 1e6:.2f} M params, "
          f"{t_size / 2**20:.1f} MiB, p50 {t_p50:.3f} ms, ONNX vs torch max |diff| {t_diff:.2e}")  # fmt: skip

    keep_ids = np.unique(ids["train"]).tolist()
    results = []
    for seed in args.seeds:
        for how, targets in (("scratch", None), ("kd", soft)):
            t0 = time.perf_counter()
            model = train_student(args, seed, ids, y, targets, keep_ids, len(names))
            acc = accuracy(model, ids["test"], y["test"])
            params = sum(q.numel() for q in model.parameters())
            p50, size, diff = onnx_p50(model, rows, args.out / f"student_{how}_{seed}.onnx")
            results.append((seed, how, acc))
            if args.files and how == "kd" and seed == args.seeds[0]:
                first_kd = model
            took = time.perf_counter() - t0
            print(f"seed {seed} {how:7s}: test {acc * 100:.2f} %, {params / 1e3:.0f} k params "
                  f"({t_params / params:.0f}x fewer), {size / 1024:.0f} KiB ({t_size / size:.0f}x smaller), "
                  f"p50 {p50:.4f} ms ({t_p50 / p50:.0f}x faster), |d| {diff:.0e}, {took:.0f} s")  # fmt: skip
    if args.files:
        print("files (batch 1, 1 thread; accuracy over the whole test split):")
        file_rows("student_kd", first_kd, ids["test"], y["test"], args.out)
        file_rows("teacher", teacher, ids["test"], y["test"], args.out)
    gains = [kd - sc for (_, _, sc), (_, _, kd) in zip(results[::2], results[1::2], strict=True)]
    print("KD - scratch per seed (points): " + ", ".join(f"{g * 100:+.2f}" for g in gains))
    wall = time.perf_counter() - t_start
    print(f"wall {wall:.0f} s, {len(keep_ids)} token ids kept of {tok.get_vocab_size()}")


if __name__ == "__main__":
    main()
