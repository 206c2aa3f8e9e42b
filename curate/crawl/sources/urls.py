"""Plain URL lists: .txt (one URL per line, '#' comments), .csv or .parquet (a `url` column, optional `label`,
`media`, `id`); local files or http(s) URLs."""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

from curate.crawl.plan import PlanContext, candidate, frame, source_of
from curate.crawl.recipe import RecipeError, SourceSpec

MEDIA = {"image": "url", "video": "url"}

VIDEO_EXT = (".mp4", ".webm", ".mkv", ".mov", ".avi", ".m4v", ".ts", ".flv")


def read_list(spec: SourceSpec, ctx: PlanContext, where: str) -> pd.DataFrame | None:
    if not spec.file:
        raise RecipeError(f"{where}.file: a urls source needs a .txt, .csv or .parquet file")
    path = ctx.recipe.resolve(spec.file)
    suffix = Path(path.split("?")[0]).suffix.lower()
    if suffix not in (".txt", ".csv", ".parquet"):
        raise RecipeError(f"{where}.file: {spec.file!r} is not a .txt, .csv or .parquet list")
    try:
        if "://" in path:
            if not ctx.need_file(path):
                return None
            if suffix == ".parquet":
                raise RecipeError(f"{where}.file: download the parquet list first ({path})")
            src: object = io.StringIO(ctx.http.get_text(path, what=f"list:{path}"))
        else:
            src = path
        if suffix == ".txt":
            text = src.getvalue() if isinstance(src, io.StringIO) else Path(src).read_text(encoding="utf-8")
            lines = [ln.strip() for ln in text.splitlines()]
            return pd.DataFrame({"url": [ln for ln in lines if ln and not ln.startswith("#")]})
        df = pd.read_csv(src, dtype=str, keep_default_na=False) if suffix == ".csv" else pd.read_parquet(src)
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise RecipeError(f"{where}.file: cannot read {path}: {exc}") from exc
    if "url" not in df.columns:
        raise RecipeError(f"{where}.file: {path} has no 'url' column (columns: {list(df.columns)})")
    return df


def plan(spec: SourceSpec, ctx: PlanContext, where: str) -> pd.DataFrame:
    source_of(spec, MEDIA, where)
    df = read_list(spec, ctx, where)
    if df is None:
        return frame([])
    fixed = spec.options.get("label")
    records, counts = [], {}
    for rec in df.to_dict("records"):
        url = str(rec["url"]).strip()
        label = rec.get("label") or fixed or None
        if label is not None and label not in ctx.labels:
            continue
        if label is not None and counts.get(label, 0) >= spec.per_class:
            continue
        counts[label] = counts.get(label, 0) + 1
        med = rec.get("media") or spec.media or ("video" if url.split("?")[0].lower().endswith(VIDEO_EXT) else "image")
        records.append(candidate(MEDIA[med], str(rec.get("id") or url), url, label, ctx.labels, med, None, spec.split))
    return frame(records)
