"""Spatio-temporal action detection on AVA-style files (curate/formats/ava.py): keyframe clips, person proposals,
multi-label targets, training with `trainers.loop`, frame-mAP@0.5 evaluation and predictions CSV.

The `data:` section: clip_len, frame_interval (the clip is centred on the keyframe, indices clamped to the video),
size (frames resized to size x size; boxes are normalised so they follow), mean/std, flip (probability),
pos_iou_thr (a proposal takes the actions of the ground-truth box it overlaps most when IoU reaches it; the
ground-truth boxes join the proposals in training, as in AVA).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pandas as pd
import torch
from torch import nn

from curate.formats import ava
from trainers.config import ConfigError, build_from
from trainers.distributed import Rank
from trainers.loc_metrics import box_iou, frame_map
from trainers.loop import FitResult, Task, fingerprint, run, share
from trainers.models import BACKBONES, DETECTORS, ROI_HEADS
from trainers.models.roi_head import multilabel_loss

DATA_DEFAULTS = {"clip_len": 8, "frame_interval": 1, "size": 96, "mean": [123.675, 116.28, 103.53],
                 "std": [58.395, 57.12, 57.375], "flip": 0.5, "pos_iou_thr": 0.9}


def build_detector(cfg: Mapping[str, Any], num_classes: int | None = None) -> nn.Module:
    """`{type: AVADetector, backbone: {...}, roi_head: {...}}`; the head's in_channels default to the backbone's."""
    cfg = dict(cfg)
    unknown = set(cfg) - {"type", "backbone", "roi_head"}
    if unknown or cfg.get("type") not in DETECTORS:
        raise ConfigError(f"model: a detector needs type in {sorted(DETECTORS)} and only backbone/roi_head keys, "
                          f"got {sorted(cfg)}")
    backbone = build_from(BACKBONES, cfg.get("backbone") or {}, "model.backbone")
    head = dict(cfg.get("roi_head") or {})
    if num_classes is not None:
        head["num_classes"] = num_classes
    head = build_from(ROI_HEADS, head, "model.roi_head", in_channels=getattr(backbone, "out_channels", None))
    return DETECTORS[cfg["type"]](backbone, head)


def resolve_data(cfg: Mapping[str, Any]) -> dict[str, Any]:
    data = {**DATA_DEFAULTS, **dict(cfg.get("data") or {})}
    unknown = sorted(set(data) - set(DATA_DEFAULTS))
    if unknown:
        raise ConfigError(f"data: unknown key(s) {unknown} for detection; valid keys: {sorted(DATA_DEFAULTS)}")
    return data


@dataclass
class Keyframe:
    video_id: str
    timestamp: float
    proposals: np.ndarray      # [P, 4] normalised
    gt_boxes: np.ndarray       # [G, 4]
    gt_labels: np.ndarray      # [G, C] multi-hot


class KeyframeData:
    """Keyframes of one subset with their decoded videos (uint8, resized), proposals and ground truth; `files` as
    curate.formats.ava.find_files gives them."""

    def __init__(self, files: Mapping[str, Path], subset: str, num_classes: int, data: Mapping[str, Any],
                 root: str | Path):
        from curate import media

        self.data, self.num_classes = dict(data), num_classes
        videos = ava.read_videos(files["videos"])
        videos = videos[videos["subset"] == subset]
        gt = ava.read_csv(files[subset])
        props = ava.read_proposals(files[f"{subset}_proposals"])
        excl = ava.read_csv(files[f"{subset}_exclusions"], "exclusions") if f"{subset}_exclusions" in files \
            else pd.DataFrame()
        self.excluded = {(str(v), round(float(t), 6)) for v, t in excl.itertuples(index=False)} if len(excl) else set()
        size = int(data["size"])
        self.frames, self.fps = {}, {}
        for v in videos.itertuples():
            clip = media.read_frames(Path(root) / v.path, range(int(v.frames)))
            self.frames[v.video_id] = np.stack([cv2.resize(f, (size, size), interpolation=cv2.INTER_AREA)
                                                for f in clip])
            self.fps[v.video_id] = float(v.fps)
        props = props[props["video_id"].isin(self.frames)]
        self.gt = gt[gt["video_id"].isin(self.frames)].reset_index(drop=True)
        self.keyframes: list[Keyframe] = []
        by_gt = {k: g for k, g in self.gt.groupby(["video_id", "timestamp"])}
        for (vid, t), g in props.groupby(["video_id", "timestamp"]):
            if (vid, round(float(t), 6)) in self.excluded:
                continue
            boxes, labels = self._gt(by_gt.get((vid, t)))
            self.keyframes.append(Keyframe(vid, float(t), g[ava.BOX].to_numpy(float), boxes, labels))

    def _gt(self, g: pd.DataFrame | None) -> tuple[np.ndarray, np.ndarray]:
        if g is None:
            return np.zeros((0, 4)), np.zeros((0, self.num_classes))
        boxes, labels = [], []
        for box, rows in g.groupby(ava.BOX):
            y = np.zeros(self.num_classes)
            y[rows["action_id"].to_numpy() - 1] = 1
            boxes.append(box)
            labels.append(y)
        return np.array(boxes, float), np.array(labels)

    def __len__(self) -> int:
        return len(self.keyframes)

    def clip(self, kf: Keyframe, flip: bool) -> np.ndarray:
        """[C, T, H, W] float32, normalised."""
        video = self.frames[kf.video_id]
        n, d = int(self.data["clip_len"]), int(self.data["frame_interval"])
        centre = int(round(kf.timestamp * self.fps[kf.video_id]))
        idx = np.clip(centre - (n * d) // 2 + np.arange(n) * d, 0, len(video) - 1)
        x = video[idx].astype(np.float32)
        if flip:
            x = x[:, :, ::-1]
        x = (x - np.asarray(self.data["mean"], np.float32)) / np.asarray(self.data["std"], np.float32)
        return np.ascontiguousarray(x.transpose(3, 0, 1, 2))

    def targets(self, boxes: np.ndarray, kf: Keyframe) -> np.ndarray:
        if not len(kf.gt_boxes):
            return np.zeros((len(boxes), self.num_classes))
        iou = box_iou(boxes, kf.gt_boxes)
        best = iou.argmax(axis=1)
        ok = iou[np.arange(len(boxes)), best] >= float(self.data["pos_iou_thr"])
        return kf.gt_labels[best] * ok[:, None]

    def batch(self, idx: np.ndarray, train: bool, rng: np.random.Generator | None = None):
        """(clips [B, C, T, H, W], rois [K, 5] in pixels, targets [K, C], owners [(keyframe, box)])."""
        size = float(self.data["size"])
        clips, rois, targets, owners = [], [], [], []
        for b, i in enumerate(idx):
            kf = self.keyframes[int(i)]
            boxes = np.concatenate([kf.proposals, kf.gt_boxes]) if train else kf.proposals
            flip = bool(train and rng is not None and rng.random() < float(self.data["flip"]))
            y = self.targets(boxes, kf)
            if flip:
                boxes = boxes.copy()
                boxes[:, [0, 2]] = 1 - boxes[:, [2, 0]]
            clips.append(self.clip(kf, flip))
            rois.append(np.concatenate([np.full((len(boxes), 1), b), boxes * size], axis=1))
            targets.append(y)
            owners += [(int(i), j) for j in range(len(boxes))]
        return (torch.as_tensor(np.stack(clips)), torch.as_tensor(np.concatenate(rois), dtype=torch.float32),
                torch.as_tensor(np.concatenate(targets), dtype=torch.float32), owners)

    def ground_truth(self) -> list[tuple]:
        return [(r.video_id, r.timestamp, r.x1, r.y1, r.x2, r.y2, int(r.action_id))
                for r in self.gt.itertuples()]

    def detections(self, scores: np.ndarray, owners: list[tuple[int, int]]) -> pd.DataFrame:
        """Prediction rows (video_id, timestamp, box, action_id, score) for every (proposal, class)."""
        rows = []
        for (i, j), s in zip(owners, scores):
            kf = self.keyframes[i]
            rows += [(kf.video_id, kf.timestamp, *kf.proposals[j], c + 1, float(s[c])) for c in range(len(s))]
        return pd.DataFrame(rows, columns=ava.PREDICTION_COLUMNS)


@torch.no_grad()
def predict_keyframes(model: nn.Module, data: KeyframeData, batch_size: int = 8, device: str | torch.device = "cpu"
                      ) -> pd.DataFrame:
    model.eval()
    scores, owners = [], []
    for k in range(0, len(data), batch_size):
        clips, rois, _, own = data.batch(np.arange(k, min(k + batch_size, len(data))), train=False)
        scores.append(model.predict(clips.to(device), rois.to(device)).float().cpu().numpy())
        owners += own
    s = np.concatenate(scores) if scores else np.zeros((0, data.num_classes))
    return data.detections(s, owners)


def detection_metrics(data: KeyframeData, predictions: pd.DataFrame, prior: np.ndarray | None = None
                      ) -> dict[str, float]:
    """frame-mAP@0.5 (x100) and, given class priors, the baseline that scores every proposal with them."""
    gt = data.ground_truth()
    classes = list(range(1, data.num_classes + 1))
    out = {"frame_map": frame_map(gt, list(predictions.itertuples(index=False)), classes=classes,
                                  excluded=data.excluded)["map"] * 100}
    if prior is not None:
        base = predictions.copy()
        base["score"] = prior[base["action_id"].to_numpy() - 1]
        out["baseline_frame_map"] = frame_map(gt, list(base.itertuples(index=False)), classes=classes,
                                              excluded=data.excluded)["map"] * 100
    return out


def class_prior(data: KeyframeData) -> np.ndarray:
    """Share of training keyframe boxes showing each action."""
    labels = np.concatenate([kf.gt_labels for kf in data.keyframes]) if len(data) else np.zeros((0, data.num_classes))
    total = sum(len(kf.proposals) for kf in data.keyframes)
    return labels.sum(0) / max(total, 1)


def train_detector(cfg: Mapping[str, Any], files: Mapping[str, Path], root: str | Path, out: str | Path, *,
                   resume: bool = False, device: str | None = None, progress: bool = True
                   ) -> tuple[FitResult, KeyframeData, KeyframeData]:
    """Fit on the train keyframes, keep the best val frame-mAP; returns (result, train data, val data)."""
    from trainers.schedule import Schedule

    names = ava.read_action_list(files["action_list"])
    num_classes = max(names)
    data = resolve_data(cfg)
    cfg = {**dict(cfg), "data": data}
    s = Schedule.from_config(cfg.get("schedule"))
    train, val = (KeyframeData(files, sub, num_classes, data, root) for sub in ("train", "val"))
    if not len(train):
        raise ValueError("no training keyframes (proposals of train videos)")

    def build(rank: Rank, dev: torch.device) -> Task:
        torch.manual_seed(s.seed)    # the same weights whatever ran before in this process
        model = build_detector(cfg["model"], num_classes)
        torch.manual_seed(s.seed)

        def batches(epoch: int, step: int):
            rng = np.random.default_rng([s.seed, epoch])
            order = rng.permutation(len(train))
            for k in range(0, len(order), s.batch_size):   # earlier steps are drawn too: the rng must match
                part, factor = share(order[k:k + s.batch_size], rank)
                batch = train.batch(part, train=True, rng=rng)
                if k // s.batch_size >= step:
                    yield (*batch, factor)

        def loss(m: nn.Module, batch, g_step: int) -> tuple[torch.Tensor, dict[str, float]]:
            clips, rois, y, _, factor = batch
            value = multilabel_loss(m(clips.to(dev), rois.to(dev)), y.to(dev)) * factor
            return value, {"loss": float(value.detach())}

        def evaluate(m: nn.Module) -> dict[str, float]:
            return detection_metrics(val, predict_keyframes(m, val, s.batch_size, dev))

        meta = {"task": "detection", "classes": [names.get(i, "") for i in range(1, num_classes + 1)], "data": data,
                "keyframes": {"train": len(train), "val": len(val)}, "model": cfg["model"], "schedule": s.as_dict()}
        return Task(model, -(-len(train) // s.batch_size), batches, loss, ["loss"], meta,
                    fingerprint(s, model=cfg["model"], meta=meta), {**cfg, "schedule": s.as_dict()},
                    evaluate if len(val) else None, "frame_map", count=lambda batch: len(batch[0]),
                    scale=float(rank.world))

    return run(build, s, out, device=device, resume=resume, progress=progress), train, val


def load_detector(path: str | Path, device: str = "cpu") -> tuple[nn.Module, dict[str, Any]]:
    from trainers.checkpoint import read_checkpoint

    payload = read_checkpoint(path)
    meta = payload["meta"]
    model = build_detector(meta["model"], len(meta["classes"]))
    model.load_state_dict(payload["state_dict"])
    return model.to(device).eval(), meta
