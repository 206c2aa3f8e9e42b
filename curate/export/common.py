"""What every export shares: the usable rows of a manifest with their class names and data root, the rows left out
(counted by split, media and reason), each item's metadata and lineage, and the end-of-export summary."""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.core import manifest as mf

IMAGE_EXTS = frozenset({"jpg", "jpeg", "png", "webp", "gif", "bmp"})
# Columns carried with every item when set: where it came from and what the stages said about it.
LINEAGE = ("source_id", "url", "query", "parent_id", "start_s", "end_s", "teacher_score", "teacher_pred",
           "teacher_top5", "teacher_sha", "dup_of", "dup_sim", "recipe_sha", "event", "event_id", "set", "set_id",
           "element", "element_id", "clip_id")
PROBE = ("sha256", "bytes", "width", "height", "fps", "frames", "duration_s", "codec")
UNSPLIT = "unsplit"


class ExportError(ValueError):
    """A manifest or option that cannot be exported as asked; the message says why."""


@dataclass
class Selection:
    """The rows to export (usable, labelled, file on disk; sorted by split then item_id) and what was left out."""

    rows: pd.DataFrame       # manifest columns + `ext` (file suffix), `size` (bytes on disk), `key` (content key)
    root: Path               # the data root every `path` is relative to (absolute)
    names: list[str]         # class names, index = exported label id
    skipped: Counter = field(default_factory=Counter)   # (split, media, reason) -> rows
    manifest: Path | None = None
    only: tuple[str, ...] = ()   # the splits asked for (empty: all)

    def splits(self) -> list[tuple[str, pd.DataFrame]]:
        """(split, its rows) in sorted split order."""
        return [(str(s), g) for s, g in self.rows.groupby("split", sort=True)]

    def skip(self, rows: pd.DataFrame, reason: str) -> None:
        """Count rows as left out for `reason`."""
        for (split, media), n in rows.groupby(["split", "media"], dropna=False).size().items():
            self.skipped[str(split), "-" if pd.isna(media) else str(media), reason] += int(n)


@dataclass
class Summary:
    """What an export wrote: items per split and media, media bytes, files, reused shards, skipped rows, how to load."""

    format: str
    out: Path
    root: Path
    names: list[str]
    items: Counter = field(default_factory=Counter)       # (split, media) -> items written
    media_bytes: Counter = field(default_factory=Counter)  # split -> bytes of the media exported
    files: dict[str, list[Path]] = field(default_factory=dict)   # split -> files written (shards, lists)
    reused: int = 0                                       # shards an earlier run had written whole (resume)
    skipped: Counter = field(default_factory=Counter)     # (split, media, reason) -> rows
    notes: list[str] = field(default_factory=list)        # how to load what was written

    def count(self, split: str, rows: pd.DataFrame) -> None:
        """Add rows written for split to the item and byte counts."""
        for media, n in rows["media"].value_counts().items():
            self.items[split, str(media)] += int(n)
        self.media_bytes[split] += int(rows["size"].sum())


def class_names(df: pd.DataFrame, given: list[str] | None = None) -> list[str]:
    """Class names by label id: `given` (checked against every row's label), else from the manifest's rows (all
    statuses, so every split agrees; ids 0..max, an id no row names is called by its number, as trainers do)."""
    known = df[df["label_id"].notna()]
    names_by_id = known.groupby("label_id")["label"].agg(lambda s: sorted(set(s.dropna().astype(str))))
    clash = {int(i): v for i, v in names_by_id.items() if len(v) > 1}
    if clash:
        raise ExportError(f"label ids with several names: {dict(list(clash.items())[:5])}")
    if given is not None:
        top = int(known["label_id"].max()) if len(known) else -1
        if top >= len(given):
            raise ExportError(f"label_id {top} has no name among the {len(given)} class names given")
        wrong = {int(i): v[0] for i, v in names_by_id.items() if v and v[0] != given[int(i)]}
        if wrong:
            raise ExportError("rows whose label is not the class list's name for their label_id: " + ", ".join(
                f"{i}: {v!r} vs {given[i]!r}" for i, v in list(wrong.items())[:5]))
        return list(given)
    top = int(known["label_id"].max()) + 1 if len(known) else 0
    by_id = {int(i): v[0] for i, v in names_by_id.items() if v}
    return [by_id.get(i, str(i)) for i in range(top)]


def subset_view(df: pd.DataFrame, manifest: Path, subset: str) -> tuple[pd.DataFrame, list[str]]:
    """A FineGym subset (gym99, gym288, the full list): label_id / split from `<subset>_label` / `<subset>_split`,
    names from the manifest's `gym_categories` metadata (Clabel order; Glabel order for the full list)."""
    from curate.formats import finegym as fg

    lab, spl = f"{subset}_label", f"{subset}_split"
    meta = mf.read_metadata(manifest).get("gym_categories")
    if lab not in df or spl not in df or not meta:
        have = sorted(c[: -len("_label")] for c in df.columns
                      if c.endswith("_label") and f"{c[: -len('_label')]}_split" in df)
        raise ExportError(f"{manifest}: no FineGym subset {subset!r} (columns {lab}, {spl} and gym_categories "
                          f"metadata, as `curate gym` writes them); subsets here: {have or 'none'}")
    cats = fg.categories_from_json(meta)
    if subset == cats.full:
        names = [cats.elements.get(g, (str(g),))[0] for g in range(max(cats.elements) + 1)]
    else:
        table = cats.subsets.get(subset, {})
        names = [cats.elements[table[c]][0] if c in table else str(c) for c in range(max(table, default=-1) + 1)]
    ids = pd.to_numeric(df[lab], errors="coerce").astype("Int64")
    view = df.assign(label_id=ids, split=df[spl].where(df[spl].notna(), df["split"]),
                     label=[names[int(i)] if pd.notna(i) and int(i) < len(names) else None for i in ids])
    return view, names


def select(manifest: str | Path, data_root: str | Path | None = None, splits: tuple[str, ...] = (),
           subset: str | None = None, classes: list[str] | None = None) -> Selection:
    """The usable rows of a manifest (mf.usable_rows: status ok with a path) that carry a label and whose file is
    on disk, in `splits` if given; every other row is counted by (split, media, reason)."""
    manifest = Path(manifest)
    df = mf.read(manifest)
    root = Path(mf.find_data_root(manifest, df, data_root)).resolve()
    if subset:
        df, names = subset_view(df, manifest, subset)
        unlabelled = f"not in {subset}"
    else:
        names, unlabelled = class_names(df, classes), "no label"
    df = df.assign(split=df["split"].fillna(UNSPLIT))
    if splits:
        missing = sorted(set(splits) - set(df["split"]))
        if missing:
            raise ExportError(f"no rows in split(s) {missing}; the manifest has {sorted(set(df['split']))}")
        df = df[df["split"].isin(splits)]
    ext = df["path"].fillna("").map(lambda p: Path(p).suffix.lower().lstrip("."))
    guessed = ext.map(lambda e: "image" if e in IMAGE_EXTS else "video")
    df = df.assign(media=df["media"].fillna(guessed), ext=ext)
    sel = Selection(df.iloc[:0], root, names, manifest=manifest, only=tuple(splits))
    ok, _ = mf.usable_rows(df)
    rest = df[~df["item_id"].isin(set(ok["item_id"]))]
    for reason, grp in rest.groupby(_reason(rest), sort=True):
        sel.skip(grp, str(reason))
    for reason, test in ((unlabelled, lambda d: d["label_id"].isna()),
                         ("no file extension", lambda d: ~d["ext"].str.fullmatch(r"[a-z0-9]{1,5}"))):
        bad = test(ok)
        sel.skip(ok[bad], reason)
        ok = ok[~bad]
    stats = [_stat(root / p) for p in ok["path"]]
    on_disk = pd.Series([s is not None for s in stats], index=ok.index, dtype=bool)
    sel.skip(ok[~on_disk], "file missing")
    ok = ok[on_disk].assign(size=[s.st_size for s in stats if s is not None],
                            mtime=[s.st_mtime_ns for s in stats if s is not None])
    ok = ok.assign(label_id=ok["label_id"].astype("int64"), label=[names[int(i)] if int(i) < len(names) else None
                                                                   for i in ok["label_id"]])
    ok = ok.sort_values(["split", "item_id"], kind="stable").reset_index(drop=True)
    sel.rows = ok.assign(key=[_key(r) for r in ok.to_dict("records")])
    return sel


def _reason(rows: pd.DataFrame) -> pd.Series:
    """'status: code' of each unusable row ('ok: no path' for an ok row without a file)."""
    codes = rows["error"].map(mf.error_code)
    status = rows["status"].fillna("no status").astype(str)
    reason = [f"{s}: {c}" if c else s for s, c in zip(status, codes)]
    return pd.Series([r if not r.startswith("ok") else "ok: no path" for r in reason], index=rows.index, dtype=object)


def _stat(path: Path) -> os.stat_result | None:
    try:
        st = path.stat()
    except OSError:
        return None
    return st if path.is_file() else None


def plain(value: Any) -> Any:
    """A JSON-ready Python value (numpy scalars unwrapped, NaN / NA / NaT as None, lists of ints)."""
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, pd.Timestamp):
        return value.isoformat()
    if isinstance(value, np.ndarray):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return [plain(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and math.isnan(value):
        return None
    return value


def item_meta(row: dict) -> dict:
    """An item's JSON: label, label_id, split, source, media, item_id, path and every lineage / probe value set."""
    meta = {k: plain(row[k]) for k in ("item_id", "label", "label_id", "split", "source", "media", "path")}
    meta.update({k: v for k in LINEAGE + PROBE if k in row and (v := plain(row[k])) is not None})
    return meta


def _key(row: dict) -> str:
    """A content key of one exported item: its metadata and its file's size and mtime (a changed file changes it)."""
    blob = json.dumps([item_meta(row), int(row["size"]), int(row["mtime"])], sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def human_bytes(n: float) -> str:
    """1234567 -> '1.2 MB'."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n} B"
