"""ActivityNet v1.3 temporal annotations as released (`activity_net.v1-3.min.json`), read and written in that format:

    {"version": "VERSION 1.3",
     "taxonomy": [{"nodeId": int, "nodeName": str, "parentId": int | null, "parentName": str | null}, ...],
     "database": {video id: {"duration": s, "subset": "training" | "validation" | "testing", "resolution": "WxH",
                             "url": str, "annotations": [{"segment": [start_s, end_s], "label": leaf nodeName}]}}}

The MMAction2/BSN conversion (`duration_second`, a bare database mapping) reads too. The release becomes two
manifests (videos, segments); the demo world's long videos and FineGym-style routines (events -> elements: one
"video" per event instance) become releases.
"""
from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import pandas as pd

from curate.core import manifest as mf
from curate.core.files import FileFormatError, read_json, write_text
from curate.formats.local import by_stem, located

SUBSETS = {"training": "train", "validation": "val", "testing": "test"}   # subset -> manifest split
VERSION = "curate-activitynet/2"
SOURCE = "youtube"
T = TypeVar("T")


class AnnotationError(FileFormatError):
    """A file that is not a usable ActivityNet annotation file; the message names the file and the key path."""


@dataclass
class Segment:
    start: float
    end: float
    label: str


@dataclass
class Video:
    duration: float
    subset: str = "training"
    annotations: list[Segment] = field(default_factory=list)
    resolution: str | None = None
    url: str | None = None


@dataclass(frozen=True)
class Node:
    """One taxonomy node; the classes are the leaves."""
    node_id: int
    name: str
    parent_id: int | None = None
    parent_name: str | None = None


@dataclass
class Release:
    database: dict[str, Video]
    taxonomy: list[Node] = field(default_factory=list)
    version: str = VERSION

    def classes(self) -> list[str]:
        """The class list label_id indexes: the taxonomy's leaf names sorted (code-point order); without a
        taxonomy, the annotations' labels sorted."""
        parents = {n.parent_id for n in self.taxonomy}
        leaves = {n.name for n in self.taxonomy if n.node_id not in parents}
        return sorted(leaves or {a.label for v in self.database.values() for a in v.annotations})


def _key(name: str) -> str:
    return f"database[{json.dumps(name)}]"


def _number(x: Any, where: str) -> float:
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise AnnotationError(f"{where}: expected a number, got {x!r}")
    return float(x)


def _video_from_json(name: str, v: Any, where: str) -> Video:
    where = f"{where}: {_key(name)}"
    if not isinstance(v, dict):
        raise AnnotationError(f"{where}: expected an object, got {type(v).__name__}")
    if "duration" not in v and "duration_second" not in v:
        raise AnnotationError(f"{where}.duration: missing")
    duration = _number(v["duration"] if "duration" in v else v["duration_second"], f"{where}.duration")
    subset = v.get("subset")
    if subset not in SUBSETS:
        raise AnnotationError(f"{where}.subset: {subset!r} is not one of {list(SUBSETS)}")
    anns = v.get("annotations", [])
    if not isinstance(anns, list):
        raise AnnotationError(f"{where}.annotations: expected a list, got {type(anns).__name__}")
    segments = []
    for k, a in enumerate(anns):
        at = f"{where}.annotations[{k}]"
        if not isinstance(a, dict) or not isinstance(a.get("label"), str):
            raise AnnotationError(f"{at}: expected {{'segment': [start, end], 'label': str}}, got {a!r}")
        seg = a.get("segment")
        if not isinstance(seg, list) or len(seg) != 2:
            raise AnnotationError(f"{at}.segment: expected [start, end], got {seg!r}")
        s, e = (_number(x, f"{at}.segment") for x in seg)
        if not 0 <= s <= e:
            raise AnnotationError(f"{at}.segment: {seg} is not 0 <= start <= end")
        segments.append(Segment(s, e, a["label"]))
    for key in ("resolution", "url"):
        if v.get(key) is not None and not isinstance(v[key], str):
            raise AnnotationError(f"{where}.{key}: expected a string, got {v[key]!r}")
    return Video(duration, subset, segments, v.get("resolution"), v.get("url"))


def _taxonomy_from_json(nodes: Any, where: str) -> list[Node]:
    if not isinstance(nodes, list):
        raise AnnotationError(f"{where}: taxonomy: expected a list of nodes, got {type(nodes).__name__}")
    out = []
    for k, n in enumerate(nodes):
        at = f"{where}: taxonomy[{k}]"
        if not isinstance(n, dict):
            raise AnnotationError(f"{at}: expected an object, got {n!r}")
        for key, types in (("nodeId", (int,)), ("nodeName", (str,)), ("parentId", (int, type(None))),
                           ("parentName", (str, type(None)))):
            if key not in n or isinstance(n[key], bool) or not isinstance(n[key], types):
                raise AnnotationError(f"{at}.{key}: missing or of the wrong type ({n.get(key)!r})")
        out.append(Node(n["nodeId"], n["nodeName"], n["parentId"], n["parentName"]))
    return out


def read_release(path: str | Path) -> Release:
    """The whole file: version, taxonomy (empty when absent) and video id -> Video; every label must be a leaf of
    the taxonomy when there is one."""
    doc = read_json(path)
    if isinstance(doc, dict) and ("database" in doc or "version" in doc or "taxonomy" in doc):
        if "database" not in doc:
            raise AnnotationError(f"{path}: database: missing")
        db, taxonomy, version = doc["database"], doc.get("taxonomy", []), doc.get("version", "")
    else:   # MMAction2/BSN files are the database mapping alone
        db, taxonomy, version = doc, [], ""
    if not isinstance(db, dict):
        raise AnnotationError(f"{path}: database: expected an object of videos, got {type(db).__name__}")
    if not isinstance(version, str):
        raise AnnotationError(f"{path}: version: expected a string, got {version!r}")
    release = Release({str(k): _video_from_json(str(k), v, str(path)) for k, v in db.items()},
                      _taxonomy_from_json(taxonomy, str(path)), version)
    if release.taxonomy:
        leaves = set(release.classes())
        for name, v in release.database.items():
            for k, a in enumerate(v.annotations):
                if a.label not in leaves:
                    raise AnnotationError(f"{path}: {_key(name)}.annotations[{k}].label: {a.label!r} is not a leaf "
                                          "of the taxonomy")
    return release


def read_activitynet(path: str | Path) -> dict[str, Video]:
    """video id -> Video from an ActivityNet JSON file."""
    return read_release(path).database


def flat_taxonomy(labels: list[str]) -> list[Node]:
    """A root (nodeId 0) with one leaf per label (ids from 1), for files written from a database alone."""
    return [Node(0, "Root"), *(Node(i, name, 0, "Root") for i, name in enumerate(labels, 1))]


def to_json(release: Release | Mapping[str, Video]) -> dict[str, Any]:
    """The release as the official file's object (a bare database gets a flat taxonomy and VERSION)."""
    if not isinstance(release, Release):
        release = Release(dict(release))
        release.taxonomy = flat_taxonomy(release.classes())
    db = {}
    for name, v in release.database.items():
        entry: dict[str, Any] = {"duration": v.duration, "subset": v.subset}
        entry.update({k: getattr(v, k) for k in ("resolution", "url") if getattr(v, k) is not None})
        entry["annotations"] = [{"segment": [a.start, a.end], "label": a.label} for a in v.annotations]
        db[name] = entry
    taxonomy = [{"nodeId": n.node_id, "nodeName": n.name, "parentId": n.parent_id, "parentName": n.parent_name}
                for n in release.taxonomy]
    return {"version": release.version, "taxonomy": taxonomy, "database": db}


def write_activitynet(path: str | Path, release: Release | Mapping[str, Video]) -> Path:
    """Write atomically (temp file in the same folder, rename) in the official layout."""
    return write_text(path, json.dumps(to_json(release), indent=1))


def video_item_id(video: str) -> str:
    """The manifest item_id of a whole ActivityNet video (a YouTube id)."""
    return mf.item_id(SOURCE, video)


def by_video(db: Mapping[str, Any], table: Mapping[str, T]) -> dict[str, T]:
    """table's entries re-keyed by db's video ids: an entry is keyed by the video id itself (the demo world's files)
    or by the video's manifest item_id (features of a manifest from `curate import activitynet`)."""
    out = {}
    for name in db:
        key = name if name in table else video_item_id(name)
        if key in table:
            out[name] = table[key]
    return out


def to_manifests(release: Release, video_root: str | Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(videos, segments). A video row is `ok` when `<id>.*` or `v_<id>.*` lies directly under video_root
    (path relative to it), `failed: missing` when not, `planned` without video_root; its label is the label all its
    segments share (null when they differ or there are none). A segment row (planned) is a clip of its video
    (parent_id); empty segments and repeats of one span are left out."""
    index = {name: i for i, name in enumerate(release.classes())}
    root = Path(video_root) if video_root else None
    files = by_stem(root) if root else {}
    videos, segments = [], {}
    for vid, v in release.database.items():
        split, url = SUBSETS[v.subset], v.url or f"https://www.youtube.com/watch?v={vid}"
        labels = {a.label for a in v.annotations}
        label = labels.pop() if len(labels) == 1 else None
        rel = files.get(vid) or files.get(f"v_{vid}")
        iid = video_item_id(vid)
        videos.append({"item_id": iid, "source": SOURCE, "source_id": vid, "url": url, "label": label,
                       "label_id": index.get(label), "split": split, "media": "video", "duration_s": v.duration,
                       **located(root, rel, f"{vid}.* or v_{vid}.*"), "resolution": v.resolution})
        for a in v.annotations:
            sid = mf.item_id(SOURCE, vid, a.start, a.end)
            if a.end > a.start and sid not in segments:
                segments[sid] = {"item_id": sid, "source": SOURCE, "source_id": vid, "url": url, "label": a.label,
                                 "label_id": index[a.label], "split": split, "media": "video", "start_s": a.start,
                                 "end_s": a.end, "status": "planned", "parent_id": iid}
    return mf.from_records(videos), mf.from_records(list(segments.values()))


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
    by_vid = {vid: g for vid, g in actions.groupby("video_id")}
    db = {}
    for r in rows.itertuples():
        acts = by_vid.get(r.source_id)
        anns = [] if acts is None else [Segment(float(a.start_s), float(a.end_s), str(a.label))
                                        for a in acts.sort_values("start_frame").itertuples()]
        size = f"{int(r.width)}x{int(r.height)}" if pd.notna(r.width) and pd.notna(r.height) else None
        db[r.item_id] = Video(float(r.duration_s), subset_of(r.item_id, val_fraction, seed), anns, size,
                              str(r.url) if isinstance(r.url, str) else None)
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
        db[name] = Video(int(ev.end_frame - ev.start_frame) / fps, subset_of(name, val_fraction, seed), anns)
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
