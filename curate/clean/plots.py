"""Pictures of a filter's decisions: score histograms per source, the highest- and lowest-scored rows per class,
and the frames they are drawn from (also the review page's thumbnails)."""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from curate import media
from curate.core.files import save_figure


def plot_scores(df: pd.DataFrame, out: str | Path) -> list[Path]:
    """One PNG per source: histogram of teacher scores, kept rows against rejected ones."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    scored = df[df["teacher_score"].notna()]
    for source, rows in scored.groupby("source"):
        fig, ax = plt.subplots(figsize=(6, 3.5))
        bins = np.linspace(0, 1, 21)
        kept = rows["status"] == "ok"
        ax.hist([rows.loc[kept, "teacher_score"], rows.loc[~kept, "teacher_score"]], bins=bins, stacked=True,
                label=[f"kept ({int(kept.sum())})", f"rejected ({int((~kept).sum())})"], color=["tab:green", "tab:red"])
        ax.set_xlabel("teacher probability of the row's own label")
        ax.set_ylabel("rows")
        ax.set_title(f"teacher scores: {source}")
        ax.legend()
        fig.tight_layout()
        paths.append(save_figure(fig, out / f"scores_{source}.png"))
    return paths


def plot_extremes(df: pd.DataFrame, root: str | Path, out: str | Path, n: int = 4, side: int = 96) -> Path | None:
    """An image grid: per class, the n highest- and n lowest-scored rows (middle frame), scores in the titles."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    scored = df[df["teacher_score"].notna() & df["path"].notna() & df["source"].ne("clip")]
    if scored.empty:
        return None
    classes = sorted(scored["label"].dropna().unique())
    fig, axes = plt.subplots(len(classes), 2 * n, figsize=(2 * n * 1.3, len(classes) * 1.5), squeeze=False)
    for r, name in enumerate(classes):
        rows = scored[scored["label"] == name].sort_values("teacher_score", ascending=False)
        top, bottom = list(rows.head(n).itertuples()), list(rows.tail(n).itertuples())
        picks = top + [None] * (n - len(top)) + [None] * (n - len(bottom)) + bottom
        for c, row in enumerate(picks):
            ax = axes[r, c]
            ax.axis("off")
            if row is None:
                continue
            ax.imshow(thumb(Path(root) / row.path, row, side))
            ax.set_title(f"{row.teacher_score:.2f}{'' if row.status == 'ok' else ' x'}", fontsize=7,
                         color="black" if row.status == "ok" else "red")
        axes[r, 0].text(-0.1, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle(f"per class: {n} highest | {n} lowest teacher scores (x: rejected)", fontsize=9)
    return save_figure(fig, Path(out) / "extremes.png", bbox_inches="tight")


def thumb(path: Path, row, side: int) -> np.ndarray:
    """The row's image (a video's middle frame) as a side x side RGB array; black when it cannot be read."""
    try:
        if row.media == "image":
            frame = media.read_image(path)
        else:
            n = int(row.frames) if pd.notna(row.frames) else media.probe(path).frames
            frame = media.read_frames(path, [n // 2])[0]
    except media.MediaError:
        return np.zeros((side, side, 3), np.uint8)
    return cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)
