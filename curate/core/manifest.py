"""Item manifests: one Parquet row per image, video or clip; schema, atomic I/O, merge and validation."""
from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.core import store
from curate.core.files import atomic_path

SCHEMA_VERSION = "1"

STATUSES = ("planned", "ok", "failed", "rejected")
SPLITS = ("train", "val", "test", "web")
MEDIA = ("video", "image")


def _f(name: str, type_: pa.DataType, doc: str) -> pa.Field:
    return pa.field(name, type_, metadata={"doc": doc})


# Order matters only for display; every manifest carries every column (null where not yet known).
SCHEMA = pa.schema([
    _f("item_id", pa.string(), "stable id: hash of (source, source_id, start_s, end_s)"),
    _f("source", pa.string(), "kinetics, youtube, web_image, feed_image, feed_video, url, local, synthetic, clip, pseudo"),
    _f("source_id", pa.string(), "the source's own id (YouTube id, URL, post id)"),
    _f("url", pa.string(), "where it was (or will be) fetched from"),
    _f("query", pa.string(), "the query or tag that found it (null for annotation imports)"),
    _f("label", pa.string(), "class name it was collected for"),
    _f("label_id", pa.int32(), "index of label in the recipe's class list"),
    _f("split", pa.string(), "train, val, test or web"),
    _f("media", pa.string(), "video or image"),
    _f("start_s", pa.float64(), "segment start inside the source video in seconds (null: whole)"),
    _f("end_s", pa.float64(), "segment end inside the source video in seconds (null: whole)"),
    _f("path", pa.string(), "file relative to the data root (null until fetched)"),
    _f("sha256", pa.string(), "content hash of the file at path"),
    _f("bytes", pa.int64(), "size of the file at path"),
    _f("width", pa.int32(), "frame width in pixels (probe)"),
    _f("height", pa.int32(), "frame height in pixels (probe)"),
    _f("fps", pa.float64(), "average frame rate (probe; null for images)"),
    _f("frames", pa.int32(), "number of decodable frames (probe; 1 for images)"),
    _f("duration_s", pa.float64(), "duration in seconds (probe; null for images)"),
    _f("codec", pa.string(), "video codec or image format (probe)"),
    _f("status", pa.string(), "planned, ok, failed or rejected"),
    _f("error", pa.string(), "'code: message' for failed and rejected rows"),
    _f("teacher_score", pa.float32(), "teacher probability of the row's own label (curate filter)"),
    _f("teacher_pred", pa.int32(), "teacher top-1 class id (curate filter)"),
    _f("teacher_top5", pa.list_(pa.int32()), "teacher top-5 class ids (curate filter)"),
    _f("teacher_sha", pa.string(), "hash of the checkpoint that scored the row"),
    _f("dup_of", pa.string(), "item_id of the nearest target item or kept near-duplicate (curate dedup)"),
    _f("dup_sim", pa.float32(), "cosine similarity to dup_of"),
    _f("parent_id", pa.string(),
       "item_id this row was derived from (clip of a video, pseudo-video of an image, element of an event)"),
    _f("event", pa.string(), "hierarchy level 1 label (FineGym event)"),
    _f("event_id", pa.int32(), "hierarchy level 1 id"),
    _f("set", pa.string(), "hierarchy level 2 label (FineGym set)"),
    _f("set_id", pa.int32(), "hierarchy level 2 id"),
    _f("element", pa.string(), "hierarchy level 3 label (FineGym element)"),
    _f("element_id", pa.int32(), "hierarchy level 3 id"),
    _f("recipe_sha", pa.string(), "hash of the recipe that planned the row"),
    _f("fetched_at", pa.timestamp("us", tz="UTC"), "when the media was fetched"),
])
COLUMNS = tuple(SCHEMA.names)
_TYPES = {f.name: f.type for f in SCHEMA}
_PANDAS_TYPES = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}


class ManifestError(ValueError):
    """A manifest that does not follow the schema; the message names every bad column and row."""

    def __init__(self, problems: list[str], path: str | os.PathLike | None = None):
        self.problems = problems
        where = f"{path}: " if path else ""
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        super().__init__(f"{where}{len(problems)} manifest problem(s):\n  {shown}{more}")


@dataclass(frozen=True)
class Problem:
    column: str
    row: int | None
    message: str

    def __str__(self) -> str:
        at = f" row {self.row}" if self.row is not None else ""
        return f"column '{self.column}'{at}: {self.message}"


def item_id(source: str, source_id: str, start_s: float | None = None, end_s: float | None = None) -> str:
    """Stable 16-hex id of (source, source_id, start_s, end_s); times rounded to the millisecond."""
    span = "" if start_s is None and end_s is None else f"{_ms(start_s)}-{_ms(end_s)}"
    key = f"{source}\x1f{source_id}\x1f{span}"
    return hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]


def _ms(t: float | None) -> str:
    return "" if t is None or (isinstance(t, float) and np.isnan(t)) else f"{float(t):.3f}"


def fold_of(df: pd.DataFrame, folds: int, seed: int = 0) -> np.ndarray:
    """Each row's fold in 0..folds-1, a pure function of (seed, the row's item id) so that every run agrees; a clip
    cut from a longer file takes its parent's fold (a model that trained on the file has seen the clip)."""
    if folds < 2:
        raise ValueError(f"folds must be at least 2, got {folds}")
    key = df["parent_id"].fillna(df["item_id"]) if "parent_id" in df else df["item_id"]
    return np.array([int(hashlib.sha256(f"{seed}\x1f{k}".encode()).hexdigest()[:8], 16) % folds for k in key],
                    dtype=np.int64)


def media_relpath(source: str, iid: str, ext: str) -> str:
    """Where an item's file lives under the data root: <source>/<id[:2]>/<id>.<ext> (never from titles or URLs)."""
    if not iid or any(c not in "0123456789abcdef" for c in iid):
        raise ValueError(f"item id {iid!r} is not a lowercase hex id")
    ext = ext.lower().lstrip(".")
    if not ext.isalnum() or len(ext) > 5:
        raise ValueError(f"bad media extension {ext!r}")
    if not source.replace("_", "").isalnum():
        raise ValueError(f"bad source name {source!r}")
    return f"{source}/{iid[:2]}/{iid}.{ext}"


def error_code(error: Any) -> str | None:
    """The code part of an 'code: message' error string."""
    if error is None or (isinstance(error, float) and np.isnan(error)) or error is pd.NA:
        return None
    return str(error).split(":", 1)[0].strip()


def empty() -> pd.DataFrame:
    """A manifest with no rows."""
    return from_table(SCHEMA.empty_table())


def from_records(records: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a manifest from dicts; missing columns are null, unknown keys are kept as extra columns."""
    records = list(records)
    if not records:
        return empty()
    extra = sorted({k for r in records for k in r} - set(COLUMNS))
    cols: dict[str, pa.Array] = {}
    for name in list(COLUMNS) + extra:
        values = [r.get(name) for r in records]
        try:
            cols[name] = pa.array(values, type=_TYPES.get(name), from_pandas=True)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            row = _first_bad_row(values, _TYPES.get(name))
            raise ManifestError([str(Problem(name, row, f"cannot be stored as {_TYPES.get(name)}: {exc}"))]) from exc
    return from_table(pa.table(cols))


def _first_bad_row(values: list, type_: pa.DataType | None) -> int | None:
    for i, v in enumerate(values):
        try:
            pa.array([v], type=type_, from_pandas=True)
        except Exception:  # noqa: BLE001 - we are looking for the row that fails
            return i
    return None


def from_table(table: pa.Table) -> pd.DataFrame:
    """Arrow table -> pandas manifest (nullable ints, str columns, lists as Python lists)."""
    df = table.to_pandas(types_mapper=_PANDAS_TYPES.get)
    for name in ("teacher_top5",):
        if name in df.columns:
            df[name] = pd.Series([None if v is None else [int(x) for x in v] for v in df[name]], index=df.index,
                                 dtype=object)  # object even when empty, so empty manifests write
    return df


def to_table(df: pd.DataFrame) -> pa.Table:
    """pandas manifest -> Arrow table with the schema's types; extra columns keep their inferred types."""
    missing = [c for c in COLUMNS if c not in df.columns]
    if missing:
        df = df.copy()
        for c in missing:
            df[c] = None
    arrays, fields = [], []
    for name in list(COLUMNS) + [c for c in df.columns if c not in _TYPES]:
        type_ = _TYPES.get(name)
        series = df[name]
        try:
            arr = pa.Array.from_pandas(series, type=type_) if type_ is not None else pa.Array.from_pandas(series)
        except (pa.ArrowInvalid, pa.ArrowTypeError, TypeError, ValueError) as exc:
            row = _first_bad_row(series.tolist(), type_)
            raise ManifestError([str(Problem(name, row, f"cannot be stored as {type_}: {exc}"))]) from exc
        arrays.append(arr)
        fields.append(SCHEMA.field(name) if type_ is not None else pa.field(name, arr.type))
    return pa.Table.from_arrays(arrays, schema=pa.schema(fields))


def validate(df: pd.DataFrame) -> list[Problem]:
    """Every schema problem in a manifest (empty list: valid)."""
    problems: list[Problem] = []
    missing = [c for c in COLUMNS if c not in df.columns]
    problems += [Problem(c, None, "missing") for c in missing]
    if missing:
        return problems
    ids = df["item_id"]
    for i in np.flatnonzero(ids.isna().to_numpy()):
        problems.append(Problem("item_id", int(i), "null"))
    dup = ids.duplicated(keep="first") & ids.notna()
    for i in np.flatnonzero(dup.to_numpy()):
        problems.append(Problem("item_id", int(i), f"duplicate of an earlier row ({ids.iloc[i]})"))
    for col, allowed in (("status", STATUSES), ("split", SPLITS + (None,)), ("media", MEDIA + (None,))):
        bad = ~df[col].isin([a for a in allowed if a]) & (df[col].notna() if None in allowed else True)
        for i in np.flatnonzero(np.asarray(bad)):
            problems.append(Problem(col, int(i), f"{df[col].iloc[i]!r} is not one of {[a for a in allowed if a]}"))
    needs_error = df["status"].isin(["failed", "rejected"]) & df["error"].isna()
    for i in np.flatnonzero(needs_error.to_numpy()):
        problems.append(Problem("error", int(i), f"status is {df['status'].iloc[i]} but error is empty"))
    ok_no_path = (df["status"] == "ok") & df["path"].isna()
    for i in np.flatnonzero(ok_no_path.to_numpy()):
        problems.append(Problem("path", int(i), "status is ok but path is empty"))
    label_id = df["label_id"].astype("Float64")
    for i in np.flatnonzero((label_id < 0).fillna(False).to_numpy()):
        problems.append(Problem("label_id", int(i), f"negative ({df['label_id'].iloc[i]})"))
    both = df["start_s"].notna() & df["end_s"].notna()
    for i in np.flatnonzero((both & (df["end_s"] <= df["start_s"])).to_numpy()):
        problems.append(Problem("end_s", int(i), f"end {df['end_s'].iloc[i]} is not after start {df['start_s'].iloc[i]}"))
    for i, p in zip(np.flatnonzero(df["path"].notna().to_numpy()), df["path"].dropna()):
        if os.path.isabs(p) or ".." in p.split("/") or "\x00" in p:     # POSIX paths: '/' is the one separator
            problems.append(Problem("path", int(i), f"{p!r} must be relative to the data root without '..'"))
    return problems


def check(df: pd.DataFrame, path: str | os.PathLike | None = None) -> pd.DataFrame:
    """Raise ManifestError naming every bad column and row; return df unchanged when valid."""
    problems = validate(df)
    if problems:
        raise ManifestError([str(p) for p in problems], path)
    return df


def exists(path: str | os.PathLike) -> bool:
    """Whether a manifest, a single file or a folder, is at path."""
    return store.is_folder(path) or Path(path).exists()


def read(path: str | os.PathLike, validate_rows: bool = True, filter: pc.Expression | None = None) -> pd.DataFrame:
    """Read a manifest, a single file or a folder (curate.core.store: the latest row of each item); columns missing
    from older files are added as nulls, wrong types are reported. filter: only rows that pass it, e.g.
    `pc.field('label') == 'abseiling'`, applied while reading."""
    path = Path(path)
    if not exists(path):
        raise FileNotFoundError(f"manifest {path} does not exist")
    try:
        table = store.read_table(path, filter=filter) if path.is_dir() else pq.read_table(path, filters=filter)
    except (pa.ArrowInvalid, OSError) as exc:
        raise ManifestError([f"not a readable Parquet file: {exc}"], path) from exc
    problems = []
    for f in table.schema:
        want = _TYPES.get(f.name)
        if want is not None and not f.type.equals(want):
            try:
                table = table.set_column(table.schema.get_field_index(f.name), SCHEMA.field(f.name),
                                         table.column(f.name).cast(want))
            except (pa.ArrowInvalid, pa.ArrowNotImplementedError):
                problems.append(f"column '{f.name}': has type {f.type}, expected {want}")
    if problems:
        raise ManifestError(problems, path)
    df = from_table(table)
    for c in COLUMNS:
        if c not in df.columns:
            df[c] = pd.Series([None] * len(df), dtype=from_table(SCHEMA.empty_table())[c].dtype)
    df = df[list(COLUMNS) + [c for c in df.columns if c not in _TYPES]]
    return check(df, path) if validate_rows else df


def write(df: pd.DataFrame, path: str | os.PathLike, metadata: Mapping[str, str] | None = None) -> Path:
    """Validate and write the whole manifest atomically: a single file (temp file in the same folder, fsync,
    rename), or, where path is a manifest folder, one part file that replaces every earlier one."""
    path = Path(path)
    check(df, path)
    table = to_table(df.reset_index(drop=True))
    meta = {"curate_schema": SCHEMA_VERSION, **(metadata or {})}
    if store.is_folder(path):
        return store.replace(path, table, meta)
    table = table.replace_schema_metadata({k.encode(): v.encode() for k, v in meta.items()})
    with atomic_path(path, durable=True) as tmp:
        pq.write_table(table, tmp, compression="zstd")
    return path


def commit(path: str | os.PathLike, rows: pd.DataFrame, metadata: Mapping[str, str] | None = None) -> Path:
    """Upsert rows (validated) into the manifest folder at path in O(rows): one new part file, atomic under kill.
    A single-file manifest becomes a folder (its file, unchanged, is the first part); none yet: one is made.
    metadata: the manifest's from now on (None: unchanged). The stages that commit in batches use this."""
    path = Path(path)
    check(rows, path)
    fresh = not exists(path)
    meta = {"curate_schema": SCHEMA_VERSION, **(metadata or {})} if metadata is not None or fresh else None
    return store.commit(path, to_table(rows.reset_index(drop=True)), meta)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Key/value metadata stored with a manifest (a folder's: its newest commit's)."""
    if store.is_folder(path):
        return store.read_metadata(path)
    return store.decode_metadata(pq.read_schema(path).metadata)


def upsert(base: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """Merge by item_id: rows of new replace rows of base with the same id; unseen ids are appended."""
    if new.empty:
        return base
    if base.empty:
        return new.reset_index(drop=True)
    new = new.drop_duplicates("item_id", keep="last")
    keep = base[~base["item_id"].isin(new["item_id"])]
    pos = pd.Series(range(len(base)), index=base["item_id"].to_numpy())
    replaced = new[new["item_id"].isin(base["item_id"])].copy()
    appended = new[~new["item_id"].isin(base["item_id"])]
    replaced["_pos"] = pos.loc[replaced["item_id"].to_numpy()].to_numpy()
    keep = keep.assign(_pos=pos.loc[keep["item_id"].to_numpy()].to_numpy())
    merged = pd.concat([keep, replaced], ignore_index=True).sort_values("_pos", kind="stable").drop(columns="_pos")
    return pd.concat([merged, appended], ignore_index=True)


def summary(df: pd.DataFrame) -> dict[str, Any]:
    """Counts by source, split, status, error code and label (what `curate info` prints)."""
    codes = df["error"].map(error_code)

    def counts(s: pd.Series) -> dict[str, int]:
        return {str(k): int(v) for k, v in s.fillna("-").value_counts().sort_index().items()}

    return {
        "rows": int(len(df)),
        "source": counts(df["source"]),
        "split": counts(df["split"]),
        "status": counts(df["status"]),
        "error": {str(k): int(v) for k, v in codes.dropna().value_counts().sort_index().items()},
        "media": counts(df["media"]),
        "label": counts(df["label"]),
        "bytes": int(df["bytes"].fillna(0).sum()),
        "duration_s": float(df["duration_s"].fillna(0).sum()),
    }


def dumps_summary(df: pd.DataFrame) -> str:
    return json.dumps(summary(df), indent=2, sort_keys=True)


# ------------------------------------------------------------------------------------------ rows and roots

def find_data_root(path: Path, df: pd.DataFrame, given: str | Path | None = None) -> Path:
    """--data-root, else the manifest's `data_root` metadata, else the nearest of the manifest's folder and its
    parents that holds the first usable row's file. A manifest spanning several roots has no one root: refused."""
    if given:
        return Path(given)
    meta = read_metadata(path)
    if "data_roots" in meta:
        raise ManifestError([f"its rows live under several data roots ({', '.join(json.loads(meta['data_roots']))}); "
                             "this command needs one: give --data-root, or run it on the manifests it was merged "
                             "from"], path)
    if meta.get("data_root"):
        return Path(meta["data_root"])
    rel = next((p for p in df.loc[df["status"] == "ok", "path"].dropna()), None)
    for root in [path.parent, *path.parent.parents]:
        if rel is None or (root / rel).exists():
            return root
    raise FileNotFoundError(f"{path}: cannot find the data root holding {rel!r}; pass --data-root")


Roots = str | os.PathLike | Mapping[str, str]


def data_roots(path: str | os.PathLike) -> tuple[dict[str, str], dict[str, str]] | None:
    """A manifest's named data roots, (NAME -> folder, source -> NAME) from its metadata, or None for a manifest of
    one root (`data_root`)."""
    meta = read_metadata(path)
    if "data_roots" not in meta:
        return None
    return json.loads(meta["data_roots"]), json.loads(meta.get("source_roots", "{}"))


def media_paths(df: pd.DataFrame, path: str | os.PathLike | None, root: Roots | None = None) -> pd.Series:
    """Each row's file as an absolute path (None where the row has no file). root: one folder for every row, or a
    mapping NAME -> folder that re-points some of the manifest's named roots (a moved crawl: {'web': '/new'}); by
    default the manifest's own roots: its named roots by row source (metadata `data_roots`, `source_roots`), else its
    one root (find_data_root; its name, for re-pointing, is 'data')."""
    moved = dict(root) if isinstance(root, Mapping) else {}
    named = data_roots(path) if path is not None and not isinstance(root, (str, os.PathLike)) else None
    if named is None:
        one = root if isinstance(root, (str, os.PathLike)) else moved.pop("data", None)
        if moved:
            raise ManifestError([f"no data roots named {sorted(moved)}: it has one root, named 'data'"], path)
        base = Path(one) if one else (find_data_root(Path(path), df) if path is not None else Path("."))
        by_row = pd.Series(str(base.resolve()), index=df.index)
    else:
        folders, by_source = named
        unknown = sorted(set(moved) - set(folders))
        if unknown:
            raise ManifestError([f"no data roots named {unknown}: its roots are {sorted(folders)}"], path)
        folders = {**folders, **{k: str(Path(v).resolve()) for k, v in moved.items()}}
        lost = sorted(set(df["source"].dropna()) - set(by_source))
        if lost:
            raise ManifestError([f"rows of source(s) {lost} belong to none of its data roots {sorted(folders)}"], path)
        by_row = df["source"].map(lambda s: folders[by_source[s]])
    rel = df["path"]
    return pd.Series([None if pd.isna(r) else str(Path(b) / r) for b, r in zip(by_row, rel)], index=df.index,
                     dtype=object)


def split_counts(df: pd.DataFrame) -> str:
    """'train 80 ok, val 40 ok, web 420 ok of 671': usable rows per split (of all, where some are not)."""
    ok = (df["status"] == "ok") & df["path"].notna()
    parts = []
    for split, n in df["split"].fillna("(none)").value_counts(sort=False).sort_index().items():
        good = int(ok[df["split"].fillna("(none)") == split].sum())
        parts.append(f"{split} {good} ok" + (f" of {n}" if good != n else ""))
    return ", ".join(parts) or "none (no rows)"


def usable_rows(df: pd.DataFrame, split: str | None = None) -> tuple[pd.DataFrame, dict[str, int]]:
    """Rows with status ok and a path (in `split` if given), and how many were skipped by status."""
    if split is not None:
        df = df[df["split"] == split]
    ok = (df["status"] == "ok") & df["path"].notna()
    skipped = {str(k): int(v) for k, v in df.loc[~ok, "status"].fillna("no path").value_counts().items()}
    return df[ok].reset_index(drop=True), skipped
