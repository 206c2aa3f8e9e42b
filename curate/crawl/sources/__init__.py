"""Source kinds: a recipe source's `kind` -> the module here that plans its candidate rows (status planned).

A kind module has `MEDIA` (media -> the manifest `source` it records, the first being the default media) and
`plan(spec, ctx, where) -> DataFrame`; kinds that must ask the network (search APIs, feeds, remote CSVs) only list
their queries when `ctx.http` is None (a dry run). A new kind is one new module plus one line in KINDS.
"""
from __future__ import annotations

import pandas as pd

from curate.core import manifest as mf
from curate.crawl.fetch import Http
from curate.crawl.plan import PlanContext
from curate.crawl.recipe import Recipe
from curate.crawl.sources import feeds, kinetics, urls, web_images, youtube

KINDS = {"image_search": web_images, "video_search": youtube, "feed": feeds, "urls": urls, "kinetics": kinetics}


def plan(recipe: Recipe, labels: dict[str, int], http: Http | None, every_class: bool = True,
         quotas: dict[tuple[str, str, str], int] | None = None) -> tuple[pd.DataFrame, PlanContext]:
    """Every candidate row of the recipe for the given classes (target CSVs first, then sources in order); rows
    without a label (label-less test files) only when every class is asked for; quotas: rows per (source name,
    label, query) of the searching sources (curate/crawl/feedback.py), instead of their per_class / per_query."""
    ctx = PlanContext(recipe, labels, http, every_class, quotas=quotas)
    frames = []
    if recipe.target is not None:
        frames.append(kinetics.plan_target(recipe.target, ctx, f"{recipe.name}.target"))
    for i, spec in enumerate(recipe.sources):
        frames.append(KINDS[spec.kind].plan(spec, ctx, f"{recipe.name}.sources[{i}]"))
    frames = [f for f in frames if len(f)]
    df = pd.concat(frames, ignore_index=True) if frames else mf.empty()
    df["recipe_sha"] = recipe.sha()
    return df, ctx
