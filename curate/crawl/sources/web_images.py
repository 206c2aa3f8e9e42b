"""Web image search behind one small interface: the loopback web's API, Openverse (keyless), Pexels (keyed).

A provider is two functions: `request(endpoint, query, page, per_page, media, key) -> (url, headers)` and
`parse(json) -> (hits, more)`, where a hit is a dict with id, url, title, width, height.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import pandas as pd

from curate.crawl.plan import PlanContext, candidate, frame, queries_for, source_of, take_per_class
from curate.crawl.recipe import RecipeError, SourceSpec

MEDIA = {"image": "web_image", "video": "youtube"}

Hit = dict[str, Any]


@dataclass(frozen=True)
class Provider:
    endpoint: str
    request: Callable[[str, str, int, int, str, str | None], tuple[str, dict[str, str]]]
    parse: Callable[[Any], tuple[list[Hit], bool]]
    per_page: int
    key_env: str | None = None  # keyed providers: the environment variable holding the key, unless the recipe names one


def _loopback_request(endpoint: str, q: str, page: int, per_page: int, media: str, key: str | None):
    return f"{endpoint}/search?{urlencode({'q': q, 'type': media, 'page': page, 'per_page': per_page})}", {}


def _loopback_parse(data: Any) -> tuple[list[Hit], bool]:
    hits = [{"id": r["id"], "url": r.get("page_url") or r["url"], "title": r.get("title"),
             "width": r.get("width"), "height": r.get("height")} for r in data["results"]]
    return hits, bool(data.get("next"))


def _openverse_request(endpoint: str, q: str, page: int, per_page: int, media: str, key: str | None):
    kind = "images" if media == "image" else "audio"
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return f"{endpoint}/v1/{kind}/?{urlencode({'q': q, 'page': page, 'page_size': per_page})}", headers


def _openverse_parse(data: Any) -> tuple[list[Hit], bool]:
    hits = [{"id": r["id"], "url": r["url"], "title": r.get("title"), "width": r.get("width"),
             "height": r.get("height")} for r in data["results"]]
    return hits, int(data.get("page") or 1) < int(data.get("page_count") or 0)


def _pexels_request(endpoint: str, q: str, page: int, per_page: int, media: str, key: str | None):
    path = "/v1/search" if media == "image" else "/videos/search"
    return f"{endpoint}{path}?{urlencode({'query': q, 'page': page, 'per_page': per_page})}", {"Authorization": key or ""}


def _pexels_parse(data: Any) -> tuple[list[Hit], bool]:
    hits = [{"id": str(p["id"]), "url": p["src"]["original"], "title": p.get("alt"), "width": p.get("width"),
             "height": p.get("height")} for p in data.get("photos", [])]
    hits += [{"id": str(v["id"]), "url": v["url"], "title": None, "width": v.get("width"), "height": v.get("height")}
             for v in data.get("videos", [])]
    return hits, bool(data.get("next_page"))


PROVIDERS: dict[str, Provider] = {
    "loopback": Provider("http://127.0.0.1:8000", _loopback_request, _loopback_parse, 100),
    "openverse": Provider("https://api.openverse.org", _openverse_request, _openverse_parse, 20),
    "pexels": Provider("https://api.pexels.com", _pexels_request, _pexels_parse, 80, key_env="PEXELS_API_KEY"),
}


def provider_of(spec: SourceSpec, ctx: PlanContext, where: str) -> tuple[Provider, str, str | None]:
    """(provider, endpoint, key) of a source; the key only ever comes from the environment (a dry run without it
    says so in the notes; a real crawl stops)."""
    name = spec.provider or "loopback"
    if name not in PROVIDERS:
        raise RecipeError(f"{where}.provider: {name!r} is not one of {sorted(PROVIDERS)}")
    prov = PROVIDERS[name]
    env = spec.api_key_env or prov.key_env
    key = os.environ.get(env) if env else None
    if prov.key_env and not key:
        missing = f"{where}: provider {name!r} needs an API key in the environment variable {env}"
        if ctx.http is not None:
            raise RecipeError(missing)
        ctx.notes.append(missing + " (a real crawl stops here)")
    return prov, (spec.endpoint or prov.endpoint).rstrip("/"), key


def search(ctx: PlanContext, prov: Provider, endpoint: str, key: str | None, query: str, media: str,
           per_page: int) -> Iterator[Hit]:
    """Hits of one query, page after page, while the provider says there are more."""
    page = 1
    while True:
        url, headers = prov.request(endpoint, query, page, per_page, media, key)
        hits, more = prov.parse(ctx.http.get_json(url, headers, what=f"search:{query}"))
        yield from hits
        if not more or not hits:
            return
        page += 1


def plan(spec: SourceSpec, ctx: PlanContext, where: str) -> pd.DataFrame:
    """Search every class's queries; keep up to per_class distinct hits per class."""
    prov, endpoint, key = provider_of(spec, ctx, where)
    media, source = source_of(spec, MEDIA, where)
    records = []
    for label in ctx.labels:
        taken: dict[str, Hit] = {}
        for q in queries_for(spec.queries, label):
            n = ctx.quota(spec, label, q)
            if ctx.need(spec, label, q, n) and n > 0 and len(taken) < ctx.class_quota(spec, label):
                take_per_class(spec, ctx, label, search(ctx, prov, endpoint, key, q, media, min(prov.per_page, n)), q,
                               taken)
        records += [candidate(source, str(h["id"]), h["url"], label, ctx.labels, media, h["query"], spec.split)
                    for h in taken.values()]
    return frame(records)
