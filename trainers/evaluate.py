"""Evaluation: multi-view class scores over a manifest, top-1/top-5/mean class accuracy, per-level accuracy for
hierarchical labels, a confusion-matrix PNG; and `score_rows`, what a teacher (curate filter) or an embedding
extractor (curate dedup) calls with a loaded checkpoint.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import nn

from curate.core import manifest as mf
from curate.core.manifest import usable_rows
from trainers.data import ClipDataset, LabelSpace, make_loader
from trainers.inputs import build_pipelines, parse_views, streams
from trainers.metrics import confusion_matrix, level_accuracy, mean_class_accuracy, plot_confusion, top_k_accuracy
from trainers.sources import SequentialBatchSampler


def autocast(device: torch.device, amp: bool):
    """bf16 autocast on CUDA when amp is on; plain fp32 elsewhere."""
    return torch.autocast("cuda", dtype=torch.bfloat16, enabled=amp and device.type == "cuda")


@torch.no_grad()
def predict(model: nn.Module, loader, device: torch.device | str = "cpu", amp: bool = False, embeddings: bool = False,
            progress: Callable[[int], None] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(class scores [N, C] with views averaged as the model's average_clips says, or view-averaged penultimate
    embeddings [N, D]; labels [N]) in the loader's order."""
    device = torch.device(device)
    model.eval()
    outs, labels = [], []
    for groups in loader:
        for g in groups:
            g = g.to(device)
            with autocast(device, amp):
                if embeddings:
                    e = model.embed(g.x)
                    out = e.reshape(len(g), -1, e.shape[-1]).mean(dim=1)
                else:
                    out = model.predict(g.x)
            outs.append(out.float().cpu().numpy())
            labels.append(g.y.numpy())
            if progress:
                progress(len(g))
    if not outs:
        return np.zeros((0, 0), np.float32), np.zeros(0, np.int64)
    return np.concatenate(outs), np.concatenate(labels)


def scores_metrics(scores: np.ndarray, labels: np.ndarray, space: LabelSpace, rows: pd.DataFrame | None = None
                   ) -> dict[str, float]:
    """top1, top5, mean_class_acc (over labelled rows) and, when the classes have parents and the rows say theirs,
    set_acc / event_acc of the predicted class mapped up the hierarchy."""
    keep = labels >= 0
    s, y = scores[keep], labels[keep]
    top1, top5 = top_k_accuracy(s, y, (1, 5))
    out = {"top1": top1, "top5": top5, "mean_class_acc": mean_class_accuracy(s, y) if len(y) else float("nan"),
           "n": int(len(y))}
    if rows is not None:
        pred = s.argmax(axis=1) if len(y) else np.zeros(0, np.int64)
        for up, parent_of in space.parents.items():
            col = f"{up}_id"
            if col in rows and rows[col].notna().any():
                true = rows[col].fillna(-1).astype(np.int64).to_numpy()[keep]
                out[f"{up}_acc"] = level_accuracy(pred, true, parent_of)
    return out


def eval_dataset(rows: pd.DataFrame, root: str | Path, data: Mapping[str, Any], space: LabelSpace,
                 views: tuple[int, int] | None = None, cache_bytes: int = 0, pseudo: str | None = None) -> ClipDataset:
    """A ClipDataset with the test pipelines (views = clips x crops, default the config's)."""
    pipes = build_pipelines(data, train=False, views=views)
    first = next(iter(streams(data).values()))
    return ClipDataset(rows, root, pipes, space.index(rows), pseudo=pseudo or first.get("pseudo", "static"),
                       pseudo_strength=float(first.get("pseudo_strength", 1.0)), cache_bytes=cache_bytes)


def score_rows(model: nn.Module, meta: Mapping[str, Any], rows: pd.DataFrame, root: str | Path,
               views: str | tuple[int, int] | None = None, batch_size: int = 8, workers: int = 0,
               embeddings: bool = False, device: str | torch.device = "cpu",
               progress: Callable[[int], None] | None = None) -> np.ndarray:
    """Class scores [N, C] (or embeddings [N, D]) of manifest rows, with a model and meta from load_checkpoint."""
    space = LabelSpace.from_dict(meta["labels"])
    ds = eval_dataset(rows.reset_index(drop=True), root, meta["data"], space, parse_views(views) if views else None)
    loader = make_loader([ds], SequentialBatchSampler(len(ds), batch_size), workers)
    return predict(model, loader, device, amp=torch.device(device).type == "cuda", embeddings=embeddings,
                   progress=progress)[0]


@dataclass
class EvalResult:
    metrics: dict[str, float]
    scores: np.ndarray
    labels: np.ndarray
    rows: pd.DataFrame
    outputs: dict[str, Path] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def evaluate_checkpoint(checkpoint: str | Path, manifest: str | Path | pd.DataFrame, split: str | None = "test",
                        views: str | tuple[int, int] | None = None, data_root: mf.Roots | None = None,
                        out: str | Path | None = None, batch_size: int = 8, workers: int = 0,
                        device: str | torch.device | None = None,
                        progress: Callable[[int, int], None] | None = None) -> EvalResult:
    """Score a manifest split with a checkpoint; with `out`, write metrics.json, predictions.parquet, confusion.png.
    data_root: one folder, or NAME -> folder re-pointing the manifest's named roots (curate.core.manifest)."""
    from trainers.checkpoint import load_checkpoint

    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    model, meta = load_checkpoint(checkpoint, device)
    df = manifest if isinstance(manifest, pd.DataFrame) else mf.read(manifest)
    rows, skipped = usable_rows(df, split)
    space = LabelSpace.from_dict(meta["labels"])
    t0 = time.perf_counter()
    done = [0]

    def tick(n: int) -> None:
        done[0] += n
        if progress:
            progress(done[0], len(rows))

    files = rows.assign(path=mf.media_paths(rows, None if isinstance(manifest, pd.DataFrame) else manifest, data_root))
    ds = eval_dataset(files, ".", meta["data"], space, parse_views(views) if views else None)
    loader = make_loader([ds], SequentialBatchSampler(len(ds), batch_size), workers)
    scores, labels = predict(model, loader, device, amp=device.type == "cuda", progress=tick)
    metrics = scores_metrics(scores, labels, space, rows) if len(rows) else {"n": 0}
    metrics["seconds"] = round(time.perf_counter() - t0, 3)
    metrics["views"] = "x".join(map(str, parse_views(views) if views else
                                    parse_views(next(iter(meta["input"].values()))["views"])))
    result = EvalResult(metrics, scores, labels, rows, skipped=skipped)
    if out is not None and len(rows):
        result.outputs = write_eval_outputs(Path(out), result, space, meta)
    return result


def write_eval_outputs(out: Path, result: EvalResult, space: LabelSpace, meta: Mapping[str, Any]) -> dict[str, Path]:
    out.mkdir(parents=True, exist_ok=True)
    s, y = result.scores, result.labels
    top5 = np.argsort(-s, axis=1, kind="stable")[:, :5]
    pred = pd.DataFrame({"item_id": result.rows["item_id"].to_numpy(), "label": y, "pred": top5[:, 0],
                         "pred_name": [space.names[i] for i in top5[:, 0]],
                         "score": s[np.arange(len(s)), top5[:, 0]], "top5": [list(map(int, t)) for t in top5]})
    paths = {"metrics": out / "metrics.json", "predictions": out / "predictions.parquet",
             "confusion": out / "confusion.png"}
    pred.to_parquet(paths["predictions"], index=False)
    paths["metrics"].write_text(json.dumps({**result.metrics, "checkpoint_sha256": meta.get("sha256"),
                                            "skipped": result.skipped}, indent=2) + "\n")
    keep = y >= 0
    cm = confusion_matrix(s[keep].argmax(axis=1), y[keep], space.num_classes)
    plot_confusion(cm, space.names, paths["confusion"],
                   f"top-1 {result.metrics['top1']:.3f}, mean class {result.metrics['mean_class_acc']:.3f}")
    return paths
