"""ActivityNet-style temporal annotations: `{"version", "database": {video: {duration_second, subset, annotations:
[{segment: [s, e], label}], ...}}}`. Import, export, and conversion of the demo world's untrimmed videos and of
FineGym-style routines (events -> elements: one "video" per event instance, element segments relative to it).
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from curate.core.files import write_text

SUBSETS = ("training", "validation", "testing")
VERSION = "curate-activitynet/1"


class AnnotationError(ValueError):
    """A file that is not a usable ActivityNet-style annotation file; the message names the video and field."""


@dataclass
class Segment:
    start: float
    end: float
    label: str


@dataclass
class Video:
    duration_second: float
    subset: str = "training"
    annotations: list[Segment] = field(default_factory=list)
    fps: float | None = None
    duration_frame: int | None = None
    url: str | None = None


def _video_from_json(name: str, v: Any) -> Video:
    if not isinstance(v, dict) or "duration_second" not in v and "duration" not in v:
        raise AnnotationError(f"database[{name!r}]: expected an object with duration_second")
    try:
        duration = float(v.get("duration_second", v.get("duration")))
        anns = []
        for k, a in enumerate(v.get("annotations") or []):
            s, e = (float(x) for x in a["segment"])
            if not (0 <= s <= e):
                raise AnnotationError(f"database[{name!r}].annotations[{k}]: segment {a['segment']} is not 0 <= s <= e")
            anns.append(Segment(s, e, str(a["label"])))
    except (KeyError, TypeError, ValueError) as exc:
        if isinstance(exc, AnnotationError):
            raise
        raise AnnotationError(f"database[{name!r}]: {type(exc).__name__}: {exc}") from exc
    subset = v.get("subset", "training")
    if subset not in SUBSETS:
        raise AnnotationError(f"database[{name!r}].subset: {subset!r} is not one of {list(SUBSETS)}")
    fps = v.get("fps")
    frames = v.get("duration_frame")
    return Video(duration, subset, anns, float(fps) if fps is not None else None,
                 int(frames) if frames is not None else None, v.get("url"))


def read_activitynet(path: str | Path) -> dict[str, Video]:
    """video id -> Video from an ActivityNet-style JSON file (a bare `database` mapping is accepted too)."""
    try:
        doc = json.loads(Path(path).read_text())
    except json.JSONDecodeError as exc:
        raise AnnotationError(f"{path}: not JSON ({exc})") from exc
    db = doc.get("database", doc) if isinstance(doc, dict) else None
    if not isinstance(db, dict):
        raise AnnotationError(f"{path}: expected {{'database': {{video: {{...}}}}}}")
    return {str(k): _video_from_json(str(k), v) for k, v in db.items()}


def to_json(db: dict[str, Video]) -> dict[str, Any]:
    out = {}
    for name, v in db.items():
        entry: dict[str, Any] = {"duration_second": v.duration_second, "subset": v.subset,
                                 "annotations": [{"segment": [a.start, a.end], "label": a.label}
                                                 for a in v.annotations]}
        for key in ("fps", "duration_frame", "url"):
            if getattr(v, key) is not None:
                entry[key] = getattr(v, key)
        if v.duration_frame is not None:
            entry["feature_frame"] = v.duration_frame
        out[name] = entry
    return {"version": VERSION, "database": out}


def write_activitynet(path: str | Path, db: dict[str, Video]) -> Path:
    """Write atomically (temp file in the same folder, rename)."""
    return write_text(path, json.dumps(to_json(db), indent=1))


def subset_of(key: str, val_fraction: float, seed: int = 0) -> str:
    """A stable train/val assignment from a hash of the id."""
    h = int(hashlib.sha256(f"{seed}:{key}".encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "validation" if h < val_fraction else "training"


def from_world(world_root: str | Path, kinds: tuple[str, ...] = ("untrimmed", "routine"), val_fraction: float = 0.25,
               seed: int = 0) -> dict[str, Video]:
    """The demo world's long videos (truth/web.parquet rows of `kinds` that decode) keyed by item_id, with their
    timed actions (truth/actions.parquet) as segments; a clutter-only video has no annotations."""
    root = Path(world_root)
    web = pd.read_parquet(root / "truth" / "web.parquet")
    actions = pd.read_parquet(root / "truth" / "actions.parquet")
    rows = web[web["kind"].isin(kinds) & (web["status"] == "ok") & web["path"].notna()]
    by_video = {vid: g for vid, g in actions.groupby("video_id")}
    db = {}
    for r in rows.itertuples():
        acts = by_video.get(r.source_id)
        anns = [] if acts is None else [Segment(float(a.start_s), float(a.end_s), str(a.label))
                                        for a in acts.sort_values("start_frame").itertuples()]
        db[r.item_id] = Video(float(r.duration_s), subset_of(r.item_id, val_fraction, seed), anns, float(r.fps),
                              int(r.frames), str(r.url) if isinstance(r.url, str) else None)
    return db


def events_to_elements(events: pd.DataFrame, actions: pd.DataFrame, fps: float, val_fraction: float = 0.25,
                       seed: int = 0) -> dict[str, Video]:
    """FineGym-style routines: each event instance (`video_id`, `event_key`, start/end frames) becomes a video
    `<video_id>_<event_key>` whose annotations are its elements (actions with that event_key), in seconds from
    the event's start."""
    db = {}
    for ev in events.itertuples():
        name = f"{ev.video_id}_{ev.event_key}"
        els = actions[(actions["video_id"] == ev.video_id) & (actions["event_key"] == ev.event_key)]
        anns = [Segment((a.start_frame - ev.start_frame) / fps, (a.end_frame - ev.start_frame) / fps, str(a.label))
                for a in els.sort_values("start_frame").itertuples()]
        n = int(ev.end_frame - ev.start_frame)
        db[name] = Video(n / fps, subset_of(name, val_fraction, seed), anns, fps, n)
    return db


def world_events_to_elements(world_root: str | Path, val_fraction: float = 0.25, seed: int = 0) -> dict[str, Video]:
    """events_to_elements over the demo world's truth tables."""
    root = Path(world_root)
    spec = json.loads((root / "world.json").read_text())["spec"]
    return events_to_elements(pd.read_parquet(root / "truth" / "events.parquet"),
                              pd.read_parquet(root / "truth" / "actions.parquet"), float(spec["fps"]),
                              val_fraction, seed)


def segments(db: dict[str, Video], subset: str | None = None, labels: list[str] | None = None
             ) -> list[tuple[str, float, float, int]]:
    """(video, start, end, class index) rows of a subset; labels fixes the class order (default: sorted names)."""
    labels = labels or sorted({a.label for v in db.values() for a in v.annotations})
    index = {n: i for i, n in enumerate(labels)}
    return [(k, a.start, a.end, index.get(a.label, -1)) for k, v in db.items()
            if subset is None or v.subset == subset for a in v.annotations]
