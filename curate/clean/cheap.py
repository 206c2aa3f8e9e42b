"""Cheap filters, run before any model: metadata (resolution, duration) then a few decoded frames (black, frozen,
near-static). Each rejected row gets `status=rejected` and one code; the report holds each filter's seconds and
its cost per kept item, so thresholds can be weighed against what they save the teacher.

Rows are checked in shards through curate.core.executor (threads here, spawned processes or Ray workers); each
finished shard is handed to `commit`, so a killed worker loses only its shard.

Codes: `too_small` (shorter side < min_side), `too_short` / `too_long` (duration), `black` (mean luma of the
sampled frames < black_luma), `frozen` (most steps between sampled frames change nothing: a stuck stream or a
still image posted as video), `static` (frames change, but the median step is below static_diff grey levels).
"""
from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from curate import media
from curate.core.executor import ExecutorSpec, RowWriter, ShardContext, ShardResult

CODES = ("too_small", "too_short", "too_long", "black", "frozen", "static")


@dataclass(frozen=True)
class CheapRules:
    """Thresholds; None switches a check off."""

    min_side: int | None = 32
    min_duration_s: float | None = 0.5
    max_duration_s: float | None = None
    black_luma: float | None = 12.0
    frozen_diff: float | None = 0.2      # a step "changes nothing" below this mean |difference| (grey levels)
    frozen_share: float = 0.5            # ... and the video is frozen when more than this share of steps do
    static_diff: float | None = 0.6      # median step difference below this: near-static
    sample_frames: int = 8
    max_side: int = 128                  # sampled frames are shrunk to this side before measuring


@dataclass
class CheapReport:
    checked: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)   # filter -> seconds spent
    kept: int = 0
    run: ShardResult | None = None

    def cost_per_kept(self) -> dict[str, float]:
        """Seconds each filter spent per item it let through to the teacher."""
        return {k: v / self.kept if self.kept else float("nan") for k, v in self.seconds.items()}


def metadata_code(row: dict, rules: CheapRules) -> str | None:
    """too_small / too_short / too_long from the probe columns, or None."""
    w, h, dur = row.get("width"), row.get("height"), row.get("duration_s")
    if rules.min_side is not None and pd.notna(w) and pd.notna(h) and min(int(w), int(h)) < rules.min_side:
        return f"too_small: {int(w)}x{int(h)} is under {rules.min_side} px"
    if row.get("media") == "video" and pd.notna(dur):
        if pd.notna(row.get("start_s")) and pd.notna(row.get("end_s")):
            dur = float(row["end_s"]) - float(row["start_s"])
        if rules.min_duration_s is not None and dur < rules.min_duration_s:
            return f"too_short: {dur:.2f} s is under {rules.min_duration_s:g} s"
        if rules.max_duration_s is not None and dur > rules.max_duration_s:
            return f"too_long: {dur:.2f} s is over {rules.max_duration_s:g} s"
    return None


def sample(path: str | Path, row: dict, rules: CheapRules) -> np.ndarray:
    """Grey float frames [T, h, w] spread evenly over the row's segment (one frame for images)."""
    if row.get("media") == "image":
        frames = media.read_image(path)[None]
    else:
        fps, n = row.get("fps"), row.get("frames")
        n = int(n) if pd.notna(n) else media.probe(path).frames
        first, last = 0, n - 1
        if pd.notna(row.get("start_s")) and pd.notna(row.get("end_s")) and pd.notna(fps):
            first = min(n - 1, int(float(row["start_s"]) * float(fps)))
            last = max(first, min(n - 1, int(np.ceil(float(row["end_s"]) * float(fps))) - 1))
        idx = np.unique(np.linspace(first, last, rules.sample_frames).round().astype(int))
        frames = media.read_frames(path, idx)
    h, w = frames.shape[1:3]
    scale = min(1.0, rules.max_side / max(h, w))
    out = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
    if scale < 1.0:
        out = [cv2.resize(g, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
               for g in out]
    return np.stack(out).astype(np.float32)


def pixel_code(grey: np.ndarray, rules: CheapRules) -> str | None:
    """black / frozen / static from sampled grey frames, or None."""
    luma = float(grey.mean())
    if rules.black_luma is not None and luma < rules.black_luma:
        return f"black: mean luma {luma:.1f} < {rules.black_luma:g}"
    if len(grey) < 2:
        return None
    steps = np.abs(np.diff(grey, axis=0)).mean(axis=(1, 2))
    if rules.frozen_diff is not None and (steps < rules.frozen_diff).mean() > rules.frozen_share:
        return f"frozen: {int((steps < rules.frozen_diff).sum())} of {len(steps)} steps unchanged"
    if rules.static_diff is not None and float(np.median(steps)) < rules.static_diff:
        return f"static: median frame difference {float(np.median(steps)):.2f} < {rules.static_diff:g}"
    return None


SECONDS = {"metadata": "cheap_metadata_s", "pixels": "cheap_pixels_s"}   # per-row seconds a part carries


def cheap_shard(shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    """Metadata, then pixel checks for the survivors, of one shard (a shard function for curate.core.executor): the
    rows with status/error set, and each row's seconds per filter in the SECONDS columns."""
    rules, root = ctx.options["rules"], Path(ctx.options["root"])
    pixel_checks = any(v is not None for v in (rules.black_luma, rules.frozen_diff, rules.static_diff))
    rows = shard.reset_index(drop=True).copy()
    seconds = {k: np.zeros(len(rows)) for k in SECONDS}
    for i, row in enumerate(rows.to_dict("records")):
        t0 = time.perf_counter()
        err = metadata_code(row, rules)
        t1 = time.perf_counter()
        seconds["metadata"][i] = t1 - t0
        if err is None and pixel_checks:
            try:
                err = pixel_code(sample(root / row["path"], row, rules), rules)
            except media.MediaError as exc:   # undecodable: a failure, not a filter decision
                rows.loc[i, ["status", "error"]] = ["failed", f"{exc.code}: {exc}"]
            seconds["pixels"][i] = time.perf_counter() - t1
        if err is not None:
            rows.loc[i, ["status", "error"]] = ["rejected", err]
    return rows.assign(**{SECONDS[k]: v for k, v in seconds.items()})


def cheap_filter(df: pd.DataFrame, root: str | Path, rules: CheapRules = CheapRules(),
                 executor: ExecutorSpec | None = None, progress: Callable[[int, int], None] | None = None,
                 commit: Callable[[pd.DataFrame], None] | None = None) -> tuple[pd.DataFrame, CheapReport]:
    """Reject usable rows failing a check (metadata first, then pixels for the survivors), in shards on executor
    (default: 2 threads here, 32 rows a shard); commit(rows) after each shard with its rows, progress(rows done, rows)."""
    executor = executor or ExecutorSpec(shard_size=32, workers=2)
    df = df.reset_index(drop=True).copy()
    report = CheapReport(rejected={c: 0 for c in CODES}, seconds={k: 0.0 for k in SECONDS})
    todo = df[(df["status"] == "ok") & df["path"].notna()]
    report.checked = len(todo)
    rows, seen = RowWriter(df), [0]

    def on_part(part: pd.DataFrame) -> None:
        for k, col in SECONDS.items():
            report.seconds[k] += float(part.pop(col).sum())
        rows.put(part, ["status", "error"])
        for err in part.loc[part["status"] == "rejected", "error"]:
            report.rejected[err.split(":", 1)[0]] += 1
        report.kept += int((part["status"] == "ok").sum())
        if commit:
            commit(part)
        seen[0] += len(part)
        if progress:
            progress(seen[0], len(todo))

    report.run = executor.run(cheap_shard, todo, on_part=on_part, options={"rules": rules, "root": str(Path(root))})
    return df, report
