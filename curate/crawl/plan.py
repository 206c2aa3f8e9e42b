"""What planning shares: the plan context, candidate rows, query templates and hashtags from class names.

Every source kind (curate/crawl/sources/) plans its rows with these; `curate.crawl.sources.plan` runs them all.
"""
from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import pandas as pd

from curate.core import manifest as mf
from curate.crawl.fetch import FetchError, Http
from curate.crawl.recipe import Recipe, RecipeError, SourceSpec


@dataclass
class PlanContext:
    """What planning knows: the recipe, the classes asked for, the HTTP client (None: no network), what went wrong."""

    recipe: Recipe
    labels: dict[str, int]
    http: Http | None = None
    every_class: bool = True           # labels are all of the recipe's classes: rows without a label are wanted too
    notes: list[str] = field(default_factory=list)
    queries: list[dict] = field(default_factory=list)  # planned queries: source, label, query, quota
    quotas: dict[tuple[str, str, str], int] | None = None  # (source name, label, query) -> rows (a budget's share)

    def quota(self, spec: SourceSpec, label: str, query: str) -> int:
        """Rows one query may add: its share of the budget (curate/crawl/feedback.py), else per_query or per_class."""
        if self.quotas is None:
            return spec.per_query or spec.per_class
        return self.quotas.get((spec.name, label, query), 0)

    def class_quota(self, spec: SourceSpec, label: str) -> int:
        """Rows a source may add for one class: the sum of its queries' shares, else per_class."""
        if self.quotas is None:
            return spec.per_class
        return sum(v for (src, lab, _), v in self.quotas.items() if src == spec.name and lab == label)

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


def queries_for(templates: Iterable[str], label: str) -> list[str]:
    """Query strings for a class: templates with {label}; a template with {tag} gives one query per hashtag."""
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
    cap, whole = ctx.quota(spec, label, query), ctx.class_quota(spec, label)
    n = 0
    try:
        for hit in hits:
            if len(taken) >= whole or n >= cap:
                return
            if hit["id"] not in taken:
                taken[hit["id"]] = {**hit, "query": query}
                n += 1
    except FetchError as exc:
        ctx.notes.append(f"{spec.name}: query {query!r} for {label!r} stopped early: {exc}")


def source_of(spec: SourceSpec, media_sources: Mapping[str, str], where: str) -> tuple[str, str]:
    """(media, manifest source) of a source spec: its `media` (default: the kind's first) and what the kind
    records it as; a media the kind cannot give is a recipe error."""
    media = spec.media or next(iter(media_sources))
    if media not in media_sources:
        raise RecipeError(f"{where}.media: a {spec.kind} source cannot give {media}s "
                          f"(it gives {', '.join(media_sources)})")
    return media, media_sources[media]


def _stem(word: str) -> str:
    if word.endswith("ing") and len(word) > 5:
        return word[:-3]
    if word.endswith("s") and not word.endswith("ss") and len(word) > 3:
        return word[:-1]
    return word


def normalise_query(text: str) -> str:
    """Lower case, words of letters and digits separated by single spaces."""
    return " ".join(re.findall(r"[a-z0-9]+", text.lower()))


def normalise_tag(text: str) -> str:
    """A hashtag as feeds store it: lower case letters and digits only ('#Square_Slides-Left' -> 'squareslidesleft')."""
    return "".join(re.findall(r"[a-z0-9]+", text.lower()))


def hashtags(name: str) -> list[str]:
    """Hashtags for a class name, OmniSource-style: joined, stemmed and permuted words."""
    words = normalise_query(name).split()
    stems = [_stem(w) for w in words]
    candidates = ["".join(words), "".join(stems), "".join(stems[::-1])]
    return list(dict.fromkeys(candidates))
