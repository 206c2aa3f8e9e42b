"""Temporal action localization with BMN: feature sequences + ActivityNet-style annotations -> proposals.

`train_localizer(cfg, features, annotations, out)` trains with `trainers.loop` and keeps the checkpoint with the
best validation AUC; `evaluate_localizer` writes proposals in ActivityNet's results format and reports AR@AN
(1..100), AUC and, with the feature index's video-level class scores, mAP at tIoU 0.5:0.05:0.95.
Post-processing: boundary candidates (local peaks or > 0.5 x max), score = start x end x cls x reg, Soft-NMS.
"""
from __future__ import annotations

import json
from collections.abc import Mapping
from itertools import islice
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from curate.formats.activitynet import Video, by_video, read_activitynet, segments
from trainers.config import build_from
from trainers.distributed import Rank
from trainers.loc_metrics import average_recall, temporal_map
from trainers.loop import FitResult, Task, fingerprint, run, share
from trainers.models import LOCALIZERS
from trainers.models.bmn import bmn_loss, bmn_targets


def build_localizer(model_cfg: Mapping[str, Any]) -> nn.Module:
    return build_from(LOCALIZERS, model_cfg, "model")


def soft_nms(props: np.ndarray, alpha: float = 0.4, low: float = 0.5, high: float = 0.9, top_k: int = 100
             ) -> np.ndarray:
    """Gaussian Soft-NMS of [N, 3] (start, end, score) proposals in fractions of the video: taking the best in
    turn, every other proposal overlapping it by more than low + (high - low) x its width has its score
    multiplied by exp(-tIoU^2 / alpha). Returns at most top_k, best first."""
    props = np.asarray(props, float).reshape(-1, 3).copy()
    keep = []
    while len(props) and len(keep) < top_k:
        i = int(np.argmax(props[:, 2]))
        best = props[i]
        keep.append(best.copy())
        props = np.delete(props, i, axis=0)
        if not len(props):
            break
        inter = np.clip(np.minimum(props[:, 1], best[1]) - np.maximum(props[:, 0], best[0]), 0, None)
        iou = inter / np.maximum((props[:, 1] - props[:, 0]) + (best[1] - best[0]) - inter, 1e-9)
        decay = iou > low + (high - low) * (best[1] - best[0])
        props[decay, 2] *= np.exp(-iou[decay] ** 2 / alpha)
    return np.array(keep).reshape(-1, 3)


def candidates(score: np.ndarray) -> np.ndarray:
    """Anchors that may be boundaries: local peaks, or above half of the maximum."""
    peak = np.zeros(len(score), bool)
    peak[1:-1] = (score[1:-1] > score[:-2]) & (score[1:-1] > score[2:])
    peak[[0, -1]] = True
    return peak | (score > 0.5 * score.max())


def decode_proposals(conf: np.ndarray, start: np.ndarray, end: np.ndarray, post: Mapping[str, float]) -> np.ndarray:
    """One video's outputs (conf [2, D, T], start [T], end [T]) -> Soft-NMS'd proposals [K, 3] in fractions."""
    t = len(start)
    gap = 1.0 / (t - 1)
    ok_s, ok_e = candidates(start), candidates(end)
    d, s = np.nonzero(np.ones(conf.shape[1:], bool))
    e = s + d + 1
    keep = (e <= t - 1)
    d, s, e = d[keep], s[keep], e[keep]
    keep = ok_s[s] & ok_e[e]
    d, s, e = d[keep], s[keep], e[keep]
    score = start[s] * end[e] * conf[0, d, s] * conf[1, d, s]
    props = np.stack([s * gap, e * gap, score], axis=1)
    return soft_nms(props, post["alpha"], post["low"], post["high"], int(post["top_k"]))


class LocalizationData:
    """Videos that have both features and annotations, with their BMN targets."""

    def __init__(self, features: Mapping[str, np.ndarray], db: Mapping[str, Video], subset: str | None,
                 tscale: int, dscale: int):
        self.ids = sorted(k for k, v in db.items() if k in features and (subset is None or v.subset == subset))
        self.x = torch.as_tensor(np.stack([features[k] for k in self.ids])) if self.ids else torch.zeros(0)
        segs = [np.array([[a.start / db[k].duration, a.end / db[k].duration]
                          for a in db[k].annotations]).reshape(-1, 2) for k in self.ids]
        self.targets = bmn_targets(segs, tscale, dscale) if self.ids else None

    def __len__(self) -> int:
        return len(self.ids)

    def batches(self, batch_size: int, epoch: int, seed: int, rank: Rank):
        """(features, targets, loss factor) of this rank's share of every batch of the epoch (trainers.loop.share)."""
        order = np.random.default_rng([seed, epoch]).permutation(len(self))
        for k in range(0, len(order), batch_size):
            part, factor = share(order[k:k + batch_size], rank)
            idx = torch.as_tensor(part)
            yield self.x[idx], tuple(t[idx] for t in self.targets), factor


@torch.no_grad()
def propose(model: nn.Module, features: Mapping[str, np.ndarray], ids: list[str], durations: Mapping[str, float],
            batch_size: int = 16, device: str | torch.device = "cpu") -> dict[str, np.ndarray]:
    """video -> [K, 3] proposals (start_s, end_s, score)."""
    model.eval()
    out = {}
    for k in range(0, len(ids), batch_size):
        chunk = ids[k:k + batch_size]
        x = torch.as_tensor(np.stack([features[v] for v in chunk]), device=device)
        conf, start, end = (t.float().cpu().numpy() for t in model(x))
        for j, v in enumerate(chunk):
            p = decode_proposals(conf[j], start[j], end[j], model.post)
            p[:, :2] *= durations[v]
            out[v] = p
    return out


def uniform_proposals(durations: Mapping[str, float], length_frac: float, count: int = 100) -> dict[str, np.ndarray]:
    """The baseline: `count` evenly spaced windows of a fixed fraction of each video, ranked coarse to fine (bit
    reversed order, so every prefix is spread over the video too)."""
    starts = np.linspace(0, 1 - length_frac, count)
    bits = max(1, int(np.ceil(np.log2(count))))
    order = sorted(range(count), key=lambda i: int(f"{i:0{bits}b}"[::-1], 2) if count > 1 else 0)
    out = {}
    for v, dur in durations.items():
        s = starts[order]
        out[v] = np.stack([s * dur, (s + length_frac) * dur, np.linspace(1, 0.01, count)], axis=1)
    return out


def proposal_metrics(db: Mapping[str, Video], proposals: Mapping[str, np.ndarray], ids: list[str],
                     scores: Mapping[str, np.ndarray] | None = None, labels: list[str] | None = None
                     ) -> dict[str, float]:
    """AR@1/5/10/100 and AUC; with video class scores, average mAP of proposals labelled with the top class."""
    gt = {v: np.array([[a.start, a.end] for a in db[v].annotations]).reshape(-1, 2) for v in ids}
    r = average_recall(gt, {v: proposals[v] for v in ids})
    out = {"auc": r["auc"], **{k: v for k, v in r.items() if k.startswith("AR@")}}
    if scores is not None and labels:
        dets = [(v, p[0], p[1], int(np.argmax(scores[v])), p[2] * float(np.max(scores[v])))
                for v in ids if v in scores for p in proposals[v]]
        sub = {v: db[v] for v in ids}
        m = temporal_map(segments(sub, labels=labels), dets, classes=list(range(len(labels))))
        out["average_map"] = m["average_map"] * 100
        out["map@0.5"] = float(m["map"][0] * 100)
    return out


def train_localizer(cfg: Mapping[str, Any], features: Mapping[str, np.ndarray], annotations: str | Path | dict,
                    out: str | Path, *, resume: bool = False, device: str | None = None, progress: bool = True
                    ) -> FitResult:
    """Fit cfg's localizer on the 'training' subset; validation AUC on 'validation' picks best.pt. Features are
    keyed by the annotations' video ids or by their manifest item_ids (activitynet.by_video)."""
    from trainers.schedule import Schedule

    db = read_activitynet(annotations) if not isinstance(annotations, dict) else annotations
    features = by_video(db, features)
    s = Schedule.from_config(cfg.get("schedule"))
    val_ids = sorted(k for k, v in db.items() if k in features and v.subset == "validation")
    durations = {k: v.duration for k, v in db.items()}

    def build(rank: Rank, dev: torch.device) -> Task:
        torch.manual_seed(s.seed)    # the same weights whatever ran before in this process
        model = build_localizer(cfg["model"])
        train = LocalizationData(features, db, "training", model.tscale, model.dscale)
        if not len(train):
            raise ValueError("no training videos have both features and annotations")
        torch.manual_seed(s.seed)

        def loss(m: nn.Module, batch, g_step: int) -> tuple[torch.Tensor, dict[str, float]]:
            x, targets, factor = batch
            losses = bmn_loss(m(x.to(dev)), tuple(t.to(dev) for t in targets), model.valid)
            return losses["loss"] * factor, {k: float(v.detach()) * factor for k, v in losses.items()}

        def evaluate(m: nn.Module) -> dict[str, float]:
            return proposal_metrics(db, propose(m, features, val_ids, durations, device=dev), val_ids)

        meta = {"task": "localization", "tscale": model.tscale, "feat_dim": model.feat_dim,
                "videos": {"training": len(train), "validation": len(val_ids)}, "model": cfg["model"],
                "schedule": s.as_dict()}
        return Task(model, -(-len(train) // s.batch_size),
                    lambda epoch, step: islice(train.batches(s.batch_size, epoch, s.seed, rank), step, None),
                    loss, ["tem", "reg", "cls", "loss"], meta, fingerprint(s, model=cfg["model"], meta=meta),
                    {**dict(cfg), "schedule": s.as_dict()}, evaluate if val_ids else None, "auc",
                    count=lambda batch: len(batch[0]), scale=float(rank.world))

    return run(build, s, out, device=device, resume=resume, progress=progress)


def load_localizer(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    from trainers.checkpoint import read_checkpoint

    payload = read_checkpoint(path)
    model = build_localizer(payload["meta"]["model"])
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), payload["meta"]


def evaluate_localizer(model: nn.Module, features: Mapping[str, np.ndarray], annotations: str | Path | dict,
                       subset: str = "validation", scores: Mapping[str, np.ndarray] | None = None,
                       out: str | Path | None = None, device: str = "cpu") -> dict[str, float]:
    """Metrics on a subset (plus the uniform baseline's AUC); with out, proposals.json (ActivityNet results) and
    metrics.json."""
    db = read_activitynet(annotations) if not isinstance(annotations, dict) else annotations
    features, scores = by_video(db, features), by_video(db, scores) if scores is not None else None
    ids = sorted(k for k, v in db.items() if k in features and v.subset == subset)
    durations = {k: db[k].duration for k in ids}
    labels = sorted({a.label for v in db.values() for a in v.annotations})
    props = propose(model, features, ids, durations, device=device)
    metrics = proposal_metrics(db, props, ids, scores, labels)
    train_len = [a.end - a.start for v in db.values() if v.subset == "training" for a in v.annotations]
    frac = [(a.end - a.start) / v.duration for v in db.values() if v.subset == "training"
            for a in v.annotations]
    if frac:
        base = proposal_metrics(db, uniform_proposals(durations, float(np.median(frac))), ids)
        metrics["baseline_auc"] = base["auc"]
    metrics["videos"] = len(ids)
    metrics["mean_gt_s"] = float(np.mean(train_len)) if train_len else float("nan")
    if out is not None:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        results = {v: [{"segment": [round(float(a), 3), round(float(b), 3)], "score": round(float(c), 5)}
                       for a, b, c in p] for v, p in props.items()}
        (out / "proposals.json").write_text(json.dumps({"version": "curate-proposals/1", "results": results}))
        (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    return metrics
