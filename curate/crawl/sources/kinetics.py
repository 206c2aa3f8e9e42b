"""Kinetics annotation CSVs as released (curate.formats.kinetics) -> video segment rows, labelled or not.

Vectorised: a 250k-row CSV plans in about a second (see bench/crawl.py).
"""
from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd

from curate.core import manifest as mf
from curate.crawl.fetch import FetchError
from curate.crawl.plan import PlanContext, frame, source_of
from curate.crawl.recipe import RecipeError, SourceSpec, TargetSpec
from curate.formats import kinetics

MEDIA = {"video": "kinetics"}


def plan_target(target: TargetSpec, ctx: PlanContext, where: str) -> pd.DataFrame:
    """The recipe's target dataset: every CSV, with its split column."""
    parts = [read_csv(target.csv, i, ctx, where + ".csv") for i in range(len(target.csv))]
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
    """One annotation CSV of the recipe (a path or a URL), normalised by curate.formats.kinetics.read_csv."""
    path = ctx.recipe.resolve(files[i])
    if "://" in path:
        if not ctx.need_file(path):
            return None
        try:
            data = io.StringIO(ctx.http.get_text(path, what=f"csv:{path}"))
        except FetchError as exc:
            raise RecipeError(f"{where}[{i}]: cannot fetch {path}: {exc} (is the site up?)") from exc
    elif not Path(path).is_file():
        raise RecipeError(f"{where}[{i}]: no file {path}" + (
            f" (relative paths are read from {ctx.recipe.base_dir})" if not Path(files[i]).is_absolute() else ""))
    else:
        data = path
    try:
        return kinetics.read_csv(data, name=path)
    except kinetics.KineticsError as exc:
        raise RecipeError(f"{where}[{i}]: {exc}") from exc


def rows(df: pd.DataFrame, ctx: PlanContext, video_url: str, splits: list[str] | None, limit: int | None,
         split: str | None, whole: bool = False) -> pd.DataFrame:
    """Annotation rows -> manifest rows (source kinetics), vectorised. Rows without a label (the label-less test
    files) are planned too: they are fetched like any other and keep split test and no label."""
    label, sp = df["label"], df["split"]
    keep = label.isin(list(ctx.labels)) | ((label == "") & ctx.every_class)
    if splits is not None:
        keep &= sp.isin(splits)
    dropped = int((~label.isin(list(ctx.labels)) & (label != "")).sum())
    if dropped:
        ctx.notes.append(f"kinetics: {dropped} annotation rows of classes not planned were skipped")
    df = df[keep]
    if limit is not None:
        df = df[(df["label"] == "") | (df.groupby("label").cumcount() < limit)]
    bad = kinetics.bad_spans(df)
    if bad.any():
        lines = ", ".join(map(str, df.loc[bad, "line"].head(5)))
        ctx.notes.append(f"kinetics: {int(bad.sum())} rows with a bad id or time span were skipped (lines {lines}"
                         + (", ...)" if bad.sum() > 5 else ")"))
        df = df[~bad]
    start, end = df["time_start"], df["time_end"]
    if whole:
        start = end = pd.Series([np.nan] * len(df), index=df.index)
    yid = df["youtube_id"]
    pre, _, post = video_url.partition("{youtube_id}")
    ids = [mf.item_id(MEDIA["video"], y, s, e) for y, s, e in
           zip(yid.tolist(), [None if np.isnan(x) else x for x in start.tolist()],
               [None if np.isnan(x) else x for x in end.tolist()])]
    return frame({
        "item_id": ids, "source": MEDIA["video"], "source_id": yid.to_numpy(), "url": (pre + yid + post).to_numpy(),
        "label": df["label"].replace("", None).to_numpy(), "label_id": df["label"].map(ctx.labels).astype("Int32").to_numpy(),
        "split": df["split"].to_numpy() if split is None else split, "media": "video", "start_s": start.to_numpy(),
        "end_s": end.to_numpy(), "status": "planned",
    })
