"""Keep rules over teacher scores (OmniSource §4) and clips cut from untrimmed videos (OmniSource §5.2).

A scored row is kept when every enabled rule keeps it: probability of its own label >= threshold, among the
top-k of its class, among the top fraction of its class, its label among the teacher's top match_k (1: top-1).
Dropped rows stay in the manifest with `status=rejected` and `error=teacher_mismatch` (the prediction named another class) or
`teacher_low` (any other rule). Untrimmed videos are scored window by window instead; windows the teacher
believes (threshold and match rules) are merged when adjacent and cut with ffmpeg into new clip rows.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from curate import media
from curate.clean.cheap import CheapReport, CheapRules, cheap_filter
from curate.clean.teacher import Ensemble, ScoreReport, Teacher, inspection_only, score_manifest
from curate.core import manifest as mf
from curate.core.executor import ExecutorSpec
from curate.core.files import save_figure, sha256_file
from curate.core.sampling import dense_windows

TARGET_PRECISION, AT_RECALL = 0.95, 0.8   # the filter's goal: this precision on "label is right" at this recall

RULES = ("threshold", "relative", "top_k", "top_frac", "match")


@dataclass(frozen=True)
class KeepRules:
    """None / False switches a rule off; the defaults are OmniSource's published rule (top-1 must match)."""

    threshold: float | None = None
    relative: float | None = None    # p at least this fraction of the median p of its class's rows (same media; for
                                     # windows of untrimmed videos, the median of the class's whole videos)
    top_k: int | None = None
    top_frac: float | None = None
    match: bool = True
    match_k: int = 1                 # the match rule accepts the label among the teacher's top match_k (at most 5)

    def __post_init__(self) -> None:
        if not 1 <= self.match_k <= 5:
            raise ValueError(f"match_k is 1..5 (the teacher keeps its top-5), not {self.match_k}")
        if self.relative is not None and self.relative <= 0:
            raise ValueError(f"relative is a fraction of the class's median p, above 0, not {self.relative}")

    def enabled(self) -> list[str]:
        return [r for r in RULES if getattr(self, r) not in (None, False)]

    def describe(self) -> str:
        """The enabled rules with their values, e.g. 'p >= 0.3, label in the teacher's top 2'."""
        said = []
        if self.threshold is not None:
            said.append(f"p >= {self.threshold:g}")
        if self.relative is not None:
            said.append(f"p >= {self.relative:g} x its class's median")
        if self.top_k is not None:
            said.append(f"best {self.top_k} per class")
        if self.top_frac is not None:
            said.append(f"best {self.top_frac:.0%} per class")
        if self.match:
            said.append("teacher top-1 = label" if self.match_k == 1 else f"label in the teacher's top {self.match_k}")
        return ", ".join(said) or "no rule"


def candidates(df: pd.DataFrame) -> pd.Series:
    """Rows the rules judge: status ok with a teacher score."""
    return (df["status"] == "ok") & df["teacher_score"].notna() & ~inspection_only(df)


def rule_masks(df: pd.DataFrame, rules: KeepRules, reference: pd.DataFrame | None = None) -> dict[str, pd.Series]:
    """{rule: rows it keeps} over the candidate rows (ties at the top-k / fraction cut broken by item_id); the
    relative rule's median is over `reference`'s rows of the same class and media when given (else the candidates')."""
    cand = df[candidates(df)]
    out: dict[str, pd.Series] = {}
    if rules.threshold is not None:
        out["threshold"] = cand["teacher_score"] >= rules.threshold
    if rules.relative is not None:     # a class the teacher is less sure of keeps its share
        keys = ["label_id", "media"]
        bar = cand.groupby(keys)["teacher_score"].transform("median")
        if reference is not None:
            ref = reference.groupby(keys)["teacher_score"].median()      # NaN scores are skipped
            bar = pd.Series(ref.reindex(pd.MultiIndex.from_frame(cand[keys])).to_numpy(float),
                            index=cand.index).fillna(bar)
        out["relative"] = cand["teacher_score"] >= rules.relative * bar
    if rules.top_k is not None or rules.top_frac is not None:
        ranked = cand.sort_values(["teacher_score", "item_id"], ascending=[False, True], kind="stable")
        rank = ranked.groupby("label_id").cumcount().reindex(cand.index)
        size = cand.groupby("label_id")["item_id"].transform("size")
        if rules.top_k is not None:
            out["top_k"] = rank < rules.top_k
        if rules.top_frac is not None:
            out["top_frac"] = rank < np.ceil(size * rules.top_frac - 1e-9)
    if rules.match:   # teacher_top5[0] is teacher_pred (curate.clean.teacher.apply_scores)
        out["match"] = pd.Series([int(y) in list(top)[:rules.match_k]
                                  for y, top in zip(cand["label_id"], cand["teacher_top5"])], index=cand.index, dtype=bool)
    return {k: v.fillna(False).astype(bool) for k, v in out.items()}


def apply_rules(df: pd.DataFrame, rules: KeepRules) -> tuple[pd.DataFrame, dict[str, int]]:
    """Reject the candidate rows some rule drops; returns the manifest and how many rows each rule removed."""
    masks = rule_masks(df, rules)
    df = df.copy()
    removed = {r: int((~m).sum()) for r, m in masks.items()}
    if not masks:
        return df, removed
    keep = pd.concat(masks, axis=1).all(axis=1)
    mismatch = ~masks["match"] if "match" in masks else pd.Series(False, index=keep.index)
    for idx in keep.index[~keep]:
        if mismatch[idx]:
            err = (f"teacher_mismatch: teacher predicts class {df.at[idx, 'teacher_pred']}, not {df.at[idx, 'label_id']}"
                   + (f" (nor has it in its top {rules.match_k})" if rules.match_k > 1 else ""))
        else:
            failed = [r for r, m in masks.items() if not m[idx]]
            err = f"teacher_low: p={df.at[idx, 'teacher_score']:.3f} fails {', '.join(failed)}"
        df.loc[idx, ["status", "error"]] = ["rejected", err]
    return df, removed


RULE_CODES = ("teacher_low", "teacher_mismatch")


def resumed(df: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """The input rows with an earlier run's work on them (cheap checks, scores, clips) but not its keep decisions:
    rows the keep rules rejected get their input status back, so the rules decide again over the same rows and a
    rerun keeps what the first run kept (a relative rule applied twice would otherwise cut deeper)."""
    merged = mf.upsert(df, previous)
    undo = merged["error"].map(mf.error_code).isin(RULE_CODES) & merged["item_id"].isin(df["item_id"])
    before = df.drop_duplicates("item_id").set_index("item_id")
    for col in ("status", "error"):
        merged.loc[undo, col] = merged.loc[undo, "item_id"].map(before[col])
    return merged


def dry_run_table(df: pd.DataFrame, rules: KeepRules) -> pd.DataFrame:
    """Per class: candidates, rows each rule alone would keep, rows all rules keep."""
    cand = df[candidates(df)]
    masks = rule_masks(df, rules)
    table = pd.DataFrame({"class": cand["label"], "candidates": 1}, index=cand.index)
    for r, m in masks.items():
        table[r] = m.astype(int)
    table["kept"] = pd.concat(masks, axis=1).all(axis=1).astype(int) if masks else 1
    return table.groupby("class").sum().reset_index()


# ----------------------------------------------------------------------------------------------- untrimmed videos

def is_untrimmed(df: pd.DataFrame, longer_than_s: float | None) -> pd.Series:
    """Usable whole-video rows longer than longer_than_s seconds (None: no row is treated as untrimmed)."""
    if longer_than_s is None:
        return pd.Series(False, index=df.index)
    return ((df["status"] == "ok") & (df["media"] == "video") & df["start_s"].isna()
            & (df["duration_s"].astype(float) > longer_than_s).fillna(False))


def window_rows(parent: Mapping, window_s: float, stride_s: float | None) -> pd.DataFrame:
    """The dense windows of one untrimmed video as rows over the parent's file (start_s/end_s inside it; frames and
    duration_s stay the file's, as the data pipeline expects of a window of a longer file)."""
    fps, frames = float(parent["fps"]), int(parent["frames"])
    rows = []
    for a, b in dense_windows(frames, fps, window_s, stride_s):
        s, e = a / fps, b / fps
        rows.append({**{k: parent[k] for k in ("path", "label", "label_id", "split", "fps", "width", "height",
                                                "codec", "query", "url")},
                     "item_id": mf.item_id("clip", str(parent["item_id"]), s, e), "source": "clip",
                     "source_id": str(parent["item_id"]), "media": "video", "start_s": s, "end_s": e,
                     "frames": frames, "duration_s": parent["duration_s"], "status": "ok",
                     "parent_id": parent["item_id"]})
    return mf.from_records(rows)


def merge_windows(spans: list[tuple[float, float]]) -> list[tuple[float, float, list[int]]]:
    """Kept windows (start, end) -> maximal runs of overlapping or touching windows, with the windows' positions."""
    out: list[list] = []
    for k in sorted(range(len(spans)), key=lambda k: spans[k]):
        s, e = spans[k]
        if out and s <= out[-1][1] + 1e-6:
            out[-1][1] = max(out[-1][1], e)
            out[-1][2].append(k)
        else:
            out.append([s, e, [k]])
    return [(s, e, ks) for s, e, ks in out]


def cut_clips(df: pd.DataFrame, root: str | Path, teacher: Teacher | Ensemble, rules: KeepRules, window_s: float,
              stride_s: float | None = None, longer_than_s: float | None = None, batch_size: int = 16,
              workers: int = 0, progress: Callable[[int, int], None] | None = None,
              executor: ExecutorSpec | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Score windows of every untrimmed row (on executor, as score_manifest); kept windows merged and cut (exact
    ffmpeg re-encode, here) into clip rows with parent_id; the parent becomes `rejected` with `untrimmed: cut into N
    clips` (or teacher_low: no window)."""
    root = Path(root)
    df = df.reset_index(drop=True).copy()
    parents = df[is_untrimmed(df, longer_than_s) & df["label_id"].notna()]
    stats = {"videos": len(parents), "windows": 0, "windows_kept": 0, "clips": 0}
    if parents.empty:
        return df, stats
    windows = pd.concat([window_rows(r, window_s, stride_s) for r in parents.to_dict("records")], ignore_index=True)
    scored, _ = score_manifest(windows, root, {"video": teacher}, batch_size=batch_size, workers=workers,
                               progress=progress, executor=executor)
    stats["windows"] = len(scored)
    # per-class ranks are not for windows; their relative bar is set by the class's whole videos
    whole = df[(df["media"] == "video") & df["parent_id"].isna() & ~df["item_id"].isin(parents["item_id"])]
    masks = rule_masks(scored, replace(rules, top_k=None, top_frac=None), reference=whole)
    kept = pd.concat(masks, axis=1).all(axis=1) if masks else candidates(scored)
    scored = scored.loc[kept.index[kept]]
    stats["windows_kept"] = len(scored)
    clips = []
    for parent in parents.to_dict("records"):
        mine = scored[scored["parent_id"] == parent["item_id"]]
        spans = merge_windows(list(zip(mine["start_s"], mine["end_s"])))
        for s, e, ks in spans:
            clips.append(_cut(root, parent, s, e, mine.iloc[ks]))
        i = df.index[df["item_id"] == parent["item_id"]][0]
        df.loc[i, ["status", "error"]] = (["rejected", f"untrimmed: cut into {len(spans)} clips"] if spans else
                                          ["rejected", f"teacher_low: no {window_s:g}-s window kept"])
    stats["clips"] = len(clips)
    return mf.upsert(df, mf.from_records(clips)) if clips else df, stats


def _cut(root: Path, parent: Mapping, s: float, e: float, windows: pd.DataFrame) -> dict:
    """One clip row: [s, e) of the parent's file re-encoded; teacher columns = mean score, best window's top-5."""
    iid = mf.item_id("clip", str(parent["item_id"]), s, e)
    rel = mf.media_relpath("clip", iid, "mp4")
    best = windows.loc[windows["teacher_score"].idxmax()]
    row = {k: parent[k] for k in ("label", "label_id", "split", "query", "url")}
    row.update(item_id=iid, source="clip", source_id=str(parent["item_id"]), parent_id=parent["item_id"],
               start_s=round(s, 6), end_s=round(e, 6), path=rel, teacher_score=float(windows["teacher_score"].mean()),
               teacher_pred=int(best["teacher_pred"]), teacher_top5=list(best["teacher_top5"]),
               teacher_sha=best["teacher_sha"])
    try:
        out = media.trim(root / parent["path"], root / rel, s, e, exact=True)
        row.update(media.probe(out).as_row(), status="ok", sha256=sha256_file(out))
    except media.MediaError as exc:
        row.update(status="failed", error=f"{exc.code}: {exc}", path=None)
    return row



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


@dataclass
class FilterResult:
    manifest: pd.DataFrame
    cheap: CheapReport
    scores: ScoreReport
    removed: dict[str, int]            # rule -> rows it removed
    clips: dict[str, int]
    dry_run: pd.DataFrame | None = None

    @property
    def failed_shards(self) -> int:
        """Shards of the cheap filters or of scoring that failed (their rows stay unchecked / unscored)."""
        return sum(len(r.failed) for r in (self.cheap.run, self.scores.run) if r is not None)


def filter_manifest(df: pd.DataFrame, root: str | Path, teachers: Mapping[str, Teacher | Ensemble], rules: KeepRules,
                    cheap: CheapRules | None = CheapRules(), mapping: Mapping[str, str] | None = None,
                    untrimmed_over_s: float | None = None, window_s: float = 10.0, stride_s: float | None = None,
                    batch_size: int = 16, workers: int = 0, embeddings: str | Path | None = None,
                    dry_run: bool = False, commit: Callable[[pd.DataFrame], None] | None = None,
                    progress: Callable[[str, int, int], None] | None = None,
                    executor: ExecutorSpec | None = None) -> FilterResult:
    """Cheap filters -> teacher scores (untrimmed videos aside) -> keep rules -> clips of untrimmed videos.

    executor: where the cheap filters and the teacher run, in shards (default: this process; the cheap filters on
    max(1, workers) threads, scoring with `workers` decode processes). commit(rows) gets the rows each step changed:
    each cheap shard's, each scoring shard's, then every row once the rules ran (manifest.commit makes each an
    O(rows) part). dry_run scores and applies the rules in memory only: nothing is written, rejected or cut."""
    step = (lambda name: (lambda done, total: progress(name, done, total))) if progress else (lambda name: None)
    if dry_run:
        commit, embeddings = None, None
    cheap_report = CheapReport()
    if cheap is not None:
        fresh = df["teacher_sha"].isna() & ~inspection_only(df)  # rows a teacher saw passed the cheap filters
        where = executor or ExecutorSpec(shard_size=32, workers=max(1, workers))
        checked, cheap_report = cheap_filter(df[fresh], root, cheap, where, step("cheap"), commit)
        df = mf.upsert(df, checked)
    untrimmed = is_untrimmed(df, untrimmed_over_s)
    whole, long = df[~untrimmed], df[untrimmed]
    scored, report = score_manifest(whole, root, teachers, mapping, batch_size, workers, embeddings=embeddings,
                                    commit=commit, progress=step("teacher"), executor=executor)
    df = mf.upsert(df, scored)
    if dry_run:
        return FilterResult(df, cheap_report, report, {}, {}, dry_run_table(df.loc[~df["item_id"].isin(
            long["item_id"])], rules))
    df, removed = apply_rules(df, rules)
    clips = {}
    if not long.empty and "video" in teachers:
        df, clips = cut_clips(df, root, teachers["video"], rules, window_s, stride_s, untrimmed_over_s, batch_size,
                              workers, step("windows"), executor)
    if commit:
        commit(df)
    return FilterResult(df, cheap_report, report, removed, clips)


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
            ax.imshow(_thumb(Path(root) / row.path, row, side))
            ax.set_title(f"{row.teacher_score:.2f}{'' if row.status == 'ok' else ' x'}", fontsize=7,
                         color="black" if row.status == "ok" else "red")
        axes[r, 0].text(-0.1, 0.5, name, transform=axes[r, 0].transAxes, ha="right", va="center", fontsize=7)
    fig.suptitle(f"per class: {n} highest | {n} lowest teacher scores (x: rejected)", fontsize=9)
    return save_figure(fig, Path(out) / "extremes.png", bbox_inches="tight")


def _thumb(path: Path, row, side: int) -> np.ndarray:
    try:
        if row.media == "image":
            frame = media.read_image(path)
        else:
            n = int(row.frames) if pd.notna(row.frames) else media.probe(path).frames
            frame = media.read_frames(path, [n // 2])[0]
    except media.MediaError:
        return np.zeros((side, side, 3), np.uint8)
    return cv2.resize(frame, (side, side), interpolation=cv2.INTER_AREA)


def precision_recall(score: np.ndarray, right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(recall, precision) of keeping the items above each threshold of score, highest score first."""
    y = np.asarray(right, dtype=bool)[np.argsort(-np.asarray(score, dtype=float), kind="stable")]
    tp = np.cumsum(y)
    return tp / max(1, int(y.sum())), tp / np.arange(1, len(y) + 1)


def precision_at_recall(score: np.ndarray, right: np.ndarray, recall: float = AT_RECALL) -> float:
    """The best precision any threshold of score reaches while keeping at least `recall` of the right items."""
    rec, prec = precision_recall(score, right)
    ok = rec >= recall
    return float(prec[ok].max()) if ok.any() and np.any(right) else float("nan")
