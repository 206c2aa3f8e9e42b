"""Kinetics-style annotation CSVs (label,youtube_id,time_start,time_end,split[,is_cc]) → video segment rows.

Vectorised: a 250k-row CSV plans in about a second (see bench/crawl.py).
"""
from __future__ import annotations

import io

import numpy as np
import pandas as pd

from curate.core import manifest as mf
from curate.crawl.plan import PlanContext, frame, source_of
from curate.crawl.recipe import RecipeError, SourceSpec, TargetSpec

MEDIA = {"video": "kinetics"}

REQUIRED = ("youtube_id", "time_start", "time_end")


def plan_target(target: TargetSpec, ctx: PlanContext, where: str) -> pd.DataFrame:
    """The recipe's target dataset: every CSV, with its split column."""
    parts = [read_csv(target.csv, i, ctx, where) for i in range(len(target.csv))]
    parts = [p for p in parts if p is not None]
    if not parts:
        return mf.empty()
    return rows(pd.concat(parts, ignore_index=True), ctx, target.video_url, target.splits, target.limit_per_class,
                split=None)


def plan(spec: SourceSpec, ctx: PlanContext, where: str) -> pd.DataFrame:
    """A kinetics-kind source (e.g. the untrimmed videos behind a CSV): rows with the source's split."""
    source_of(spec, MEDIA, where)
    if not spec.file:
        raise RecipeError(f"{where}.file: a kinetics source needs an annotation CSV")
    df = read_csv([spec.file], 0, ctx, where + ".file")
    if df is None:
        return mf.empty()
    url = spec.options.get("video_url", "https://www.youtube.com/watch?v={youtube_id}")
    whole = bool(spec.options.get("whole_video", False))
    return rows(df, ctx, url, None, spec.per_class, split=spec.split, whole=whole)


def read_csv(files: list[str], i: int, ctx: PlanContext, where: str) -> pd.DataFrame | None:
    path = ctx.recipe.resolve(files[i])
    if "://" in path:
        if not ctx.need_file(path):
            return None
        data = io.StringIO(ctx.http.get_text(path, what=f"csv:{path}"))
    else:
        data = path
    try:
        df = pd.read_csv(data, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{where}[{i}]: cannot read {path}: {exc}") from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise RecipeError(f"{where}[{i}]: {path} lacks column(s) {missing}; a Kinetics CSV has "
                          "label,youtube_id,time_start,time_end,split")
    return df


def rows(df: pd.DataFrame, ctx: PlanContext, video_url: str, splits: list[str] | None, limit: int | None,
         split: str | None, whole: bool = False) -> pd.DataFrame:
    """Annotation rows → manifest rows (source kinetics), vectorised."""
    label = df["label"] if "label" in df.columns else pd.Series([""] * len(df))
    sp = df["split"].str.strip().str.lower() if "split" in df.columns else pd.Series(["train"] * len(df))
    sp = sp.replace({"validate": "val", "validation": "val"})
    keep = label.isin(list(ctx.labels)) | ((label == "") & (sp == "test"))  # test CSVs carry no labels
    if splits is not None:
        keep &= sp.isin(splits)
    dropped = int((~label.isin(list(ctx.labels)) & (label != "")).sum())
    if dropped:
        ctx.notes.append(f"kinetics: {dropped} annotation rows of classes not planned were skipped")
    df, label, sp = df[keep], label[keep], sp[keep]
    if limit is not None:
        first = label.groupby(label).cumcount() < limit
        df, label, sp = df[first], label[first], sp[first]
    yid = df["youtube_id"].str.strip()
    start = pd.to_numeric(df["time_start"], errors="coerce")
    end = pd.to_numeric(df["time_end"], errors="coerce")
    bad = start.isna() | end.isna() | (end <= start) | (start < 0) | (yid == "")
    if bad.any():
        ctx.notes.append(f"kinetics: {int(bad.sum())} rows with a bad id or time span were skipped")
        yid, start, end, label, sp = yid[~bad], start[~bad], end[~bad], label[~bad], sp[~bad]
    if whole:
        start = end = pd.Series([np.nan] * len(yid), index=yid.index)
    pre, _, post = video_url.partition("{youtube_id}")
    ids = [mf.item_id("kinetics", y, s, e) for y, s, e in
           zip(yid.tolist(), [None if np.isnan(x) else x for x in start.tolist()],
               [None if np.isnan(x) else x for x in end.tolist()])]
    return frame({
        "item_id": ids, "source": "kinetics", "source_id": yid.to_numpy(), "url": (pre + yid + post).to_numpy(),
        "label": label.replace("", None).to_numpy(), "label_id": label.map(ctx.labels).astype("Int32").to_numpy(),
        "split": sp.to_numpy() if split is None else split, "media": "video", "start_s": start.to_numpy(),
        "end_s": end.to_numpy(), "status": "planned",
    })
