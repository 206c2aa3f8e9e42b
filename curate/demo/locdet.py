"""The other two tasks end to end on the demo world: temporal localization (BMN) and AVA-style detection.

`run(world_root, out)` is what `curate demo` calls: it converts the world's ground truth (ActivityNet JSON, AVA
CSVs), trains a tiny frame recognizer for features, extracts feature sequences, trains and evaluates a tiny BMN
and a tiny detector, and returns their metrics next to the baselines (evenly spaced fixed-length proposals;
every proposal scored with the class prior).
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from curate.clean.features import extract_features, load_features, read_index
from curate.formats import activitynet, ava

LONG_KINDS = ("untrimmed", "routine")


def frame_recognizer(world_root: str | Path, out: str | Path, epochs: int = 4, size: int = 64,
                     progress: bool = False) -> Path:
    """A tiny 2D recognizer (TSN, ResNet-18 at 8 channels) trained on the world's target clips; its per-frame
    embeddings are the localization features. Returns the checkpoint (reused when out/ already has one)."""
    from trainers.inputs import data_overrides
    from trainers.sources import Source
    from trainers.train import make_config, train

    out = Path(out)
    if (out / "last.pt").exists():
        return out / "last.pt"
    root = Path(world_root)
    cfg = make_config("tsn_r50", tiny=True, overrides={"schedule": dict(
        epochs=epochs, batch_size=4, lr=1e-2, optimizer="adamw", grad_clip=None, log_every=1)})
    cfg["data"] = data_overrides(cfg["model"], size=size, scale=size, flip=0.0, clip_len=1, num_clips=8)
    train(cfg, [Source("target", root / "manifests" / "target.parquet", split="train", root=root)], out,
          progress=progress)
    return out / "last.pt"


def localization_demo(world_root: str | Path, out: str | Path, checkpoint: str | Path | None = None,
                      overrides: Mapping[str, Any] | None = None, stride_s: float = 0.25, temporal_length: int = 32,
                      progress: bool = False) -> dict[str, float]:
    """ActivityNet JSON of the world's long videos -> features -> tiny BMN -> validation AR@AN / AUC / mAP."""
    import numpy as np

    from trainers.localization import evaluate_localizer, load_localizer, train_localizer
    from trainers.train import make_config

    root, out = Path(world_root), Path(out)
    db = activitynet.from_world(root, LONG_KINDS)
    ann = activitynet.write_activitynet(out / "activitynet.json", db)
    activitynet.write_activitynet(out / "events_to_elements.json", activitynet.world_events_to_elements(root))
    ckpt = checkpoint or frame_recognizer(root, out / "recognizer", progress=progress)
    extract_features(ckpt, root / "truth" / "web.parquet", out / "features", data_root=root, kinds=LONG_KINDS,
                     stride_s=stride_s, temporal_length=temporal_length)
    feats = load_features(out / "features")
    index = read_index(out / "features")
    scores = {r.item_id: np.asarray(r.scores) for r in index.itertuples()}
    dim = next(iter(feats.values())).shape[0]
    cfg = make_config("bmn", tiny=True, overrides={"model": {"feat_dim": dim, "temporal_dim": temporal_length},
                                                   **dict(overrides or {})})
    result = train_localizer(cfg, feats, ann, out / "bmn", resume=True, progress=progress)
    model, _ = load_localizer(result.last)
    return evaluate_localizer(model, feats, db, "validation", scores, out / "bmn" / "eval")


def detection_demo(world_root: str | Path, out: str | Path, overrides: Mapping[str, Any] | None = None,
                   progress: bool = False) -> dict[str, float]:
    """AVA files of the world's scenes -> tiny SlowOnly detector -> validation frame-mAP@0.5 and the prior
    baseline; predictions.csv in AVA's layout."""
    from trainers.detection import class_prior, detection_metrics, load_detector, predict_keyframes, train_detector
    from trainers.train import make_config

    root, out = Path(world_root), Path(out)
    files = ava.from_world(root, out / "ava")
    cfg = make_config("slowonly_ava", tiny=True, overrides=overrides)
    result, train, val = train_detector(cfg, files, root, out / "detector", resume=True, progress=progress)
    model, _ = load_detector(result.last)
    pred = predict_keyframes(model, val)
    ava.write_csv(pred, out / "detector" / "predictions.csv", "predictions")
    return {**detection_metrics(val, pred, class_prior(train)), "keyframes": len(val)}


def run(world_root: str | Path, out: str | Path, progress: bool = False) -> dict[str, dict[str, float]]:
    """Both tasks on the demo world: {'bmn': {...}, 'detector': {...}}."""
    return {"bmn": localization_demo(world_root, Path(out) / "localization", progress=progress),
            "detector": detection_demo(world_root, Path(out) / "detection", progress=progress)}
