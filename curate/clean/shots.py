"""Shots of untrimmed videos (PySceneDetect, CPU): `curate filter --shots` detects them before the windows, so no
window (and no clip cut from merged windows) crosses a shot boundary.

A shot becomes a manifest row over its parent's file (source 'shot', `parent_id` the video, `start_s`/`end_s` its
span, status rejected with `shot: k of n`: like the untrimmed parent, it is replaced by the clips cut inside it).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from curate.core import manifest as mf

DETECTORS = ("content", "adaptive")


@dataclass(frozen=True)
class ShotRules:
    """How shots are found: `content` flags a cut where the HSV / edge change between two frames passes threshold
    (PySceneDetect's default 27); `adaptive` compares that change with its neighbours' (default ratio 3), which
    tolerates camera motion; `fades` adds a detector of fades to and from black; no shot is shorter than
    min_shot_s."""

    detector: str = "content"
    threshold: float | None = None
    fades: bool = True
    min_shot_s: float = 0.5

    def __post_init__(self) -> None:
        if self.detector not in DETECTORS:
            raise ValueError(f"shot detector must be one of {list(DETECTORS)}, not {self.detector!r}")


def detect_shots(path: str | Path, frames: int, fps: float, rules: ShotRules = ShotRules()) -> list[tuple[int, int]]:
    """[start, end) frame spans of the shots of a video file, covering its `frames` frames in order; a shot shorter
    than min_shot_s (the dark frames of a fade, where both detectors fire) joins the shot before it."""
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, ThresholdDetector, open_video

    manager = SceneManager()
    if rules.detector == "content":
        manager.add_detector(ContentDetector(min_scene_len=2, **({} if rules.threshold is None
                                                                  else {"threshold": rules.threshold})))
    else:
        manager.add_detector(AdaptiveDetector(min_scene_len=2, **({} if rules.threshold is None
                                                                   else {"adaptive_threshold": rules.threshold})))
    if rules.fades:
        manager.add_detector(ThresholdDetector(min_scene_len=2))
    manager.detect_scenes(open_video(str(path), backend="pyav"))
    shortest = max(1, round(rules.min_shot_s * fps))
    starts = [0]
    for s in sorted(int(a.frame_num) for a, _ in manager.get_scene_list(start_in_scene=True)):
        if s - starts[-1] >= shortest and frames - s >= shortest:
            starts.append(s)
    return list(zip(starts, starts[1:] + [frames]))


def shot_rows(parent: Mapping, spans: list[tuple[int, int]]) -> pd.DataFrame:
    """The shots of one untrimmed video as rows over the parent's file (rejected: its clips replace it)."""
    fps = float(parent["fps"])
    rows = []
    for k, (a, b) in enumerate(spans):
        s, e = a / fps, b / fps
        rows.append({**{c: parent[c] for c in ("path", "sha256", "bytes", "label", "label_id", "split", "fps", "width",
                                               "height", "codec", "query", "url", "frames", "duration_s")},
                     "item_id": mf.item_id("shot", str(parent["item_id"]), s, e), "source": "shot",
                     "source_id": str(parent["item_id"]), "parent_id": parent["item_id"], "media": "video",
                     "start_s": s, "end_s": e, "status": "rejected", "error": f"shot: {k + 1} of {len(spans)}"})
    return mf.from_records(rows)
