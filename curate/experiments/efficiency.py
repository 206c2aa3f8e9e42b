"""Data-efficiency curves: accuracy of one student against the amount of web data each source adds.

For every web source, the same student is trained (trainers.train, the mixed-source loop) on the target's train
split plus growing, nested fractions of that source's usable rows, and scored on the target's test split; the
target-only run is the shared 0-point. The amount of web data is counted in items and in storage with the
OmniSource cost model: one image ~ 100 KB, one minute of video ~ 12 MB (decimal units, 1 GB = 1e9 bytes).

Writes under out/:
  runs/target_only/, runs/<source>/f<fraction>/   one training run each (last.pt, metrics.jsonl, ...), run.json
                                                  (what the run is), <source>_items.txt (the web rows it added) and
                                                  result.json (its test scores) once finished
  efficiency.parquet                              one row per run (SCHEMA)
  efficiency.png                                  accuracy vs items and vs GB, one line per source
A rerun skips every run whose result.json and checkpoint exist; an interrupted run resumes from its last.pt.
"""
from __future__ import annotations

import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from rich.console import Console
from rich.table import Table

from curate.core import manifest as mf
from curate.core.files import atomic_path, save_figure
from curate.core.manifest import find_data_root, usable_rows
from curate.experiments.runs import RunJob, WorkerPool, run_config, run_jobs
from trainers.config import ConfigError
from trainers.data import LabelSpace
from trainers.sources import Source, load_source

BYTES_PER_IMAGE = 100e3          # the seed's cost model: one image ~ 100 KB
BYTES_PER_VIDEO_MINUTE = 12e6    # one minute of video ~ 12 MB
SCHEMA = ("source", "fraction", "items", "images", "video_minutes", "gigabytes", "top1", "mean_class_acc",
          "seconds", "run")
TARGET_ONLY = "target_only"

def parse_fractions(text: str | Sequence[float]) -> list[float]:
    """'0.25,0.5,1' (or a sequence) -> sorted unique fractions in (0, 1]."""
    values = [float(v) for v in (text.split(",") if isinstance(text, str) else text) if str(v).strip()]
    bad = [v for v in values if not 0 < v <= 1]
    if not values or bad:
        raise ConfigError(f"fractions must be numbers in (0, 1], got {text!r}")
    return sorted(set(values))


def storage(rows: pd.DataFrame) -> dict[str, float]:
    """Items, images, video minutes and gigabytes of rows under the cost model. A video's minutes come from
    `duration_s` (else end_s - start_s); a video with neither is an error (probe the manifest first)."""
    video = rows["media"] == "video"
    seconds = rows["duration_s"].astype("float64")
    if {"start_s", "end_s"} <= set(rows.columns):
        seconds = seconds.fillna(rows["end_s"].astype("float64") - rows["start_s"].astype("float64"))
    unknown = video & seconds.isna()
    if unknown.any():
        raise ConfigError(f"{int(unknown.sum())} video rows have no duration_s (e.g. item "
                          f"{rows.loc[unknown, 'item_id'].iloc[0]!r}); run `curate probe` on the manifest first")
    images = int((rows["media"] == "image").sum())
    minutes = float(seconds[video].sum()) / 60.0
    return {"items": int(len(rows)), "images": images, "video_minutes": round(minutes, 6),
            "gigabytes": (images * BYTES_PER_IMAGE + minutes * BYTES_PER_VIDEO_MINUTE) / 1e9}


def nested_subsets(rows: pd.DataFrame, fractions: Sequence[float], seed: int = 0,
                   column: str = "label") -> dict[float, pd.DataFrame]:
    """For each fraction, ceil(fraction x n_c) rows of every class c: prefixes of one seeded order per class, so each
    subset contains the smaller ones (independent of the manifest's row order)."""
    ordered = rows.sort_values("item_id", kind="stable").reset_index(drop=True)
    rank = np.empty(len(ordered), dtype=np.int64)
    rank[np.random.default_rng(seed).permutation(len(ordered))] = np.arange(len(ordered))
    ordered = ordered.assign(_rank=rank).sort_values("_rank", kind="stable")
    pos = ordered.groupby(ordered[column].astype("string").fillna(""), sort=False).cumcount()
    size = ordered.groupby(ordered[column].astype("string").fillna(""), sort=False)["item_id"].transform("size")
    return {f: ordered[pos < np.ceil(f * size - 1e-9)].drop(columns="_rank").reset_index(drop=True)
            for f in parse_fractions(list(fractions))}


def _usable(src: Source, space: LabelSpace) -> tuple[pd.DataFrame, Path | None]:
    """The rows of src that training would use: status ok, with a path, in split, of a target class."""
    df, path = load_source(src)
    rows, _ = usable_rows(df, src.split)
    return rows[space.index(rows) >= 0].reset_index(drop=True), path


def _as_source(name: str, value: str | Path | pd.DataFrame | Source) -> Source:
    if isinstance(value, Source):
        return value
    return Source(name, value if isinstance(value, pd.DataFrame) else Path(value))


def efficiency_curves(target: str | Path | pd.DataFrame, sources: Mapping[str, str | Path | pd.DataFrame | Source],
                      out: str | Path, *, model: str | Path = "tsn_r50", tiny: bool = True,
                      fractions: Sequence[float] | str = (0.25, 0.5, 1.0), epochs: int = 3, batch_size: int = 4,
                      lr: float = 1e-2, size: int = 32, seed: int = 0, train_split: str = "train",
                      test_split: str = "test", data_root: str | Path | None = None,
                      schedule: Mapping[str, Any] | None = None, data: Mapping[str, Any] | None = None,
                      device: str | None = None, console: Console | None = None, workers: int = 1,
                      pool: WorkerPool | None = None, replace_stale: bool = False) -> pd.DataFrame:
    """Train the target-only student and one per (web source, fraction), test each on the target's test split, write
    efficiency.parquet and efficiency.png under out, and return the rows (columns SCHEMA). Sources are manifests (or
    Source objects for share/weight/power/pseudo); a DataFrame source's paths are relative to the target's root.
    Every run trains `epochs` on the train split without validation (the test split is the only score), with extra
    `schedule` and `data` knobs (trainers.inputs.data_overrides) over the defaults; `workers` runs train side by side
    (curate.experiments.runs.run_jobs, in `pool` when given); a run folder holding another run is refused, or trained again when
    replace_stale (the demo's, whose filtered rows change with the filter)."""
    out, con = Path(out), console or Console(quiet=True)
    fractions = parse_fractions(fractions)
    if not sources:
        raise ConfigError("give at least one web source")
    tpath = None if isinstance(target, pd.DataFrame) else Path(target)
    tdf = target if tpath is None else mf.read(tpath)
    root = Path(data_root) if data_root else (find_data_root(tpath, tdf) if tpath is not None else Path("."))
    # the train rows alone, so the loop does not validate: every point is scored once, on the test split
    tgt = Source("target", tdf[tdf["split"] == train_split].reset_index(drop=True), root=root)
    space = LabelSpace.from_manifest(tdf)
    cfg = run_config(model, tiny, epochs, batch_size, lr, size, seed, schedule, data)

    plan: list[tuple[str, float, Path, list[Source], dict[str, float]]] = [
        (TARGET_ONLY, 0.0, out / "runs" / TARGET_ONLY, [tgt], storage(tdf.iloc[:0]))]
    for name, value in sources.items():
        src = _as_source(name, value)
        rows, path = _usable(src, space)
        if rows.empty:
            raise ConfigError(f"source {name!r} has no usable rows of the target's classes")
        src_root = src.root or (find_data_root(path, rows) if path is not None else root)
        for f, subset in nested_subsets(rows, fractions, seed).items():
            part = Source(name, subset, split=None, weight=src.weight, share=src.share, batch=src.batch,
                          power=src.power, pseudo=src.pseudo, root=src_root)
            plan.append((name, f, out / "runs" / name / f"f{f:g}", [tgt, part], storage(subset)))

    test = Source("test", tdf, root=root)
    jobs = [RunJob(run_dir, cfg, srcs, test, (test_split,), device=device, replace_stale=replace_stale)
            for _, _, run_dir, srcs, _ in plan]

    def said(i: int, row: dict[str, Any], reused: bool) -> None:
        name, f, _, _, cost = plan[i]
        con.print(f"[{i + 1}/{len(plan)}] {name} x{f:g}: {cost['items']} web items, {cost['gigabytes']:.4f} GB -> "
                  f"top1 {row['top1']:.3f}" + (" (done before)" if reused else f" in {row['seconds']:.1f} s"))

    results = run_jobs(jobs, workers, said, pool)
    records = [{"source": name, "fraction": f, **cost, "top1": row["top1"], "mean_class_acc": row["mean_class_acc"],
                "seconds": row["seconds"], "run": str(run_dir.relative_to(out))}
               for (name, f, run_dir, _, cost), row in zip(plan, results)]
    table = pd.DataFrame.from_records(records, columns=list(SCHEMA))
    with atomic_path(out / "efficiency.parquet") as tmp:
        table.to_parquet(tmp, index=False)
    plot_efficiency(table, out / "efficiency.png")
    return table


def curves(table: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per web source, its points with the shared target-only point first, ordered by fraction."""
    zero = table[table["source"] == TARGET_ONLY]
    return {name: pd.concat([zero, g]).sort_values("fraction", kind="stable")
            for name, g in table[table["source"] != TARGET_ONLY].groupby("source", sort=True)}


def gains(table: pd.DataFrame) -> pd.DataFrame:
    """Per source at its largest fraction: items, GB, top1, gain over target-only, gain per GB; best first."""
    base = float(table.loc[table["source"] == TARGET_ONLY, "top1"].iloc[0])
    rows = []
    for name, g in curves(table).items():
        last = g.iloc[-1]
        gain = float(last["top1"]) - base
        rows.append({"source": name, "fraction": float(last["fraction"]), "items": int(last["items"]),
                     "gigabytes": float(last["gigabytes"]), "top1": float(last["top1"]), "gain": gain,
                     "gain_per_gb": gain / last["gigabytes"] if last["gigabytes"] > 0 else math.nan})
    return pd.DataFrame(rows).sort_values("gain_per_gb", ascending=False, na_position="last").reset_index(drop=True)


def item_values(table: pd.DataFrame) -> dict[str, float]:
    """media -> top-1 gained per web item at the largest fraction, for sources named by media ('images' / 'videos',
    as `curate demo` names them, or 'image' / 'video'); a source that did not help gets 0 (a feedback crawl's
    weights, curate/crawl/feedback.py)."""
    out = {}
    for r in gains(table).itertuples():
        media = str(r.source).lower().removesuffix("s")
        if media in ("image", "video") and r.items > 0:
            out[media] = max(0.0, float(r.gain)) / float(r.items)
    return out


def efficiency_table(table: pd.DataFrame) -> Table:
    """The rich table of `gains`, saying which source buys the most accuracy per GB."""
    g = gains(table)
    base = float(table.loc[table["source"] == TARGET_ONLY, "top1"].iloc[0])
    t = Table(title=f"accuracy bought per GB of web data (target only: top1 {base:.3f})", title_justify="left",
              show_edge=False)
    for col in ("source", "fraction", "items", "GB", "top1", "gain", "gain / GB"):
        t.add_column(col, justify="left" if col == "source" else "right")
    for i, r in g.iterrows():
        t.add_row(f"[bold green]{r['source']}[/] (best)" if i == 0 and r["gain"] > 0 else r["source"],
                  f"{r['fraction']:g}", str(r["items"]), f"{r['gigabytes']:.4f}", f"{r['top1']:.3f}",
                  f"{r['gain']:+.3f}", f"{r['gain_per_gb']:+.2f}")
    return t


def plot_efficiency(table: pd.DataFrame, path: str | os.PathLike) -> Path:
    """Two panels, top-1 against web items and against web GB, one line per source from the shared 0-point."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for name, g in curves(table).items():
        for ax, x in zip(axes, ("items", "gigabytes")):
            ax.plot(g[x], g["top1"], marker="o", label=name)
    base = float(table.loc[table["source"] == TARGET_ONLY, "top1"].iloc[0])
    for ax, label in zip(axes, ("web items added", "web data added (GB; image 100 KB, video minute 12 MB)")):
        ax.axhline(base, color="grey", lw=0.8, ls="--")
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("top-1 on the target's test split")
    axes[0].legend(title="source")
    fig.suptitle("data efficiency: accuracy vs web data (dashed: target only)")
    fig.tight_layout()
    return save_figure(fig, path)
