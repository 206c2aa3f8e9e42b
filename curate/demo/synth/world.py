"""`make_world`: write the demo world (target clips, web corpus, ground truth) under a folder, deterministically."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from curate.core import manifest as mf
from curate.core.files import atomic_path, write_text
from curate.demo.synth import jobs as J
from curate.demo.synth.plan import SPLITS, Plan, WorldSpec, make_plan
from curate.formats import kinetics

GENERATOR_VERSION = "3"   # 3: montage videos (shots) and distractor-query images, planned after the rest
_EXPECTED_ERROR = {"truncated_mp4": "truncated", "html_mp4": "not_media", "empty_jpg": "empty",
                   "random_jpg": "undecodable", "truncated_jpg": "truncated"}
_MIME = {"jpg": "image/jpeg", "png": "image/png", "mp4": "video/mp4"}


@dataclass(frozen=True)
class World:
    """A generated world: where its files are and how many of each kind it holds."""

    root: Path
    spec: WorldSpec
    classes: list[str]
    counts: dict[str, Any]

    @property
    def target_manifest(self) -> Path:
        """Item manifest of the target clips (source 'synthetic', train/val/test); paths relative to root."""
        return self.root / "manifests" / "target.parquet"

    @property
    def target_csv(self) -> Path:
        """Kinetics-style CSV of the target set: label,youtube_id,time_start,time_end,split (ids are watch ids)."""
        return self.root / "target.csv"

    @property
    def classes_file(self) -> Path:
        return self.root / "classes.txt"

    @property
    def hierarchy(self) -> Path:
        """events / sets / elements with ids and names (JSON)."""
        return self.root / "hierarchy.json"

    @property
    def web_root(self) -> Path:
        return self.root / "web"

    @property
    def web_index(self) -> Path:
        """What the loopback web serves: one entry per item (no ground truth)."""
        return self.root / "web" / "index.json"

    @property
    def truth_web(self) -> Path:
        """The web corpus in item-manifest form plus its ground truth (true label, noise, copies, broken files)."""
        return self.root / "truth" / "web.parquet"

    @property
    def truth_actions(self) -> Path:
        """Timed action spans inside longer videos (target sources, untrimmed, routines, scenes)."""
        return self.root / "truth" / "actions.parquet"

    @property
    def truth_shots(self) -> Path:
        """The shots of montage videos: frames, how each begins (start, cut, fade) and the class acting (-1: none)."""
        return self.root / "truth" / "shots.parquet"

    @property
    def truth_events(self) -> Path:
        """Event instances inside routine videos (FineGym level 1)."""
        return self.root / "truth" / "events.parquet"

    @property
    def truth_boxes(self) -> Path:
        """Per-frame boxes of every acting object (normalised x1, y1, x2, y2)."""
        return self.root / "truth" / "boxes.parquet"


def fingerprint(spec: WorldSpec) -> str:
    data = json.dumps({"version": GENERATOR_VERSION, **dataclasses.asdict(spec)}, sort_keys=True)
    return hashlib.sha256(data.encode()).hexdigest()[:16]


def load_world(root: str | os.PathLike) -> World:
    """Open a world written by make_world."""
    root = Path(root)
    meta_path = root / "world.json"
    if not meta_path.exists():
        raise FileNotFoundError(f"{root} holds no demo world (no world.json)")
    meta = json.loads(meta_path.read_text())
    return World(root, WorldSpec(**meta["spec"]), meta["classes"], meta["counts"])


def make_world(root: str | os.PathLike, num_classes: int = 10, seed: int = 0, workers: int | None = None,
               progress: Callable[[int, int], None] | None = None, **sizes: Any) -> World:
    """Generate the world under root (reused when root already holds the same world); sizes override WorldSpec."""
    root = Path(root)
    spec = WorldSpec(num_classes=num_classes, seed=seed, **sizes)
    meta_path = root / "world.json"
    if meta_path.exists():
        meta = json.loads(meta_path.read_text())
        if meta.get("fingerprint") == fingerprint(spec) and meta.get("complete"):
            return load_world(root)
        meta_path.unlink()
    plan = make_plan(spec)
    results = _run_jobs(root, plan.jobs, workers, progress)
    return _write_tables(root, plan, results)


def _run_jobs(root: Path, jobs: list[dict], workers: int | None,
              progress: Callable[[int, int], None] | None) -> dict[str, dict]:
    workers = workers or min(4, os.cpu_count() or 1)
    order = sorted(range(len(jobs)), key=lambda i: -_cost(jobs[i]))  # big jobs first: better load balance
    results: dict[str, dict] = {}
    if workers <= 1:
        for k, i in enumerate(order):
            results[jobs[i]["key"]] = J.run(str(root), jobs[i])
            if progress:
                progress(k + 1, len(jobs))
        return results
    with ProcessPoolExecutor(workers) as pool:
        for k, res in enumerate(pool.map(J.run, [str(root)] * len(jobs), [jobs[i] for i in order], chunksize=4)):
            results[res["key"]] = res
            if progress:
                progress(k + 1, len(jobs))
    return results


def _cost(job: dict) -> int:
    frames = job.get("frames") or job.get("source_frames") or 1
    return int(frames) * int(job.get("width") or job.get("size") or 64) ** 2


def _write_tables(root: Path, plan: Plan, results: dict[str, dict]) -> World:
    spec = plan.spec
    fps = spec.fps
    target = pd.DataFrame(plan.target)
    target["bytes"] = [results[k]["clip"]["bytes"] for k in target["item_id"]]
    target["sha256"] = [results[k]["clip"]["sha256"] for k in target["item_id"]]
    mf.write(mf.from_records(target.to_dict("records")), root / "manifests" / "target.parquet",
             {"world": fingerprint(spec)})

    sources = {j["key"]: results[j["key"]].get("source") for j in plan.jobs if j["runner"] == "target"}
    by_wid = {r["source_id"]: r["item_id"] for r in plan.target}
    web = []
    for row in plan.web:
        meta = results.get(row["source_id"], {}).get("file") or sources.get(by_wid.get(row["source_id"]))
        row = dict(row, bytes=meta["bytes"] if meta else None, sha256=meta["sha256"] if meta else None)
        if row["gone"]:
            row.update(status="failed", error="http_404: the video was removed")
        elif row["broken"] in _EXPECTED_ERROR:
            row.update(status="failed", error=f"{_EXPECTED_ERROR[row['broken']]}: planted broken file ({row['broken']})")
        web.append(row)
    web_df = mf.from_records(web)
    mf.write(web_df, root / "truth" / "web.parquet", {"world": fingerprint(spec)})

    actions = pd.DataFrame(plan.actions)
    actions["start_s"], actions["end_s"] = actions["start_frame"] / fps, actions["end_frame"] / fps
    _write_parquet(actions, root / "truth" / "actions.parquet")
    events = pd.DataFrame(plan.events, columns=["video_id", "event_key", "event", "event_id", "start_frame", "end_frame"])
    events["start_s"], events["end_s"] = events["start_frame"] / fps, events["end_frame"] / fps
    _write_parquet(events, root / "truth" / "events.parquet")
    shots = pd.DataFrame(plan.shots, columns=["video_id", "shot", "start_frame", "end_frame", "transition", "label_id"])
    shots["start_s"], shots["end_s"] = shots["start_frame"] / fps, shots["end_frame"] / fps
    _write_parquet(shots, root / "truth" / "shots.parquet")
    boxes = pd.DataFrame([b for k in sorted(results) for b in results[k]["boxes"]], columns=list(J.BOX_COLUMNS))
    _write_parquet(boxes.sort_values(["kind", "video_id", "frame", "actor"], kind="stable"), root / "truth" / "boxes.parquet")

    _write_web_index(root, web)
    write_text(root / "target.csv", kinetics.to_csv(target))
    names = [e["name"] for e in plan.tree["elements"]]
    write_text(root / "classes.txt", "".join(f"{n}\n" for n in names))
    write_text(root / "hierarchy.json", json.dumps(plan.tree, indent=2) + "\n")
    counts = _counts(target, web_df, actions, events, boxes)
    world = World(root, spec, names, counts)
    write_text(root / "world.json", json.dumps({"fingerprint": fingerprint(spec), "complete": True,
                                                   "spec": dataclasses.asdict(spec), "classes": names,
                                                   "counts": counts}, indent=2) + "\n")
    return world


def _counts(target: pd.DataFrame, web: pd.DataFrame, actions: pd.DataFrame, events: pd.DataFrame,
            boxes: pd.DataFrame) -> dict[str, Any]:
    return {
        "target": {s: int((target["split"] == s).sum()) for s in SPLITS},
        "web": {str(k): int(v) for k, v in web["kind"].value_counts().sort_index().items()},
        "web_noisy": int(web["noisy"].fillna(False).astype(bool).sum()),
        "web_copies": int(web["copy_of"].notna().sum()),
        "web_broken": int(web["broken"].notna().sum()),
        "web_gone": int(web["gone"].astype(bool).sum()),
        "actions": {str(k): int(v) for k, v in actions["kind"].value_counts().sort_index().items()},
        "events": int(len(events)),
        "boxes": int(len(boxes)),
    }


def _write_web_index(root: Path, web: list[dict]) -> None:
    items = []
    for r in web:
        ext = (r["path"] or r["source_id"]).rsplit(".", 1)[-1]
        items.append({"id": r["source_id"], "kind": r["kind"], "media": r["media"], "url": r["url"],
                      "file": r["path"], "mime": _MIME.get(ext, "video/mp4"), "title": r["title"], "query": r["query"]
                      if r["query"] and not r["query"].startswith("#") else None, "tag": r["tag"],
                      "width": r["width"], "height": r["height"], "frames": r["frames"], "fps": r["fps"],
                      "duration_s": r["duration_s"], "bytes": r["bytes"], "uploaded": r["uploaded"],
                      "noai": r["noai"], "private": r["private"], "gone": r["gone"]})
    write_text(root / "web" / "index.json", json.dumps({"items": items}, indent=1) + "\n")


def _write_parquet(df: pd.DataFrame, path: Path) -> None:
    with atomic_path(path) as tmp:
        df.reset_index(drop=True).to_parquet(tmp, index=False)
