"""Other distillation losses on the 6-epoch teacher's cached targets (issue #22 pilots): prints test accuracy.

    python scripts/kd_loss_pilots.py LOSS[:key=value...] ...   e.g. ce kd:T=1:a=0.5 ls:T=2:a=0.5 dist:T=4:b=2

A loop of its own (AdamW + one-cycle, batch 128, lr 0.005, 7 epochs, channels-last: train_model's schedule;
`ce` reproduces its scratch student exactly), because these losses are not engine methods: they did not
beat scratch. cnn_student, `seed=N` (default 0); the teacher is kd_targets_study.py's cached 6-epoch one.
  ce                       plain training
  kd:T=..:a=..             Hinton KD
  ls:T=..:a=..             KD on z-scored logits (logit standardization, Sun et al. 2024)
  dist:T=..:b=..           CE + b * T^2 * (inter- + intra-class Pearson distance; DIST, Huang et al. 2022)
  feat:b=.., cos:b=..      CE + b * MSE (or cosine distance) between a linear map of the student's pooled
                           features and the teacher's 512-d hidden features (stored once)
  anneal:T=..:a=..         KD with alpha falling linearly to 0 over training (Jafari et al. 2021)
"""

from __future__ import annotations

import sys
import time

import kd_targets_study as study
import torch
import torch.nn.functional as F

from toolkit.distill.train import accuracy, predict


def _kl(z: torch.Tensor, t: torch.Tensor, temp: float) -> torch.Tensor:
    log_s, log_t = F.log_softmax(z / temp, 1), F.log_softmax(t / temp, 1)
    return F.kl_div(log_s, log_t, reduction="batchmean", log_target=True) * temp**2


def _zscore(z: torch.Tensor) -> torch.Tensor:
    return (z - z.mean(1, keepdim=True)) / (z.std(1, keepdim=True) + 1e-7)


def _pearson_distance(a: torch.Tensor, b: torch.Tensor, dim: int) -> torch.Tensor:
    a, b = a - a.mean(dim, keepdim=True), b - b.mean(dim, keepdim=True)
    return (1 - (a * b).sum(dim) / (a.norm(dim=dim) * b.norm(dim=dim) + 1e-8)).mean()


def _loss(kind: str, o: dict, z, f, y, t_logits, t_feats, proj, progress: float) -> torch.Tensor:
    ce, temp, a, b = F.cross_entropy(z, y), o.get("T", 2.0), o.get("a", 0.5), o.get("b", 1.0)
    if kind == "ce":
        return ce
    if kind in ("kd", "anneal"):
        a = a * (1 - progress) if kind == "anneal" else a
        return a * _kl(z, t_logits, temp) + (1 - a) * ce
    if kind == "ls":
        return a * _kl(_zscore(z), _zscore(t_logits), temp) + (1 - a) * ce
    if kind == "dist":
        ps, pt = F.softmax(z / temp, 1), F.softmax(t_logits / temp, 1)
        return ce + b * temp**2 * (_pearson_distance(ps, pt, 1) + _pearson_distance(ps, pt, 0))
    pf = proj(f)
    if kind == "cos":
        return ce + b * (1 - F.cosine_similarity(pf, t_feats, dim=1)).mean()
    return ce + b * F.mse_loss(pf, t_feats)


def _teacher_targets(s, data) -> tuple[torch.Tensor, torch.Tensor]:
    teacher = study._teacher(s, data, 6, False).eval()
    x = torch.from_numpy(data["train"][0])
    with torch.no_grad():
        feats = torch.cat([teacher.head[:2](teacher.pool(teacher.forward_features(x[i : i + 1000])))
                           for i in range(0, len(x), 1000)])  # fmt: skip
    return teacher.head[2:](feats).detach(), feats


def _train(kind: str, o: dict, s, data, targets, seed: int, epochs: int = 7) -> float:
    (x, y), (xt, yt) = data["train"], data["test"]
    x, y = torch.from_numpy(x), torch.from_numpy(y)
    t_logits, t_feats = targets
    net = study._net("cnn_student", s, seed)
    proj = torch.nn.Linear(net.num_features, t_feats.shape[1])
    params = [*net.parameters(), *(proj.parameters() if kind in ("feat", "cos") else [])]
    net = net.to(memory_format=torch.channels_last)
    opt = torch.optim.AdamW(params, lr=0.005, weight_decay=1e-4)
    steps = (len(x) + 127) // 128
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=0.005, total_steps=epochs * steps)
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    for epoch in range(epochs):
        net.train()
        order = torch.randperm(len(x), generator=gen)
        for b in range(steps):
            idx = order[b * 128 : (b + 1) * 128]
            f = net.pool(net.forward_features(x[idx]))
            z = net.head(f)
            loss = _loss(
                kind,
                o,
                z,
                f,
                y[idx],
                t_logits[idx],
                t_feats[idx],
                proj,
                (epoch * steps + b) / (epochs * steps),
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
    return 100 * accuracy(predict(net.eval(), xt), yt)


def main(argv: list[str]) -> int:
    study.OUT.mkdir(parents=True, exist_ok=True)
    s, data = study._data()
    targets = _teacher_targets(s, data)
    for arg in argv:
        kind, *rest = arg.split(":")
        o = {k: float(v) for k, v in (p.split("=", 1) for p in rest)}
        seed, t0 = int(o.pop("seed", 0)), time.perf_counter()
        test = _train(kind, o, s, data, targets, seed)
        print(
            f"{arg} (seed {seed}, 7 epochs): test {test:.2f} %, {time.perf_counter() - t0:.0f} s", flush=True
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
