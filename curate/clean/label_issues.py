"""Label issues and relabels: confident learning (Cleanlab's `find_label_issues`) on the out-of-sample class
probabilities that teacher scoring stores in the side file (curate/clean/sidefile.py).

Confident learning needs probabilities from models that never trained on the rows they score: a cross-fitted
ensemble (each row scored only by the member that left its fold out) or a teacher trained on the target alone.
`check_out_of_sample` refuses anything else. Per judged row it writes

  label_issue         Cleanlab's flag (METHOD, per teacher: one model's calibration at a time)
  self_confidence     the teacher's probability of the row's own label (its teacher_score)
  suggested_label_id  the most probable class with rows here (suggested_label: its name), suggested_p its probability

and `relabel` keeps a flagged row under its suggested label when suggested_p >= MIN_P, recording where it came
from in original_label / original_label_id (manifests/README.md).
"""
from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

from curate.clean.teacher import Ensemble, Teacher, manifest_classes
from curate.core import manifest as mf

ISSUE_COLUMNS = ("label_issue", "self_confidence", "suggested_label_id", "suggested_label", "suggested_p")
LINEAGE_COLUMNS = ("original_label", "original_label_id")
RELABEL = "relabel"   # the name the keep rule reports its kept rows under


def check_out_of_sample(teachers: Mapping[str, Teacher | Ensemble]) -> None:
    """Raise ValueError when some teacher trained on web sources without a holdout: its probabilities of those rows
    are in-sample (noisy labels memorised), and confident learning on them finds little."""
    seen = [f"{kind}: {', '.join(t.in_sample() if isinstance(t, Ensemble) else Ensemble([t]).in_sample())}"
            for kind, t in teachers.items()]
    seen = [s for s in seen if not s.endswith(": ")]
    if seen:
        raise ValueError("label issues need out-of-sample probabilities, but these teachers trained on the web rows "
                         "they would score (sources without a holdout): " + "; ".join(seen) + ". Use cross-fitted "
                         "teachers (a web source with holdout=FOLD/FOLDS, one checkpoint per fold) or teachers "
                         "trained on the target alone.")


METHOD = "prune_by_class"   # Cleanlab's filter_by: per class, as many of its least self-confident rows as the
                            # confident joint counts wrong (flag precision / recall on the demo worlds' images
                            # 0.60 / 0.90, where prune_by_noise_rate flagged 0.51 / 0.72: docs/experiments.md)


def label_issues(df: pd.DataFrame, rows: pd.Series, probs: Mapping[tuple[str, str], np.ndarray],
                 method: str = METHOD) -> pd.DataFrame:
    """df with ISSUE_COLUMNS filled for `rows` (a mask; the rows the keep rules judge), from probs keyed by
    (item_id, teacher_sha); Cleanlab (filter_by=method) runs once per teacher_sha, over the classes that have rows."""
    try:
        from cleanlab.filter import find_label_issues
    except ImportError as exc:   # pragma: no cover - a dependency of curate
        raise ValueError("label issues need cleanlab (pip install cleanlab)") from exc

    df = df.copy()
    names = manifest_classes(df)
    for c, dtype in zip(ISSUE_COLUMNS, ("boolean", "Float32", "Int32", "string", "Float32")):
        df[c] = pd.Series(pd.NA, index=df.index, dtype=dtype)
    judged = df[rows]
    missing = [i for i, s in zip(judged["item_id"], judged["teacher_sha"]) if (i, s) not in probs]
    if missing:
        raise ValueError(f"{len(missing)} scored rows (e.g. {missing[0]}) have no stored class probabilities: they "
                         "were scored by an older curate; filter into a fresh --out to score them again")
    for sha, g in judged.groupby("teacher_sha"):
        raw = np.stack([probs[(i, sha)] for i in g["item_id"]]).astype(np.float64)
        y = g["label_id"].to_numpy(np.int64)
        present = np.unique(y)
        p = raw[:, present]          # the teacher's own probabilities, over the classes that have rows
        yc = np.searchsorted(present, y)
        flag = (find_label_issues(yc, p / np.maximum(p.sum(axis=1, keepdims=True), 1e-12),
                                  filter_by=method, n_jobs=1) if len(present) > 1
                else np.zeros(len(g), bool))
        best = p.argmax(axis=1)
        df.loc[g.index, "label_issue"] = flag
        df.loc[g.index, "self_confidence"] = p[np.arange(len(g)), yc]
        df.loc[g.index, "suggested_label_id"] = present[best]
        df.loc[g.index, "suggested_label"] = [names.get(int(k)) for k in present[best]]
        df.loc[g.index, "suggested_p"] = p[np.arange(len(g)), best]
    return df


def noise_rates(df: pd.DataFrame, by: str) -> pd.DataFrame:
    """Per value of `by` ('label', 'query', ...): rows judged, rows flagged, and the estimated noise rate (the share
    flagged: pruning flags as many rows per class as the confident joint estimates are wrong)."""
    judged = df[df["label_issue"].notna()] if "label_issue" in df else df.iloc[:0]
    g = judged.assign(flag=judged["label_issue"].astype(bool)).groupby(by)["flag"]
    out = pd.DataFrame({"rows": g.size(), "issues": g.sum()}).reset_index()
    out["noise_rate"] = out["issues"] / out["rows"]
    return out


def relabel_mask(df: pd.DataFrame, min_p: float) -> pd.Series:
    """Rows the relabel rule keeps: flagged as a label issue, another class suggested with p >= min_p, and judged by
    the keep rules (kept, or rejected by them; never a row another stage rejected)."""
    if "label_issue" not in df:
        return pd.Series(False, index=df.index)
    judged = (df["status"] == "ok") | df["error"].map(mf.error_code).isin(["teacher_low", "teacher_mismatch"])
    other = df["suggested_label_id"].astype("Float64") != df["label_id"].astype("Float64")
    return (df["label_issue"].fillna(False).astype(bool) & other.fillna(False) & judged
            & (df["suggested_p"].astype("Float64") >= min_p).fillna(False))


def relabel(df: pd.DataFrame, min_p: float) -> tuple[pd.DataFrame, int]:
    """Keep the relabel_mask rows under their suggested label: label, label_id, teacher_score (now the suggested
    label's p) replaced, status ok, the crawl's label kept in original_label / original_label_id."""
    if not 0 < min_p <= 1:
        raise ValueError(f"relabel's MIN_P is a probability in (0, 1], not {min_p}")
    m = relabel_mask(df, min_p)
    return set_labels(df, m, df.loc[m, "suggested_label_id"], df.loc[m, "suggested_p"]), int(m.sum())


def set_labels(df: pd.DataFrame, rows: pd.Series, label_ids: pd.Series, scores: pd.Series) -> pd.DataFrame:
    """Give `rows` new label ids (scores: the teacher's p of each, NA where unknown) and status ok; their first label
    stays in the lineage columns."""
    df = df.copy()
    names = manifest_classes(df)
    for c, dtype in zip(LINEAGE_COLUMNS, ("string", "Int32")):
        if c not in df:
            df[c] = pd.Series(pd.NA, index=df.index, dtype=dtype)
    first = rows & df["original_label_id"].isna()
    df.loc[first, "original_label"] = df.loc[first, "label"]
    df.loc[first, "original_label_id"] = df.loc[first, "label_id"]
    df.loc[rows, "label_id"] = label_ids.astype("Int32")
    df.loc[rows, "label"] = [names.get(int(k)) for k in label_ids]
    df.loc[rows, "teacher_score"] = scores.astype("Float64").to_numpy(dtype=np.float32, na_value=np.nan)
    df.loc[rows, ["status", "error"]] = ["ok", None]
    return df


def undo_relabels(df: pd.DataFrame) -> pd.DataFrame:
    """Relabelled rows back under their first label with their own-label score (before the rules decide again)."""
    if "original_label_id" not in df:
        return df
    df = df.copy()
    back = df["original_label_id"].notna()
    df.loc[back, "label"] = df.loc[back, "original_label"]
    df.loc[back, "label_id"] = df.loc[back, "original_label_id"]
    known = df["self_confidence"].notna() if "self_confidence" in df else pd.Series(False, index=df.index)
    df.loc[back & known, "teacher_score"] = df.loc[back & known, "self_confidence"].astype(np.float32)
    df.loc[back & ~known, ["teacher_score", "teacher_sha"]] = None    # scored again under the first label
    df.loc[back, list(LINEAGE_COLUMNS)] = pd.NA
    return df
