"""Feature sequences for temporal localization: a recognizer checkpoint's backbone over untrimmed videos.

Each video is cut into snippets (one clip of the checkpoint's geometry) every `stride_s` seconds; the penultimate
embedding of each snippet is one step of the sequence, which is then linearly resampled to `temporal_length`
positions spanning the video from its first to its last frame (BMN's fixed-length input, e.g. 100). The
snippets' class probabilities, averaged, are kept as the video-level scores that classify proposals.

Output folder: `features-NNNNN.npy` shards ([videos, dim, temporal_length] float32) and `index.parquet`
(item_id, shard, row, duration_s, fps, frames, snippets, dim, temporal_length, scores, checkpoint). Reruns skip
videos already in the index.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from curate.core import manifest as mf
from curate.core.files import atomic_path
from curate.core.sampling import dense_windows

INDEX = "index.parquet"


def resample(seq: np.ndarray, times: np.ndarray, duration: float, length: int) -> np.ndarray:
    """[n, D] features at `times` -> [D, length] at evenly spaced times from 0 to duration (linear, edges held)."""
    grid = np.linspace(0.0, duration, length)
    if len(seq) == 1:
        return np.repeat(seq.T, length, axis=1).astype(np.float32)
    return np.stack([np.interp(grid, times, seq[:, j]) for j in range(seq.shape[1])]).astype(np.float32)


@torch.no_grad()
def video_snippets(model: torch.nn.Module, pipeline, path: Path, frames: int, fps: float, span: int, stride_s: float,
                   batch_size: int, device: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(embeddings [n, D], class logits [n, C], centre times [n]) of the snippet windows of one video, decoded
    once and cut with the checkpoint's test pipeline."""
    from curate import media

    video = media.read_frames(path, range(frames))
    wins = dense_windows(len(video), fps, span / fps, stride_s)
    rng = np.random.default_rng(0)
    clips = []
    for a, b in wins:
        r = pipeline.indices(b - a, fps, rng)
        clips.append(pipeline.finish(r, video[np.asarray(r["frame_inds"]) + a], rng))
    embs, logits = [], []
    for k in range(0, len(clips), batch_size):
        x = torch.as_tensor(np.stack(clips[k:k + batch_size]), device=device)
        e = model.embed(x)
        e = e.reshape(x.shape[0], -1, e.shape[-1]).mean(1)
        embs.append(e.float().cpu())
        logits.append(model.cls_head.classify(e).float().cpu())
    centres = np.array([(a + b - 1) / 2 / fps for a, b in wins])
    return torch.cat(embs).numpy(), torch.cat(logits).numpy(), centres


def read_index(out: str | Path) -> pd.DataFrame:
    path = Path(out) / INDEX
    return pd.read_parquet(path) if path.exists() else pd.DataFrame()


def load_features(out: str | Path) -> dict[str, np.ndarray]:
    """item_id -> [dim, temporal_length] from a features folder."""
    out = Path(out)
    index = read_index(out)
    feats = {}
    for shard, g in index.groupby("shard"):
        arr = np.load(out / shard, allow_pickle=False)
        for r in g.itertuples():
            feats[r.item_id] = arr[r.row]
    return feats


def _save_npy(path: Path, arr: np.ndarray) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        np.save(fh, arr)


def extract_features(checkpoint: str | Path, manifest: str | Path | pd.DataFrame, out: str | Path, *,
                     data_root: str | Path | None = None, stride_s: float | None = None, temporal_length: int = 100,
                     kinds: tuple[str, ...] | None = None, batch_size: int = 16, shard_size: int = 256,
                     device: str | None = None, progress: Callable[[int, int], None] | None = None
                     ) -> pd.DataFrame:
    """Feature sequences of the manifest's usable video rows (of `kinds` when the manifest has a kind column);
    stride_s defaults to half a snippet. Returns the whole index."""
    from curate.core.manifest import find_data_root, usable_rows
    from trainers.checkpoint import load_checkpoint
    from trainers.inputs import build_pipelines

    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    model, meta = load_checkpoint(checkpoint, device)
    df = manifest if isinstance(manifest, pd.DataFrame) else mf.read(manifest, validate_rows=False)
    root = Path(data_root) if data_root else find_data_root(Path(manifest), df) \
        if not isinstance(manifest, pd.DataFrame) else Path(".")
    rows, _ = usable_rows(df)
    rows = rows[(rows["media"] == "video") & rows["fps"].notna() & rows["frames"].notna()]
    if kinds and "kind" in rows:
        rows = rows[rows["kind"].isin(kinds)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    index = read_index(out)
    done = set(index["item_id"]) if len(index) else set()
    rows = rows[~rows["item_id"].isin(done)].reset_index(drop=True)
    pipeline = next(iter(build_pipelines(meta["data"], train=False, views=(1, 1)).values())).with_sampler(num_clips=1)
    spec = next(iter(meta["input"].values()))
    span = int(spec["clip_len"]) * int(spec.get("frame_interval") or 1)
    first_shard = int(index["shard"].str[9:14].astype(int).max()) + 1 if len(index) else 0
    new, feats = [], []
    for i, row in rows.iterrows():
        stride = stride_s or max(span // 2, 1) / float(row["fps"])
        emb, logits, centres = video_snippets(model, pipeline, root / row["path"], int(row["frames"]),
                                              float(row["fps"]), span, stride, batch_size, device)
        scores = torch.as_tensor(logits).softmax(-1).mean(0).numpy()
        duration = float(row["frames"]) / float(row["fps"])
        feats.append(resample(emb, centres, duration, temporal_length))
        shard = f"features-{first_shard + len(feats[:-1]) // shard_size:05d}.npy"
        new.append({"item_id": row["item_id"], "shard": shard, "row": (len(feats) - 1) % shard_size,
                    "duration_s": duration, "fps": float(row["fps"]), "frames": int(row["frames"]),
                    "snippets": len(centres), "dim": int(emb.shape[1]), "temporal_length": temporal_length,
                    "scores": scores.astype(np.float32).tolist(), "checkpoint": meta.get("sha256")})
        if progress:
            progress(i + 1, len(rows))
    for k in range(0, len(feats), shard_size):
        _save_npy(out / new[k]["shard"], np.stack(feats[k:k + shard_size]))
    index = pd.concat([index, pd.DataFrame(new)], ignore_index=True) if new else index
    if new:
        with atomic_path(out / INDEX) as tmp:
            index.to_parquet(tmp, index=False)
    return index
