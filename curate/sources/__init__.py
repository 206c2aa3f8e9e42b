"""Sources: a recipe's target and web sources → candidate manifest rows (status planned), one module per kind.

Each kind module has `plan(spec, ctx, where)` returning a DataFrame of rows; kinds that must ask the network
(search APIs, feeds, remote CSVs) only list their queries when `ctx.http` is None (a dry run).
"""
from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from curate import manifest as mf
from curate.fetch import FetchError, Http
from curate.recipe import Recipe, RecipeError, SourceSpec

# which manifest `source` each kind writes, by media
SOURCE_NAMES = {("image_search", "image"): "web_image", ("image_search", "video"): "youtube",
                ("video_search", "video"): "youtube", ("feed", "image"): "feed_image", ("feed", "video"): "feed_video",
                ("urls", "image"): "url", ("urls", "video"): "url", ("kinetics", "video"): "kinetics"}
DEFAULT_MEDIA = {"image_search": "image", "video_search": "video", "feed": "image", "urls": "image",
                 "kinetics": "video"}


@dataclass
class PlanContext:
    """What planning knows: the recipe, the classes asked for, the HTTP client (None: no network), what went wrong."""

    recipe: Recipe
    labels: dict[str, int]
    http: Http | None = None
    notes: list[str] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)  # planned queries: source, label, query, quota

    def need(self, spec: SourceSpec, label: str, query: str, quota: int) -> bool:
        """Record a planned query; True when it may be sent now (not a dry run)."""
        self.queries.append({"source": spec.name, "label": label, "query": query, "quota": quota})
        return self.http is not None

    def need_file(self, url: str) -> bool:
        """Record a remote file planning must read; True when it may be read now."""
        self.queries.append({"source": "file", "label": None, "query": url, "quota": None})
        return self.http is not None


def candidate(source: str, source_id: str, url: str, label: str | None, labels: dict[str, int], media: str,
              query: str | None = None, split: str = "web", start_s: float | None = None,
              end_s: float | None = None) -> dict[str, Any]:
    """One planned manifest row; item_id from (source, source_id, span), never from titles."""
    return {"item_id": mf.item_id(source, source_id, start_s, end_s), "source": source, "source_id": source_id,
            "url": url, "query": query, "label": label, "label_id": labels.get(label) if label else None,
            "split": split, "media": media, "start_s": start_s, "end_s": end_s, "status": "planned"}


def frame(columns: dict[str, Any] | list[dict]) -> pd.DataFrame:
    """Rows (records or columns) → a manifest DataFrame with every schema column and type."""
    df = pd.DataFrame(columns)
    if df.empty:
        return mf.empty()
    return mf.from_table(mf.to_table(df))


def media_of(spec: SourceSpec) -> str:
    return spec.media or DEFAULT_MEDIA[spec.kind]


def source_name(spec: SourceSpec) -> str:
    return SOURCE_NAMES[(spec.kind, media_of(spec))]


def queries_for(templates: Iterable[str], label: str) -> list[str]:
    """Query strings for a class: templates with {label}; a template with {tag} gives one query per hashtag."""
    from curate.synth.classes import hashtags

    out: list[str] = []
    for t in templates:
        try:
            out += [t.format(label=label, tag=tag) for tag in hashtags(label)] if "{tag}" in t else [t.format(label=label)]
        except (KeyError, IndexError, ValueError) as exc:
            raise RecipeError(f"query template {t!r}: only {{label}} and {{tag}} may be used ({exc})") from exc
    return list(dict.fromkeys(out))


def take_per_class(spec: SourceSpec, ctx: PlanContext, label: str, hits: Iterator[dict], query: str,
                   taken: dict[str, dict]) -> None:
    """Add hits (dicts with id and url) of one query into taken until the class quota or per-query cap is met."""
    cap = spec.per_query or spec.per_class
    n = 0
    try:
        for hit in hits:
            if len(taken) >= spec.per_class or n >= cap:
                return
            if hit["id"] not in taken:
                taken[hit["id"]] = {**hit, "query": query}
                n += 1
    except FetchError as exc:
        ctx.notes.append(f"{spec.name}: query {query!r} for {label!r} stopped early: {exc}")


def plan(recipe: Recipe, labels: dict[str, int], http: Http | None) -> tuple[pd.DataFrame, PlanContext]:
    """Every candidate row of the recipe for the given classes (target CSVs first, then sources in order)."""
    from curate.sources import feeds, kinetics, urls, web_images, youtube

    kinds = {"kinetics": kinetics, "urls": urls, "image_search": web_images, "video_search": youtube, "feed": feeds}
    ctx = PlanContext(recipe, labels, http)
    frames = []
    if recipe.target is not None:
        frames.append(kinetics.plan_target(recipe.target, ctx, f"{recipe.name}.target"))
    for i, spec in enumerate(recipe.sources):
        where = f"{recipe.name}.sources[{i}]"
        if (spec.kind, media_of(spec)) not in SOURCE_NAMES:
            raise RecipeError(f"{where}.media: a {spec.kind} source cannot give {media_of(spec)}s")
        frames.append(kinds[spec.kind].plan(spec, ctx, where))
    frames = [f for f in frames if len(f)]
    df = pd.concat(frames, ignore_index=True) if frames else mf.empty()
    df["recipe_sha"] = recipe.sha()
    return df, ctx
