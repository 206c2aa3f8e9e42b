"""Kinetics-400 / 600 / 700-2020 annotation CSVs as released: `label,youtube_id,time_start,time_end,split[,is_cc]`.

The header decides the columns: `label` is absent from the label-less test files (K400 2017, K600 2018, K700-2020)
and `is_cc` exists only in the 2017 K400 files; `split` is spelled val, validate or validation depending on the
release. `read_csv` returns one normalised table for all of them (vectorised: 650k rows read in about a second).
"""
from __future__ import annotations

import io
from pathlib import Path

import pandas as pd

SPLITS = {"train": "train", "val": "val", "validate": "val", "validation": "val", "test": "test"}
REQUIRED = ("youtube_id", "time_start", "time_end")


class KineticsError(ValueError):
    """A Kinetics CSV that cannot be read; the message names the file (and line)."""


def read_csv(source: str | Path | io.StringIO, name: str | None = None, split: str | None = None) -> pd.DataFrame:
    """Rows of one annotation CSV: label ('' where the file has none), youtube_id, time_start, time_end (floats, NaN
    where not a number), split (train / val / test; `split` when the file has no split column), is_cc (0/1 or NA),
    line (the row's line in the file, for messages). `name` names the source in errors."""
    where = name or str(source)
    try:
        df = pd.read_csv(source, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise KineticsError(f"{where}: cannot read it as a Kinetics CSV ({exc})") from exc
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise KineticsError(f"{where}: no column(s) {missing} in its header {list(df.columns)}; a Kinetics CSV has "
                            "label,youtube_id,time_start,time_end,split[,is_cc] (label-less test files: no label)")
    raw = df["split"].str.strip().str.lower() if "split" in df.columns else pd.Series(split or "train", index=df.index)
    sp = raw.map(SPLITS)
    if sp.isna().any():
        i = int(sp.isna().to_numpy().argmax())
        raise KineticsError(f"{where}:{i + 2}: split {df['split'].iloc[i]!r} is not one of {sorted(SPLITS)}")
    return pd.DataFrame({
        "label": df["label"].str.strip() if "label" in df.columns else "",
        "youtube_id": df["youtube_id"].str.strip(),
        "time_start": pd.to_numeric(df["time_start"], errors="coerce"),
        "time_end": pd.to_numeric(df["time_end"], errors="coerce"),
        "split": sp,
        "is_cc": pd.to_numeric(df["is_cc"], errors="coerce").astype("Int8") if "is_cc" in df.columns else pd.NA,
        "line": df.index.to_numpy() + 2,
    })


def bad_spans(df: pd.DataFrame) -> pd.Series:
    """Rows that cannot be a clip: no id, a time that is not a number, or an end not after the start."""
    return (df["youtube_id"] == "") | df["time_start"].isna() | df["time_end"].isna() \
        | (df["time_end"] <= df["time_start"]) | (df["time_start"] < 0)


def to_csv(rows: pd.DataFrame) -> str:
    """Manifest rows (label, source_id, start_s, end_s, split) as a Kinetics CSV: label,youtube_id,time_start,
    time_end,split, times to the millisecond, an empty label where a row has none."""
    csv = pd.DataFrame({"label": rows["label"].fillna(""), "youtube_id": rows["source_id"],
                        "time_start": rows["start_s"].round(3), "time_end": rows["end_s"].round(3),
                        "split": rows["split"]})
    return csv.to_csv(index=False, lineterminator="\n")
