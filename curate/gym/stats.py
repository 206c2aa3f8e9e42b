"""Statistics of FineGym-style manifests: per-level class counts, subsets and splits, durations, media on disk."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.core.files import save_figure

LEVELS = ("event", "set", "element")


def subsets(elements: pd.DataFrame) -> list[str]:
    """Subset names that have `<subset>_label` columns (gym99, gym288, gym530 ...), smallest first."""
    names = [m[1] for c in elements.columns if (m := re.fullmatch(r"(\w+)_label", c))]
    return sorted(names, key=lambda s: (elements[f"{s}_label"].nunique(), s))


def level_counts(elements: pd.DataFrame) -> dict[str, pd.Series]:
    """Instances per class at each level (labelled elements only), largest first."""
    return {lv: elements[lv].dropna().value_counts() for lv in LEVELS if lv in elements}


def summary(events: pd.DataFrame, elements: pd.DataFrame) -> dict[str, Any]:
    """Everything `curate gym` prints: levels, subsets x splits, per-event counts, durations, media on disk."""
    levels = {}
    for lv, counts in level_counts(elements).items():
        levels[lv] = {"classes": int(len(counts)), "instances": int(counts.sum()),
                      "min": int(counts.min()) if len(counts) else 0,
                      "median": float(counts.median()) if len(counts) else 0.0,
                      "max": int(counts.max()) if len(counts) else 0}
    subs = {}
    for s in subsets(elements):
        lab = elements[f"{s}_label"]
        split = elements[f"{s}_split"] if f"{s}_split" in elements else pd.Series([None] * len(elements))
        subs[s] = {"classes": int(lab.nunique()), "labelled": int(lab.notna().sum()),
                   **{k: int(v) for k, v in split[lab.notna()].fillna("none").value_counts().items()}}
    per_event = {}
    for name, grp in events.groupby(events["event"].fillna("?"), sort=True):
        kids = elements[elements["parent_id"].isin(grp["item_id"])]
        per_event[str(name)] = {"events": int(len(grp)), "videos": int(grp["source_id"].nunique()),
                                "annotated": int(grp["item_id"].isin(elements["parent_id"]).sum()),
                                "elements": int(len(kids)), "labelled": int(kids["element_id"].notna().sum())}
    dur = (elements["end_s"] - elements["start_s"]).to_numpy(dtype=float)
    return {
        "videos": int(events["source_id"].nunique()), "events": int(len(events)), "elements": int(len(elements)),
        "levels": levels, "subsets": subs, "per_event": per_event,
        "element_s": {"mean": float(dur.mean()) if len(dur) else 0.0,
                      "median": float(np.median(dur)) if len(dur) else 0.0,
                      "max": float(dur.max()) if len(dur) else 0.0},
        "on_disk": {"events": int((events["status"] == "ok").sum()),
                    "elements": int((elements["status"] == "ok").sum())},
    }


def plot(elements: pd.DataFrame, path: str | Path) -> Path:
    """Long-tail class counts per level (log scale) and the element duration histogram, one PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    counts = level_counts(elements)
    fig, axes = plt.subplots(1, len(counts) + 1, figsize=(4 * (len(counts) + 1), 3.2))
    for ax, (lv, c) in zip(axes, counts.items()):
        ax.bar(np.arange(len(c)), c.to_numpy(), width=1.0, color="#4c72b0")
        ax.set_yscale("log")
        ax.set_title(f"{lv}: {len(c)} classes")
        ax.set_xlabel("class (by count)")
        ax.set_ylabel("instances")
    dur = (elements["end_s"] - elements["start_s"]).dropna().to_numpy(dtype=float)
    axes[-1].hist(dur, bins=min(50, max(5, len(dur) // 4)), color="#dd8452")
    axes[-1].set_title("element duration")
    axes[-1].set_xlabel("seconds")
    fig.tight_layout()
    return save_figure(fig, path)
