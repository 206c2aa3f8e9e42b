"""Localization and detection metrics: temporal IoU, AR@AN and its AUC (ActivityNet proposal protocol), mAP at
tIoU thresholds (ActivityNet detection), box IoU and frame-mAP at IoU 0.5 (PASCAL VOC style, as AVA evaluates).

Conventions for degenerate inputs: a class with no ground truth has AP nan and is left out of the mean; with no
ground truth at all the mean is nan. Empty predictions against existing ground truth score 0.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

TIOU_THRESHOLDS = np.round(np.arange(0.5, 0.951, 0.05), 2)   # 0.50, 0.55, ..., 0.95


def segment_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Temporal IoU of segments a [N, 2] and b [M, 2] (start, end) -> [N, M]."""
    a, b = np.asarray(a, float).reshape(-1, 2), np.asarray(b, float).reshape(-1, 2)
    inter = np.clip(np.minimum(a[:, None, 1], b[None, :, 1]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    union = (a[:, 1] - a[:, 0])[:, None] + (b[:, 1] - b[:, 0])[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2) -> [N, M]."""
    a, b = np.asarray(a, float).reshape(-1, 4), np.asarray(b, float).reshape(-1, 4)
    w = np.clip(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]), 0, None)
    h = np.clip(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]), 0, None)
    inter = w * h
    area = lambda x: (x[:, 2] - x[:, 0]) * (x[:, 3] - x[:, 1])  # noqa: E731
    union = area(a)[:, None] + area(b)[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def interpolated_ap(tp: np.ndarray, num_gt: int) -> float:
    """AP of a ranked list of hits (tp[i] = 1 when the i-th best detection is correct): area under the precision
    envelope over all recall points (VOC 2010+ / ActivityNet). nan when num_gt is 0."""
    if num_gt == 0:
        return float("nan")
    tp = np.asarray(tp, float)
    if tp.size == 0:
        return 0.0
    ctp = np.cumsum(tp)
    rec = ctp / num_gt
    prec = ctp / np.arange(1, len(tp) + 1)
    mrec = np.concatenate([[0.0], rec, [1.0]])
    mprec = np.concatenate([[0.0], prec, [0.0]])
    mprec = np.maximum.accumulate(mprec[::-1])[::-1]
    changed = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[changed] - mrec[changed - 1]) * mprec[changed]))


def average_recall(ground_truth: Mapping[str, np.ndarray], proposals: Mapping[str, np.ndarray],
                   max_avg_proposals: int = 100, tiou_thresholds: Sequence[float] = TIOU_THRESHOLDS
                   ) -> dict[str, object]:
    """AR vs average number of proposals per video (AN = 1..max), ActivityNet proposal protocol.

    ground_truth: video -> [G, 2] segments; proposals: video -> [P, 3] (start, end, score). Videos come from the
    ground truth. Each video keeps its best `pcn * P` proposals, pcn a fraction scaled so that the budgets average
    AN proposals per video; a segment is recalled at tIoU t when a kept proposal reaches t.
    Returns {'an': [K], 'recall': [len(t), K], 'ar': [K], 'auc': area under AR(AN) / max AN * 100, 'AR@k': ...}.
    """
    videos = sorted(ground_truth)
    tiou_thresholds = np.asarray(tiou_thresholds, float)
    total_gt = sum(len(np.asarray(ground_truth[v]).reshape(-1, 2)) for v in videos)
    ranked = {}
    for v in videos:
        p = np.asarray(proposals.get(v, np.zeros((0, 3))), float).reshape(-1, 3)
        ranked[v] = p[np.argsort(-p[:, 2], kind="stable")]
    total_props = sum(len(p) for p in ranked.values())
    steps = np.arange(1, max_avg_proposals + 1)
    if total_gt == 0 or total_props == 0:
        ar = np.full(len(steps), np.nan if total_gt == 0 else 0.0)
        recall = np.tile(ar, (len(tiou_thresholds), 1))
        an = steps.astype(float)
    else:
        pcn = steps / max_avg_proposals * (max_avg_proposals * len(videos) / total_props)
        hits = np.zeros((len(tiou_thresholds), len(steps)))
        for v in videos:
            gt = np.asarray(ground_truth[v], float).reshape(-1, 2)
            p = ranked[v]
            if not len(gt) or not len(p):
                continue
            iou = segment_iou(gt, p[:, :2])                          # [G, P]
            kept = np.minimum(len(p), (pcn * len(p)).astype(int))   # proposals kept at each budget
            # first rank at which each segment is recalled at each threshold
            for i, t in enumerate(tiou_thresholds):
                ok = iou >= t
                first = np.where(ok.any(axis=1), ok.argmax(axis=1), np.iinfo(np.int64).max)
                hits[i] += (first[:, None] < kept[None, :]).sum(axis=0)
        recall = hits / total_gt
        ar = recall.mean(axis=0)
        an = pcn * total_props / len(videos)
    auc = float(np.trapezoid(ar, an) / an[-1] * 100) if not np.isnan(ar).any() else float("nan")
    out: dict[str, object] = {"an": an, "recall": recall, "ar": ar, "auc": auc}
    for k in (1, 5, 10, 100):
        if k <= max_avg_proposals:
            out[f"AR@{k}"] = float(ar[k - 1] * 100)
    return out


def temporal_map(ground_truth: Sequence[tuple[str, float, float, int]],
                 detections: Sequence[tuple[str, float, float, int, float]],
                 tiou_thresholds: Sequence[float] = TIOU_THRESHOLDS, classes: Sequence[int] | None = None
                 ) -> dict[str, object]:
    """mAP of classified segments at each tIoU (ActivityNet detection): per class, detections ranked by score; a
    detection is a hit when it reaches the threshold with a not yet matched segment of its class (best tIoU first).

    ground_truth: (video, start, end, class); detections: (video, start, end, class, score).
    Returns {'ap': [len(t), C], 'map': [len(t)] over classes with ground truth, 'average_map', 'classes'}.
    """
    tiou_thresholds = np.asarray(tiou_thresholds, float)
    classes = sorted({int(g[3]) for g in ground_truth} | {int(d[3]) for d in detections}) if classes is None \
        else list(classes)
    ap = np.full((len(tiou_thresholds), len(classes)), np.nan)
    for c_i, c in enumerate(classes):
        gts: dict[str, np.ndarray] = {}
        for v, s, e, k in ground_truth:
            if int(k) == c:
                gts.setdefault(v, []).append((s, e))  # type: ignore[attr-defined]
        gts = {v: np.asarray(x, float) for v, x in gts.items()}
        num_gt = sum(len(x) for x in gts.values())
        dets = sorted((d for d in detections if int(d[3]) == c), key=lambda d: -float(d[4]))
        for t_i, t in enumerate(tiou_thresholds):
            used = {v: np.zeros(len(x), bool) for v, x in gts.items()}
            tp = np.zeros(len(dets))
            for j, (v, s, e, _, _) in enumerate(dets):
                if v not in gts:
                    continue
                iou = segment_iou([[s, e]], gts[v])[0]
                for g in np.argsort(-iou, kind="stable"):
                    if iou[g] < t:
                        break
                    if not used[v][g]:
                        used[v][g], tp[j] = True, 1
                        break
            ap[t_i, c_i] = interpolated_ap(tp, num_gt)
    with np.errstate(all="ignore"):
        maps = np.array([np.nanmean(row) if np.isfinite(row).any() else np.nan for row in ap])
    return {"ap": ap, "map": maps, "average_map": float(np.mean(maps)) if len(maps) else float("nan"),
            "classes": classes, "tiou": tiou_thresholds}


def frame_map(ground_truth: Sequence[tuple], detections: Sequence[tuple], iou_threshold: float = 0.5,
              classes: Sequence[int] | None = None, excluded: set[tuple[str, float]] | None = None
              ) -> dict[str, object]:
    """Frame-mAP (PASCAL VOC style, as AVA): per class, keyframe detections ranked by score; a detection is a hit
    when its best-overlapping box of that class on that keyframe reaches iou_threshold and was not matched yet.

    ground_truth: (video, timestamp, x1, y1, x2, y2, class); detections: the same plus score; `excluded`
    (video, timestamp) keyframes are dropped from both. Returns {'ap': {class: AP}, 'map': mean over classes with
    ground truth (nan if none)}.
    """
    excluded = excluded or set()
    key = lambda r: (str(r[0]), round(float(r[1]), 6))  # noqa: E731
    excl = {(str(v), round(float(t), 6)) for v, t in excluded}
    gt = [r for r in ground_truth if key(r) not in excl]
    det = [r for r in detections if key(r) not in excl]
    classes = sorted({int(r[6]) for r in gt} | {int(r[6]) for r in det}) if classes is None else list(classes)
    ap: dict[int, float] = {}
    for c in classes:
        boxes: dict[tuple, list] = {}
        for r in gt:
            if int(r[6]) == c:
                boxes.setdefault(key(r), []).append(r[2:6])
        boxes_np = {k: np.asarray(v, float) for k, v in boxes.items()}
        used = {k: np.zeros(len(v), bool) for k, v in boxes_np.items()}
        dets = sorted((r for r in det if int(r[6]) == c), key=lambda r: -float(r[7]))
        tp = np.zeros(len(dets))
        for j, r in enumerate(dets):
            k = key(r)
            if k not in boxes_np:
                continue
            iou = box_iou([r[2:6]], boxes_np[k])[0]
            g = int(np.argmax(iou))
            if iou[g] >= iou_threshold and not used[k][g]:
                used[k][g], tp[j] = True, 1
        ap[c] = interpolated_ap(tp, sum(len(v) for v in boxes_np.values()))
    vals = [v for v in ap.values() if not np.isnan(v)]
    return {"ap": ap, "map": float(np.mean(vals)) if vals else float("nan")}
