"""The learning curve: training loss per source over iterations, validation metrics over epochs."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from curate.core.files import save_figure


def plot_curve(entries: list[dict], path: str | os.PathLike) -> Path | None:
    """PNG from metrics.jsonl entries (None when there is nothing to draw yet)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    train = [e for e in entries if e.get("event") == "train"]
    val = [e for e in entries if e.get("event") == "val"]
    if not train:
        return None
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    keys = sorted({k for e in train for k in e if k.startswith("loss/")})
    for k in keys:
        pts = [(e["global_step"], e[k]) for e in train if k in e]
        ax1.plot(*zip(*pts), label=k.removeprefix("loss/"))
    ax1.set_xlabel("iteration")
    ax1.set_ylabel("cross-entropy (mean per clip)")
    ax1.set_title("training loss")
    if keys:
        ax1.legend()
    for k in ("top1", "top5", "mean_class_acc", "set_acc", "event_acc"):
        pts = [(e["epoch"], e[k]) for e in val if isinstance(e.get(k), (int, float)) and np.isfinite(e[k])]
        if pts:
            ax2.plot(*zip(*pts), marker="o", label=k)
    ax2.set_xlabel("epoch")
    ax2.set_ylim(0, 1.02)
    ax2.set_title("validation")
    if ax2.lines:
        ax2.legend()
    fig.tight_layout()
    return save_figure(fig, path)
