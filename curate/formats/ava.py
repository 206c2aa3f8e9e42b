"""AVA-style spatio-temporal annotations: CSV files without a header, boxes normalised to 0..1.

| file | columns |
|---|---|
| annotations (`*_train.csv`, `*_val.csv`) | video_id, timestamp, x1, y1, x2, y2, action_id, person_id |
| predictions | video_id, timestamp, x1, y1, x2, y2, action_id, score |
| proposals (person boxes per keyframe) | video_id, timestamp, x1, y1, x2, y2, score |
| excluded timestamps | video_id, timestamp |
| action list (`action_list.pbtxt`) | `label { name: "..." label_id: N }` blocks, ids from 1 |

AVA ships its proposals as a pickle; here they are a CSV (no unpickling of downloaded files). `from_world` turns
the demo world's scenes (truth/boxes.parquet) into these files: keyframes every `keyframe_s`, a ground-truth row
per acting actor, every actor's box jittered as a proposal, and keyframes where an action starts or ends within
one frame excluded as ambiguous.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

BOX = ["x1", "y1", "x2", "y2"]
ANNOTATION_COLUMNS = ["video_id", "timestamp", *BOX, "action_id", "person_id"]
PREDICTION_COLUMNS = ["video_id", "timestamp", *BOX, "action_id", "score"]
PROPOSAL_COLUMNS = ["video_id", "timestamp", *BOX, "score"]
EXCLUSION_COLUMNS = ["video_id", "timestamp"]
KINDS = {"annotations": ANNOTATION_COLUMNS, "predictions": PREDICTION_COLUMNS, "proposals": PROPOSAL_COLUMNS,
         "exclusions": EXCLUSION_COLUMNS}
_INT = {"action_id", "person_id"}


class AVAFormatError(ValueError):
    """A file that does not hold the columns of its AVA kind; the message names the file and line."""


def read_csv(path: str | Path, kind: str = "annotations") -> pd.DataFrame:
    """One of the KINDS of file, typed and checked (boxes inside 0..1 with x1 <= x2, y1 <= y2)."""
    cols = KINDS[kind]
    path = Path(path)
    if not path.exists() or path.stat().st_size == 0:
        if path.exists():
            return pd.DataFrame({c: pd.Series(dtype=_dtype(c)) for c in cols})
        raise FileNotFoundError(f"{path} does not exist")
    df = pd.read_csv(path, header=None, dtype={0: str}, skip_blank_lines=True)
    if df.shape[1] != len(cols):
        raise AVAFormatError(f"{path}: {df.shape[1]} columns, an AVA {kind} file has {len(cols)}: {cols}")
    df.columns = cols
    for c in cols[1:]:
        bad = pd.to_numeric(df[c], errors="coerce").isna()
        if bad.any():
            raise AVAFormatError(f"{path}:{int(np.flatnonzero(bad)[0]) + 1}: {c} is not a number")
        df[c] = df[c].astype(_dtype(c))
    if "x1" in df:
        b = df[BOX].to_numpy()
        bad = ~((b >= 0) & (b <= 1)).all(axis=1) | (b[:, 0] > b[:, 2]) | (b[:, 1] > b[:, 3])
        if bad.any():
            raise AVAFormatError(f"{path}:{int(np.flatnonzero(bad)[0]) + 1}: box is not normalised x1<=x2, y1<=y2")
    return df


def _dtype(col: str) -> str:
    return "str" if col == "video_id" else "int64" if col in _INT else "float64"


def write_csv(df: pd.DataFrame, path: str | Path, kind: str = "annotations") -> Path:
    """Write atomically in AVA's layout (no header, boxes and scores with 3 / 6 decimals)."""
    cols = KINDS[kind]
    missing = [c for c in cols if c not in df]
    if missing:
        raise AVAFormatError(f"cannot write {kind}: missing column(s) {missing}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    out = df[cols].copy()
    for c in BOX:
        if c in out:
            out[c] = out[c].map(lambda v: f"{v:.3f}")
    out["timestamp"] = out["timestamp"].map(lambda v: f"{v:g}")
    if "score" in out:
        out["score"] = out["score"].map(lambda v: f"{v:.6f}")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    os.close(fd)
    out.to_csv(tmp, header=False, index=False)
    os.replace(tmp, path)
    return path


def write_action_list(names: list[str], path: str | Path) -> Path:
    path = Path(path)
    path.write_text("".join(f'label {{\n  name: "{n}"\n  label_id: {i + 1}\n}}\n' for i, n in enumerate(names)))
    return path


def read_action_list(path: str | Path) -> dict[int, str]:
    """action_id -> name from a pbtxt label map."""
    text = Path(path).read_text()
    pairs = re.findall(r'name:\s*"([^"]*)"\s*label_id:\s*(\d+)', text)
    return {int(i): n for n, i in pairs}


def split_videos(ids: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """video -> 'train' / 'val': the round(n * val_fraction) ids first in a seeded hash order are val."""
    order = sorted(ids, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n_val = int(round(len(ids) * val_fraction))
    return {k: "val" if i < n_val else "train" for i, k in enumerate(order)}


def from_world(world_root: str | Path, out: str | Path, keyframe_s: float = 0.25, jitter: float = 0.06,
               val_fraction: float = 0.3, margin_frames: int = 4, seed: int = 0) -> dict[str, Path]:
    """AVA files for the demo world's scenes under out/: train.csv, val.csv, proposals.csv, exclusions.csv,
    action_list.pbtxt, videos.csv (video_id, path, fps, frames, subset). Keyframes lie at least margin_frames
    from either end of the video; they are denser than AVA's 1 Hz because the world's scenes last 6 s."""
    root, out = Path(world_root), Path(out)
    web = pd.read_parquet(root / "truth" / "web.parquet")
    boxes = pd.read_parquet(root / "truth" / "boxes.parquet")
    classes = json.loads((root / "world.json").read_text())["classes"]
    scenes = web[(web["kind"] == "scene") & (web["status"] == "ok")].sort_values("source_id")
    rng = np.random.default_rng([seed, 11])
    subsets = split_videos(scenes["source_id"].tolist(), val_fraction, seed)
    gt, props, excl, videos = [], [], [], []
    for sc in scenes.itertuples():
        vid, fps, n = sc.source_id, float(sc.fps), int(sc.frames)
        subset = subsets[vid]
        videos.append({"video_id": vid, "path": sc.path, "fps": fps, "frames": n, "subset": subset})
        vb = boxes[boxes["video_id"] == vid].set_index(["frame", "actor"]).sort_index()
        step = max(1, int(round(keyframe_s * fps)))
        for f in range(margin_frames, n - margin_frames, step):
            t = round(f / fps, 6)
            here = vb.loc[f] if f in vb.index.get_level_values(0) else None
            if here is None:
                continue
            ambiguous = False
            for actor, r in here.iterrows():
                near = [vb.loc[(g, actor), "label_id"] for g in (f - 1, f + 1) if (g, actor) in vb.index]
                ambiguous |= any(x != r["label_id"] for x in near)
                box = np.array([r[c] for c in BOX])
                if r["label_id"] >= 0:
                    gt.append({"video_id": vid, "timestamp": t, **dict(zip(BOX, box)),
                               "action_id": int(r["label_id"]) + 1, "person_id": int(actor), "subset": subset})
                wh = np.tile(box[2:] - box[:2], 2)
                jb = np.clip(box + rng.normal(0, jitter, 4) * wh, 0, 1)
                jb = np.concatenate([np.minimum(jb[:2], jb[2:]), np.maximum(jb[:2], jb[2:])])
                props.append({"video_id": vid, "timestamp": t, **dict(zip(BOX, jb)),
                              "score": float(rng.uniform(0.9, 1.0))})
            if ambiguous:
                excl.append({"video_id": vid, "timestamp": t})
    out.mkdir(parents=True, exist_ok=True)
    gt_df = pd.DataFrame(gt, columns=[*ANNOTATION_COLUMNS, "subset"])
    paths = {s: write_csv(gt_df[gt_df["subset"] == s], out / f"{s}.csv") for s in ("train", "val")}
    paths["proposals"] = write_csv(pd.DataFrame(props, columns=PROPOSAL_COLUMNS), out / "proposals.csv", "proposals")
    paths["exclusions"] = write_csv(pd.DataFrame(excl, columns=EXCLUSION_COLUMNS), out / "exclusions.csv",
                                    "exclusions")
    paths["action_list"] = write_action_list(classes, out / "action_list.pbtxt")
    paths["videos"] = out / "videos.csv"
    pd.DataFrame(videos).to_csv(paths["videos"], index=False)
    return paths
