"""Which yt-dlp extractor a recipe needs, found offline, and whether the installed yt-dlp marks it as not working.

yt-dlp flags an extractor it knows to be broken (`_WORKING = False`, `IE.working()`), warns once and runs it anyway;
a crawl of such a source fails row by row. `dead_extractors` names them before anything is sent.
"""
from __future__ import annotations

from collections.abc import Iterator
from functools import lru_cache

from curate.crawl.recipe import Recipe

SAMPLE_ID, SAMPLE_TAG, SAMPLE_QUERY = "dQw4w9WgXcQ", "parkour", "parkour"


def yt_dlp_urls(recipe: Recipe) -> Iterator[tuple[str, str]]:
    """(where in the recipe, a sample URL yt-dlp will be given for it), without planning anything."""
    if recipe.target is not None:
        yield f"{recipe.name}.target.video_url", recipe.target.video_url.format(youtube_id=SAMPLE_ID)
    for spec in recipe.sources:
        where = f"{recipe.name}.sources {spec.name!r}"
        if spec.kind == "video_search":
            if spec.provider == "ytdlp":
                yield where, f"{spec.options.get('search', 'ytsearch')}1:{SAMPLE_QUERY}"
            yield where, spec.options.get("url", "https://www.youtube.com/watch?v={id}").format(id=SAMPLE_ID)
        elif spec.kind == "feed" and spec.provider == "ytdlp" and "url" in spec.options:
            yield where, spec.options["url"].format(tag=SAMPLE_TAG)
        elif spec.kind == "kinetics":
            yield where, spec.options.get("video_url", "https://www.youtube.com/watch?v={youtube_id}").format(
                youtube_id=SAMPLE_ID)


@lru_cache(maxsize=256)
def extractor_of(url: str) -> tuple[str, bool]:
    """(extractor key, working) of the first installed yt-dlp extractor that claims url ('Generic' if none)."""
    from yt_dlp.extractor import gen_extractor_classes

    ie = next(c for c in gen_extractor_classes() if c.suitable(url))
    return ie.ie_key(), bool(ie.working())


def dead_extractors(recipe: Recipe) -> list[str]:
    """One warning per place in the recipe whose URLs go to an extractor yt-dlp marks as not working."""
    import yt_dlp

    out = []
    for where, url in yt_dlp_urls(recipe):
        key, working = extractor_of(url)
        if not working:
            out.append(f"{where}: yt-dlp {yt_dlp.version.__version__} marks its extractor {key} (for {url}) as not "
                       "working; its rows will most likely fail (pick another site, e.g. YouTube hashtag pages "
                       "https://www.youtube.com/hashtag/{tag})")
    return out
