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

import numpy as np
import pandas as pd

from curate import media
from curate.clean import label_issues as li
from curate.clean.cheap import CheapReport, CheapRules, cheap_filter
from curate.clean.shots import ShotRules, detect_shots, shot_rows
from curate.clean.sidefile import read_probs
from curate.clean.teacher import Ensemble, ScoreReport, Teacher, inspection_only, score_manifest
from curate.core import manifest as mf
from curate.core.executor import ExecutorSpec
from curate.core.files import sha256_file
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


RULE_CODES = ("teacher_low", "teacher_mismatch", "review_drop")


def resumed(df: pd.DataFrame, previous: pd.DataFrame) -> pd.DataFrame:
    """The input rows with an earlier run's work on them (cheap checks, scores, clips) but not its keep decisions:
    rows the keep rules (or a reviewer) rejected get their input status back and relabelled rows their first label,
    so the rules decide again over the same rows and a rerun keeps what the first run kept (a relative rule applied
    twice would otherwise cut deeper)."""
    merged = li.undo_relabels(mf.upsert(df, previous))
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


def window_rows(parent: Mapping, window_s: float, stride_s: float | None, span: tuple[int, int] | None = None,
                shot_id: str | None = None) -> pd.DataFrame:
    """The dense windows of one untrimmed video (of its frames [a, b) only, one shot, when span is given) as rows
    over the parent's file (start_s/end_s inside it; frames and duration_s stay the file's, as the data pipeline
    expects of a window of a longer file; shot_id names the shot row)."""
    fps, frames = float(parent["fps"]), int(parent["frames"])
    first, last = span or (0, frames)
    rows = []
    for a, b in dense_windows(last - first, fps, window_s, stride_s):
        s, e = (first + a) / fps, (first + b) / fps
        rows.append({**{k: parent[k] for k in ("path", "label", "label_id", "split", "fps", "width", "height",
                                                "codec", "query", "url")},
                     "item_id": mf.item_id("clip", str(parent["item_id"]), s, e), "source": "clip",
                     "source_id": str(parent["item_id"]), "media": "video", "start_s": s, "end_s": e,
                     "frames": frames, "duration_s": parent["duration_s"], "status": "ok",
                     "parent_id": parent["item_id"], "shot_id": shot_id})
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


Span = tuple[dict, float, float, pd.DataFrame]   # (parent row, start_s, end_s, the kept windows merged into it)


def kept_spans(df: pd.DataFrame, root: str | Path, teacher: Teacher | Ensemble, rules: KeepRules, window_s: float,
               stride_s: float | None = None, longer_than_s: float | None = None, shots: ShotRules | None = None,
               batch_size: int = 16, workers: int = 0, progress: Callable[[int, int], None] | None = None,
               executor: ExecutorSpec | None = None) -> tuple[pd.DataFrame, list[Span], pd.DataFrame, dict[str, int]]:
    """Score the windows of every untrimmed row (inside each of its shots with `shots`; on executor, as
    score_manifest) and merge the kept ones, never across a shot boundary: (parents, spans, shot rows, stats).
    Nothing is cut."""
    root = Path(root)
    parents = df[is_untrimmed(df, longer_than_s) & df["label_id"].notna()]
    stats = {"videos": len(parents), "windows": 0, "windows_kept": 0, "clips": 0, **({"shots": 0} if shots else {})}
    if parents.empty:
        return parents, [], mf.empty(), stats
    records, windows, shot_parts = parents.to_dict("records"), [], []
    for r in records:
        if shots is None:
            windows.append(window_rows(r, window_s, stride_s))
            continue
        found = detect_shots(root / r["path"], int(r["frames"]), float(r["fps"]), shots)
        shot_parts.append(shot_rows(r, found))
        windows += [window_rows(r, window_s, stride_s, span, sid) for span, sid in zip(found, shot_parts[-1]["item_id"])]
    shot_df = pd.concat(shot_parts, ignore_index=True) if shot_parts else mf.empty()
    if shots:
        stats["shots"] = len(shot_df)
    scored, _ = score_manifest(pd.concat(windows, ignore_index=True), root, {"video": teacher}, batch_size=batch_size,
                               workers=workers, progress=progress, executor=executor)
    stats["windows"] = len(scored)
    # per-class ranks are not for windows; their relative bar is set by the class's whole videos
    whole = df[(df["media"] == "video") & df["parent_id"].isna() & ~df["item_id"].isin(parents["item_id"])]
    masks = rule_masks(scored, replace(rules, top_k=None, top_frac=None), reference=whole)
    kept = pd.concat(masks, axis=1).all(axis=1) if masks else candidates(scored)
    scored = scored.loc[kept.index[kept]]
    stats["windows_kept"] = len(scored)
    spans: list[Span] = []
    for parent in records:
        mine = scored[scored["parent_id"] == parent["item_id"]]
        for _, g in mine.groupby(mine["shot_id"].fillna(""), sort=False):
            spans += [(parent, s, e, g.iloc[ks]) for s, e, ks in merge_windows(list(zip(g["start_s"], g["end_s"])))]
    return parents, spans, shot_df, stats


def cut_clips(df: pd.DataFrame, root: str | Path, teacher: Teacher | Ensemble, rules: KeepRules, window_s: float,
              stride_s: float | None = None, longer_than_s: float | None = None, batch_size: int = 16,
              workers: int = 0, progress: Callable[[int, int], None] | None = None, shots: ShotRules | None = None,
              executor: ExecutorSpec | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Score windows of every untrimmed row (kept_spans); kept windows merged and cut (exact ffmpeg re-encode) into
    clip rows with parent_id; the parent becomes `rejected` with `untrimmed: cut into N clips` (or teacher_low: no
    window); with `shots`, its shots are rows too (curate/clean/shots.py)."""
    root = Path(root)
    df = df.reset_index(drop=True).copy()
    parents, spans, shot_df, stats = kept_spans(df, root, teacher, rules, window_s, stride_s, longer_than_s, shots,
                                                batch_size, workers, progress, executor)
    clips = [_cut(root, parent, s, e, windows) for parent, s, e, windows in spans]
    for iid in parents["item_id"]:
        n = sum(parent["item_id"] == iid for parent, *_ in spans)
        i = df.index[df["item_id"] == iid][0]
        df.loc[i, ["status", "error"]] = (["rejected", f"untrimmed: cut into {n} clips"] if n else
                                          ["rejected", f"teacher_low: no {window_s:g}-s window kept"])
    stats["clips"] = len(clips)
    new = [part for part in (shot_df, mf.from_records(clips)) if len(part)]
    return (mf.upsert(df, pd.concat(new, ignore_index=True)) if new else df), stats


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


@dataclass
class FilterResult:
    manifest: pd.DataFrame
    cheap: CheapReport
    scores: ScoreReport
    removed: dict[str, int]            # rule -> rows it removed
    clips: dict[str, int]
    dry_run: pd.DataFrame | None = None
    relabelled: int = 0                # rows the relabel rule kept under their suggested label
    decided: dict[str, int] | None = None   # decision -> rows a reviewer's decisions file changed

    @property
    def failed_shards(self) -> int:
        """Shards of the cheap filters or of scoring that failed (their rows stay unchecked / unscored)."""
        return sum(len(r.failed) for r in (self.cheap.run, self.scores.run) if r is not None)


def filter_manifest(df: pd.DataFrame, root: str | Path, teachers: Mapping[str, Teacher | Ensemble], rules: KeepRules,
                    cheap: CheapRules | None = CheapRules(), mapping: Mapping[str, str] | None = None,
                    untrimmed_over_s: float | None = None, window_s: float = 10.0, stride_s: float | None = None,
                    batch_size: int = 16, workers: int = 0, embeddings: str | Path | None = None,
                    dry_run: bool = False, commit: Callable[[pd.DataFrame], None] | None = None,
                    progress: Callable[[str, int, int], None] | None = None, shots: ShotRules | None = None,
                    issues: bool = False, relabel_min_p: float | None = None,
                    decisions: pd.DataFrame | None = None, executor: ExecutorSpec | None = None) -> FilterResult:
    """Cheap filters -> teacher scores (untrimmed videos aside) -> label issues -> keep rules (and the relabel
    rule) -> clips of untrimmed videos (inside their shots) -> a reviewer's decisions.

    executor: where the cheap filters and the teacher run, in shards (default: this process; the cheap filters on
    max(1, workers) threads, scoring with `workers` decode processes). commit(rows) gets the rows each step changed:
    each cheap shard's, each scoring shard's, then every row once the rules ran (manifest.commit makes each an
    O(rows) part). dry_run scores and applies the rules in memory only: nothing is written, rejected or cut. issues
    (implied by relabel_min_p) needs out-of-sample teachers and the embeddings side file, where scoring stores the
    probabilities (curate/clean/label_issues.py)."""
    from curate.clean.review import apply_decisions  # the review page builds on this module

    step = (lambda name: (lambda done, total: progress(name, done, total))) if progress else (lambda name: None)
    if dry_run:
        commit, embeddings = None, None
    issues = issues or relabel_min_p is not None
    if issues and not dry_run:
        li.check_out_of_sample(teachers)
        if embeddings is None:
            raise ValueError("label issues read the class probabilities from the embeddings side file: give one")
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
    if issues:
        df = li.label_issues(df, candidates(df), read_probs(embeddings))
    df, removed = apply_rules(df, rules)
    relabelled = 0
    if relabel_min_p is not None:
        df, relabelled = li.relabel(df, relabel_min_p)
    clips = {}
    if not long.empty and "video" in teachers:
        df, clips = cut_clips(df, root, teachers["video"], rules, window_s, stride_s, untrimmed_over_s, batch_size,
                              workers, step("windows"), shots, executor)
    decided = None
    if decisions is not None:
        df, decided = apply_decisions(df, decisions)
    if commit:
        commit(df)
    return FilterResult(df, cheap_report, report, removed, clips, relabelled=relabelled, decided=decided)


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
