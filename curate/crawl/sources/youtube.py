"""Video search and ids through yt-dlp (`ytsearchN:` and any site it supports), or the loopback web's video search."""
from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from curate.crawl.fetch import FetchError
from curate.crawl.plan import PlanContext, candidate, frame, queries_for, source_of, take_per_class
from curate.crawl.recipe import RecipeError, SourceSpec
from curate.crawl.sources import web_images

MEDIA = {"video": "youtube"}


def flat_entries(url: str, ctx: PlanContext) -> Iterator[dict]:
    """Entries of a yt-dlp search or playlist-like page without downloading anything (extract_flat)."""
    import yt_dlp
    from yt_dlp.utils import DownloadError

    from curate.crawl.download import ytdlp_code

    params = {"quiet": True, "no_warnings": True, "extract_flat": "in_playlist", "skip_download": True,
              "socket_timeout": ctx.recipe.download.timeout_s, "cachedir": False}
    if ctx.recipe.download.proxy:
        params["proxy"] = ctx.recipe.download.proxy
    if ctx.recipe.download.cookies:
        params["cookiefile"] = ctx.recipe.download.cookies
    with yt_dlp.YoutubeDL(params) as ydl:
        try:
            info = ydl.extract_info(url, download=False)
        except DownloadError as exc:
            text = str(exc).removeprefix("ERROR: ")
            raise FetchError(ytdlp_code(text), text[:300]) from exc
    for e in info.get("entries") or [info]:
        link = e.get("webpage_url") or e.get("original_url") or e.get("url")
        if link:
            yield {"id": str(e.get("id") or link), "url": link, "title": e.get("title")}


def plan(spec: SourceSpec, ctx: PlanContext, where: str) -> pd.DataFrame:
    """ids: fetched as given; provider ytdlp: `<prefix><n>:<query>` searches; provider loopback: the JSON search."""
    media, source = source_of(spec, MEDIA, where)
    template = spec.options.get("url", "https://www.youtube.com/watch?v={id}")
    label = spec.options.get("label")
    if label is not None and label not in ctx.recipe.class_names():
        raise RecipeError(f"{where}.options.label: {label!r} is not one of the recipe's classes")
    records = []
    if label is None or label in ctx.labels:
        for vid in spec.ids:
            url = vid if "://" in vid else template.format(id=vid)
            records.append(candidate(source, vid, url, label, ctx.labels, media, None, spec.split))
    provider = spec.provider or ("loopback" if spec.endpoint else None)
    if provider is None:
        return frame(records)
    if provider not in ("ytdlp", "loopback"):
        raise RecipeError(f"{where}.provider: {provider!r} is not one of ['loopback', 'ytdlp']")
    prefix = spec.options.get("search", "ytsearch")
    for lab in ctx.labels:
        taken: dict[str, dict] = {}
        for q in queries_for(spec.queries, lab):
            n = ctx.quota(spec, lab, q)
            if not ctx.need(spec, lab, q, n) or n <= 0 or len(taken) >= ctx.class_quota(spec, lab):
                continue
            if provider == "ytdlp":
                hits = flat_entries(f"{prefix}{n}:{q}", ctx)
            else:
                prov, endpoint, key = web_images.provider_of(spec, ctx, where)
                hits = web_images.search(ctx, prov, endpoint, key, q, "video", min(100, n))
            take_per_class(spec, ctx, lab, hits, q, taken)
        records += [candidate(source, h["id"], h["url"], lab, ctx.labels, media, h["query"], spec.split)
                    for h in taken.values()]
    return frame(records)
