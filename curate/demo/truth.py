"""The demo world knows the truth: which web items show their label, which are planted copies of val/test. These
functions grade the real stages' decisions against it (filter precision / recall, dedup hits)."""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from curate.clean.filter import AT_RECALL, TARGET_PRECISION, precision_at_recall
from curate.core import manifest as mf
from curate.demo.synth import World


def right_label(rows: pd.DataFrame, world: World) -> pd.Series:
    """Per row: does it show its own label? Whole items are looked up by content hash in the world's truth (a
    clutter item shows no class); a clip cut from an untrimmed video is right when an action of its label covers
    at least half of it. NA where the world does not know the row."""
    truth = mf.read(world.truth_web, validate_rows=False)
    truth = truth[truth["sha256"].notna()].drop_duplicates("sha256").set_index("sha256")
    actions = pd.read_parquet(world.truth_actions)
    by_item = dict(zip(rows["item_id"], rows["sha256"]))
    out = pd.Series(pd.NA, index=rows.index, dtype="boolean")
    for i, r in rows.iterrows():
        sha = by_item.get(r["parent_id"]) if pd.notna(r["parent_id"]) else r["sha256"]
        if sha not in truth.index:
            continue
        t = truth.loc[sha]
        if pd.isna(r["parent_id"]):
            out[i] = bool(t["true_label"] == r["label"])
            continue
        acts = actions[(actions["video_id"] == t["source_id"]) & (actions["label"] == r["label"])]
        overlap = (np.minimum(acts["end_s"], r["end_s"]) - np.maximum(acts["start_s"], r["start_s"])).clip(lower=0)
        out[i] = bool((overlap >= 0.5 * (r["end_s"] - r["start_s"])).any())
    return out


def true_labels(rows: pd.DataFrame, world: World) -> pd.Series:
    """Per whole row: the class it really shows (None for clutter), looked up by content hash; NA where unknown."""
    truth = mf.read(world.truth_web, validate_rows=False)
    truth = truth[truth["sha256"].notna()].drop_duplicates("sha256").set_index("sha256")["true_label"]
    return rows["sha256"].map(truth).where(rows["parent_id"].isna() & rows["sha256"].isin(truth.index))


def judged_rows(rows: pd.DataFrame, right: pd.Series) -> pd.Series:
    """Whole web items the teacher's keep rule decided on and the truth knows (not dedup'd, not cut up)."""
    return rows["teacher_sha"].notna() & rows["parent_id"].isna() & right.notna() & ~rows["error"].fillna(
        "").str.startswith(("duplicate_of_val", "near_duplicate", "untrimmed"))


def filter_quality(rows: pd.DataFrame, right: pd.Series) -> dict[str, Any]:
    """Precision / recall of the keep decision on 'label is right' over the whole web items the teacher judged
    (status ok = kept); base_rate = precision of keeping them all; at_recall = per media (and 'all') the best
    precision a threshold on teacher_score reaches at recall AT_RECALL."""
    judged = judged_rows(rows, right)
    clean, kept = right[judged].astype(bool), rows.loc[judged, "status"] == "ok"
    tp = int((clean & kept).sum())
    media, score = rows.loc[judged, "media"], rows.loc[judged, "teacher_score"].astype(float)
    at_recall = {f"{m}s": precision_at_recall(score[media == m].to_numpy(), clean[media == m].to_numpy())
                 for m in ("image", "video")}
    at_recall["all"] = precision_at_recall(score.to_numpy(), clean.to_numpy())
    return {"judged": int(judged.sum()), "kept": int(kept.sum()), "clean": int(clean.sum()),
            "base_rate": float(clean.mean()) if judged.any() else float("nan"),
            "precision": tp / max(1, int(kept.sum())), "recall": tp / max(1, int(clean.sum())),
            "at_recall": at_recall}


def at_recall_line(q: Mapping[str, Any]) -> str:
    """'best precision at recall 0.8: images 0.871, videos 0.938, all 0.875 (goal 0.95: met for videos)'."""
    got = {k: v for k, v in q["at_recall"].items() if not np.isnan(v)}
    met = [k for k, v in got.items() if v >= TARGET_PRECISION]
    verdict = "met" if "all" in met else f"met for {', '.join(met)}" if met else "not met"
    return (f"best precision at recall {AT_RECALL}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items())
            + f" (goal {TARGET_PRECISION}: {verdict})")


def dedup_quality(web: pd.DataFrame, world: World) -> dict[str, int]:
    """Planted near-copies of val/test among the crawled rows: how many were found, and hits on other rows."""
    truth = mf.read(world.truth_web, validate_rows=False)
    copies = set(truth.loc[truth["copy_of"].notna() & truth["sha256"].notna(), "sha256"])
    crawled = web[web["sha256"].isin(copies) & web["parent_id"].isna()]
    hit = web["error"].fillna("").str.startswith("duplicate_of_val")
    return {"planted_crawled": len(crawled), "found": int(hit[crawled.index].sum()),
            "false_hits": int((hit & ~web["sha256"].isin(copies)).sum())}
