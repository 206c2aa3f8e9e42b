"""Feedback crawls (`curate crawl --feedback FILTERED.parquet`): the recipe's budget (`budget:`, else the sum of its
searching sources' per_class quotas) is shared out over source x class x query in proportion to the keep rate a
filter measured on the last crawl, times the accuracy one item of that media bought in `curate efficiency` where
that is known (`values`). Without feedback a recipe budget is shared out evenly.

Keep rates are smoothed: a class x query with few judged rows leans on its source x query template's pooled rate
(PRIOR rows of pseudo-evidence), and a query never crawled takes that pooled rate.
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from curate.core import manifest as mf
from curate.crawl.plan import source_of
from curate.crawl.recipe import Recipe, RecipeError

PRIOR = 4.0
Key = tuple[str, str, str]   # (recipe source name, label, query)


def keep_rates(filtered: pd.DataFrame) -> pd.DataFrame:
    """Per (source, label, query) of a filtered manifest: rows judged and kept, and the keep rate. Judged: whole rows
    a teacher scored (kept: status ok) and untrimmed videos (kept: cut into at least one clip); a relabelled row
    counts under its first label, as not kept."""
    df = filtered[filtered["parent_id"].isna() & filtered["query"].notna()]
    label = df["original_label"].fillna(df["label"]) if "original_label" in df else df["label"]
    code = df["error"].map(mf.error_code)
    cut = df["error"].fillna("").str.match(r"untrimmed: cut into [1-9]")
    scored = df["teacher_sha"].notna() & ((df["status"] == "ok") | code.isin(["teacher_low", "teacher_mismatch",
                                                                              "review_drop"]))
    untrimmed = code.eq("untrimmed") | df["error"].fillna("").str.match(r"teacher_low: no [\d.]+-s window")
    relabelled = df["original_label"].notna() if "original_label" in df else pd.Series(False, index=df.index)
    kept = ((df["status"] == "ok") & df["teacher_sha"].notna() & ~relabelled) | cut
    t = pd.DataFrame({"source": df["source"], "label": label, "query": df["query"], "judged": scored | untrimmed,
                      "kept": kept & (scored | untrimmed)})
    t = t[t["judged"]].groupby(["source", "label", "query"], as_index=False)[["judged", "kept"]].sum()
    t["rate"] = t["kept"] / t["judged"]
    return t


def allocate(weights: Mapping[Key, float], budget: int) -> dict[Key, int]:
    """budget rows over the keys in proportion to weights (largest remainders; all-zero weights: evenly)."""
    keys = list(weights)
    w = np.array([max(0.0, float(weights[k])) for k in keys])
    if not keys:
        return {}
    w = w if w.sum() > 0 else np.ones(len(keys))
    share = budget * w / w.sum()
    n = np.floor(share).astype(int)
    for i in np.argsort(-(share - n), kind="stable")[: budget - int(n.sum())]:
        n[i] += 1
    return {k: int(v) for k, v in zip(keys, n)}


def budget_quotas(recipe: Recipe, labels: dict[str, int], feedback: pd.DataFrame | None = None,
                  values: Mapping[str, float] | None = None, prior: float = PRIOR) -> tuple[dict[Key, int], pd.DataFrame]:
    """Quotas per (source name, label, query) of the recipe's searching sources, and the table they came from
    (query template, judged, kept, smoothed rate, weight, quota per key)."""
    from curate.crawl.sources import KINDS, plan

    _, listed = plan(recipe, labels, None)        # a dry run names every query the sources would send
    keys = list(dict.fromkeys((q["source"], q["label"], q["query"]) for q in listed.queries if q["source"] != "file"))
    if not keys:
        raise RecipeError(f"{recipe.name}: no searching source (image_search, video_search, feed) takes a budget")
    specs = {s.name: s for s in recipe.sources}
    media = {n: source_of(s, KINDS[s.kind].MEDIA, f"{recipe.name}.{n}") for n, s in specs.items()}
    budget = recipe.budget or sum(specs[n].per_class * len(labels) for n in dict.fromkeys(k[0] for k in keys))
    rows = pd.DataFrame(keys, columns=["source name", "label", "query"])
    rows["source"] = rows["source name"].map(lambda n: media[n][1])
    rows["media"] = rows["source name"].map(lambda n: media[n][0])
    rows["template"] = [_template(specs[n].queries, lab, q) for n, lab, q in keys]
    if feedback is None:
        rows["judged"], rows["kept"], rows["rate"] = 0, 0, 1.0
    else:
        rows = rows.merge(keep_rates(feedback), on=["source", "label", "query"], how="left").fillna(
            {"judged": 0, "kept": 0})
        overall = rows["kept"].sum() / max(1, rows["judged"].sum())
        pool = rows.groupby(["source name", "template"])[["kept", "judged"]].transform("sum")
        pooled = (pool["kept"] + prior * overall) / (pool["judged"] + prior)
        rows["rate"] = (rows["kept"] + prior * pooled) / (rows["judged"] + prior)
    value = dict(values or {})      # media -> top-1 bought per item (curate.experiments.efficiency.item_values)
    top = max(value.values(), default=0.0)
    scale = {m: v / top for m, v in value.items()} if top > 0 else {}
    rows["weight"] = rows["rate"] * rows["media"].map(lambda m: scale.get(m, np.mean(list(scale.values())) if scale
                                                                          else 1.0))
    quotas = allocate({k: w for k, w in zip(keys, rows["weight"])}, int(budget))
    rows["quota"] = [quotas[k] for k in keys]
    return quotas, rows


def _template(templates: list[str], label: str, query: str) -> str:
    """The template of a source that gives this query for this label (the query itself when none does)."""
    from curate.crawl.plan import queries_for

    return next((t for t in templates if query in queries_for([t], label)), query)
