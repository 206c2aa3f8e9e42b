"""Curation beyond the keep rule, measured on the demo world against its truth, from round 1's work: shots (clips
that straddle a planted cut, with and without `--shots`), label issues and relabels (Cleanlab on round 1's
out-of-sample probabilities), and a feedback crawl (the clean rate of a second crawl of the same budget, shared out
evenly or by round 1's keep rates)."""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from curate.clean.filter import is_untrimmed, kept_spans
from curate.clean.label_issues import relabel_mask
from curate.clean.teacher import Ensemble
from curate.core import manifest as mf
from curate.demo.spec import LoopSpec
from curate.demo.synth import World
from curate.demo.truth import judged_rows, right_label, true_labels

MEDIA = ("image", "video", "all")


def straddles(clips: pd.DataFrame, parents: pd.DataFrame, world: World) -> pd.Series:
    """Per clip (parent_id, start_s, end_s): does it hold a planted cut of its parent more than a frame inside it?
    NA for clips of videos without planted cuts (all but the montages)."""
    truth = mf.read(world.truth_web, validate_rows=False).dropna(subset=["sha256"]).drop_duplicates("sha256")
    shots = pd.read_parquet(world.truth_shots)
    cuts = shots[shots["shot"] > 0].groupby("video_id")["start_s"].apply(list)
    vid = parents.set_index("item_id")["sha256"].map(truth.set_index("sha256")["source_id"])
    tol = 1.0 / world.spec.fps
    out = pd.Series(pd.NA, index=clips.index, dtype="boolean")
    for i, c in clips.iterrows():
        planted = cuts.get(vid.get(c["parent_id"]))
        if planted is not None:
            out[i] = any(c["start_s"] + tol < t < c["end_s"] - tol for t in planted)
    return out


def shot_measures(r1: pd.DataFrame, deduped: pd.DataFrame, web_root: Path, teachers: Mapping[str, Ensemble],
                  spec: LoopSpec, world: World) -> pd.DataFrame:
    """Clips of montage videos without shots (windows scored and merged again, nothing cut) and with them (round 1's
    clips): how many, the share straddling a planted cut, and the share right (an action of its label covers half)."""
    parents = deduped[is_untrimmed(deduped, spec.untrimmed_over_s)]
    whole = r1[(r1["media"] == "video") & r1["parent_id"].isna()]     # their scores set the relative rule's bar
    _, spans, _, _ = kept_spans(mf.upsert(whole, parents), web_root, teachers["video"], spec.keep, spec.window_s,
                                longer_than_s=spec.untrimmed_over_s)
    before = mf.from_records([{"item_id": mf.item_id("clip", str(p["item_id"]), s, e), "parent_id": p["item_id"],
                               "start_s": s, "end_s": e, "label": p["label"], "source": "clip"}
                              for p, s, e, _ in spans])
    after = r1[(r1["source"] == "clip") & (r1["status"] == "ok")]
    rows = []
    for name, clips in (("without --shots", before), ("with --shots", after)):
        both = pd.concat([r1[r1["parent_id"].isna()], clips], ignore_index=True)
        both = both.drop_duplicates("item_id", keep="last").reset_index(drop=True)
        mine = both["item_id"].isin(clips["item_id"])
        cross = straddles(both[mine], r1, world)
        right = right_label(both, world)[mine]
        montage = cross.notna()
        rows.append({"clips": name, "montage clips": int(montage.sum()),
                     "straddling a planted cut": float(cross[montage].astype(bool).mean()) if montage.any() else np.nan,
                     "precision (montage clips)": float(right[montage].astype(float).mean()) if montage.any() else np.nan,
                     "precision (all clips)": float(right.dropna().astype(float).mean()) if right.notna().any() else np.nan})
    return pd.DataFrame(rows)


def issue_measures(r1: pd.DataFrame, right: pd.Series, world: World, min_p: float) -> pd.DataFrame:
    """Per media: the flagged rows against the planted mislabels (precision, recall), the teacher score's lowest rows
    at the same recall (the keep rule's ranking), the rule's own rejections, and the relabel rule at min_p."""
    if "label_issue" not in r1:
        return pd.DataFrame()
    judged = judged_rows(r1, right) & r1["label_issue"].notna()
    true = true_labels(r1, world)
    relabel = relabel_mask(r1, min_p)
    rows = []
    for m in MEDIA:
        j = judged & ((r1["media"] == m) if m != "all" else True)
        wrong, flag = ~right[j].astype(bool), r1.loc[j, "label_issue"].astype(bool)
        score = r1.loc[j, "teacher_score"].astype(float)
        if not j.any() or not wrong.any():
            continue
        recall = float(flag[wrong].mean())
        k = int(np.searchsorted(np.cumsum(wrong[score.sort_values(kind="stable").index].to_numpy()),
                                np.ceil(recall * wrong.sum() - 1e-9)) + 1)
        lowest = wrong[score.sort_values(kind="stable").index[:k]]
        rejected = r1.loc[j, "status"] != "ok"
        moved = j & relabel
        good = r1.loc[moved, "suggested_label"] == true[moved]
        rows.append({"media": m, "judged": int(j.sum()), "mislabelled": int(wrong.sum()), "flagged": int(flag.sum()),
                     "flag precision": float(wrong[flag].mean()) if flag.any() else np.nan, "flag recall": recall,
                     "lowest p at that recall: precision": float(lowest.mean()),
                     "rule's rejections: precision": float(wrong[rejected].mean()) if rejected.any() else np.nan,
                     "rule's rejections: recall": float(rejected[wrong].mean()),
                     f"relabelled (p >= {min_p:g})": int(moved.sum()),
                     "relabel accuracy": float(good.mean()) if moved.any() else np.nan,
                     "good items added": int((good & (r1.loc[moved, "status"] != "ok")).sum())})
    return pd.DataFrame(rows)


def feedback_measures(world: World, web_url: str, out: Path, r1: pd.DataFrame) -> pd.DataFrame:
    """Two second crawls of the image search with the same budget (its per_query a class): shared out evenly, and by
    round 1's keep rates; their clean rates against the truth and the share of the budget each query template got."""
    from curate.crawl.crawler import crawl
    from curate.crawl.recipe import load_recipe
    from curate.demo.loop import demo_recipe

    rows = []
    for arm, feedback in (("even", None), ("--feedback", r1)):
        path = demo_recipe(web_url, out / "feedback" / arm.strip("-"), world.classes)
        data = yaml.safe_load(path.read_text())
        images = next(s for s in data["sources"] if s["kind"] == "image_search")
        recipe = load_recipe(path, {"sources": [images], "budget": images["per_query"] * len(world.classes)})
        res = crawl(recipe, feedback=feedback)
        got = res.df[(res.df["status"] == "ok") & res.df["parent_id"].isna()].reset_index(drop=True)
        right = right_label(got, world)
        shares = res.quotas.groupby("template")["quota"].sum()
        rows.append({"second crawl": arm, "budget": int(recipe.budget), "items": len(got),
                     "clean rate": float(right.dropna().astype(float).mean()),
                     **{f"share: {q}": int(n) for q, n in shares.items()}})
    return pd.DataFrame(rows)


def curation(world: World, web_url: str, out: Path, spec: LoopSpec, deduped: pd.DataFrame, round1: Mapping[str, Any],
             web_root: Path, teachers: Mapping[str, Ensemble]) -> dict[str, pd.DataFrame]:
    """The three measurements (tables) on round 1's manifest."""
    r1, right = round1["manifest"], round1["right"]
    tables = {"issues": issue_measures(r1, right, world, spec.relabel_min_p),
              "feedback": feedback_measures(world, web_url, out, r1)}
    if spec.shots is not None and "video" in teachers:
        tables["shots"] = shot_measures(r1, deduped, web_root, teachers, spec, world)
    return tables
