"""Hashtag feeds of images and videos: the loopback web's JSON feeds, or any tag page yt-dlp can list.

Tags come from class names OmniSource-style (joined, stemmed and permuted words) through `{tag}` in a query.
"""
from __future__ import annotations

from collections.abc import Iterator
from urllib.parse import quote, urlencode

import pandas as pd

from curate.crawl.plan import PlanContext, candidate, frame, queries_for, source_of, take_per_class
from curate.crawl.recipe import RecipeError, SourceSpec
from curate.crawl.sources.youtube import flat_entries

MEDIA = {"image": "feed_image", "video": "feed_video"}


def feed(ctx: PlanContext, endpoint: str, tag: str, media: str) -> Iterator[dict]:
    """Posts of one loopback feed, following its `next` links."""
    url = f"{endpoint}/tags/{quote(tag.lstrip('#'), safe='')}?{urlencode({'type': media, 'per_page': 100})}"
    while url:
        data = ctx.http.get_json(url, what=f"feed:{tag}")
        for r in data["results"]:
            yield {"id": r["id"], "url": r.get("page_url") or r["url"], "title": r.get("title")}
        url = data.get("next")


def plan(spec: SourceSpec, ctx: PlanContext, where: str) -> pd.DataFrame:
    media, source = source_of(spec, MEDIA, where)
    provider = spec.provider or "loopback"
    if provider not in ("loopback", "ytdlp"):
        raise RecipeError(f"{where}.provider: {provider!r} is not one of ['loopback', 'ytdlp']")
    if provider == "ytdlp" and "url" not in spec.options:
        raise RecipeError(f"{where}.options.url: a ytdlp feed needs a tag page template such as "
                          "'https://example.com/tag/{tag}'")
    templates = spec.queries if spec.queries != ["{label}"] else ["#{tag}"]
    records = []
    for label in ctx.labels:
        taken: dict[str, dict] = {}
        for q in queries_for(templates, label):
            n = ctx.quota(spec, label, q)
            if not ctx.need(spec, label, q, n) or n <= 0 or len(taken) >= ctx.class_quota(spec, label):
                continue
            tag = q.lstrip("#")
            if provider == "loopback":
                hits = feed(ctx, (spec.endpoint or "http://127.0.0.1:8000").rstrip("/"), tag, media)
            else:
                hits = flat_entries(spec.options["url"].format(tag=quote(tag, safe="")), ctx)
            take_per_class(spec, ctx, label, hits, q, taken)
        records += [candidate(source, h["id"], h["url"], label, ctx.labels, media, h["query"], spec.split)
                    for h in taken.values()]
    return frame(records)
