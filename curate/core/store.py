"""Manifests that scale: a folder of Parquet part files, one per commit, where the latest row of each item_id wins.

    crawl.parquet/                          a folder in place of the single file (as Spark and Hive write them)
      part-00000000-00000000.parquet        commit 0: the planned rows
      part-00000001-00000001.parquet        commit 1: 500 rows now ok or failed
      part-00000000-00000001.parquet        commits 0..1 merged (compaction); the two files above are then deleted

A file named part-A-B holds the table that commits A..B make (item ids unique inside it). A commit writes one
new file (temporary name, fsync, rename: the rename is the commit point), so it costs O(rows committed) however
large the manifest. Reading takes the files whose range no other file covers (a compaction killed before its
clean-up leaves covered files behind; they are skipped, and the next writer deletes them), in commit order, and
keeps the last row of each item_id at the place of its first; a part written by `replace` covers 0..B and so
supersedes everything before it. Each file carries the manifest's key/value metadata as of its commit; the
newest file's is the manifest's.

Anyone can read the folder without curate: `pd.read_parquet(folder)`, `pyarrow.parquet.read_table(folder)`,
DuckDB `read_parquet('folder/*.parquet')`, Ray `read_parquet(folder)`; after a compaction (every finished crawl
ends with one, `curate manifest compact` does one) it holds one file, so those reads are exact. Between compactions
the folder holds several versions of updated rows: keep the last per item_id in file-name order, or compact first.

One writer at a time (a stage's driver); readers may run beside it. Commits merge every MERGE_PARTS trailing
one-commit files into one, so a long crawl leaves a few hundred files, not one per commit.
"""
from __future__ import annotations

import os
import re
import shutil
import uuid
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

KEY = "item_id"
MERGE_PARTS = 32                # trailing one-commit files merged into one by the commit that makes this many
MERGE_MAX_BYTES = 8 << 20       # ... when each is smaller than this (bigger commits stay as they are)
ROW_GROUP = 128 * 1024          # rows per Parquet row group: compaction streams the base a row group at a time
_PART = re.compile(r"^part-(\d{8})-(\d{8})\.parquet$")
_WRITTEN: dict[Path, tuple[int, pa.Table]] = {}   # parts this process committed, not yet merged, with their mtime:
                                                    # the merge of small commits takes them from here, not the disk


@dataclass(frozen=True)
class Part:
    path: Path
    first: int      # first commit it holds
    last: int       # last commit it holds
    bytes: int
    mtime_ns: int


def is_folder(path: str | os.PathLike) -> bool:
    """Whether path is a manifest folder (finishing a conversion from a single file that a kill interrupted)."""
    path = Path(path)
    staged = _staging(path)
    if not path.exists() and staged.is_dir() and any(_PART.match(p.name) for p in staged.iterdir()):
        os.rename(staged, path)     # the old file was already removed: the folder is complete, put it in place
    return path.is_dir()


def parts(path: str | os.PathLike) -> list[Part]:
    """The live part files of a folder in commit order (those no other file's range covers)."""
    return _live(_listing(Path(path)))


def _live(every: list[Part]) -> list[Part]:
    live, reach = [], -1
    for p in sorted(every, key=lambda p: (p.first, -p.last)):
        if p.last > reach:
            live.append(p)
            reach = p.last
    return live


def _listing(path: Path) -> list[Part]:
    out = []
    with os.scandir(path) as it:
        for e in it:
            m = _PART.match(e.name)
            if m:
                st = e.stat()
                out.append(Part(Path(e.path), int(m.group(1)), int(m.group(2)), st.st_size, st.st_mtime_ns))
    return out


def _name(first: int, last: int) -> str:
    return f"part-{first:08d}-{last:08d}.parquet"


def _staging(path: Path) -> Path:
    return path.with_name(f".{path.name}.folder")


# ------------------------------------------------------------------------------------------------------ reading

def read_table(path: str | os.PathLike, columns: list[str] | None = None, filter: pc.Expression | None = None
               ) -> pa.Table:
    """The folder's table: the latest row of each item_id, in the order ids first appeared; columns and a row
    filter (e.g. `pc.field('label') == 'abseiling'`, on columns read) are applied while reading (memory: the files
    after the first plus one row group of the first, plus the result)."""
    tries = 3   # a compaction running beside us may delete a file between listing and opening: list again
    while True:
        try:
            return _read(parts(path), columns, filter)
        except FileNotFoundError:
            tries -= 1
            if not tries or not Path(path).is_dir():
                raise


def _read(live: list[Part], columns: list[str] | None, filter: pc.Expression | None) -> pa.Table:
    if not live:
        raise FileNotFoundError("no part files in the manifest folder")
    if len(live) == 1:
        return pq.read_table(live[0].path, columns=columns, filters=filter)
    if filter is None:
        return _concat(list(_merged(live, columns)))
    return _select(_concat([piece.filter(filter) for piece in _merged(live, columns)]), columns)


def read_metadata(path: str | os.PathLike) -> dict[str, str]:
    """Key/value metadata of the newest commit (pandas' own left out)."""
    live = parts(path)
    if not live:
        return {}
    return decode_metadata(pq.read_schema(max(live, key=lambda p: p.last).path).metadata)


def decode_metadata(meta: Mapping[bytes, bytes] | None) -> dict[str, str]:
    return {k.decode(): v.decode() for k, v in (meta or {}).items() if not k.startswith(b"pandas")}


def _schema(live: list[Part], columns: list[str] | None) -> pa.Schema:
    schema = pa.unify_schemas([pq.read_schema(p.path) for p in live], promote_options="permissive")
    schema = schema.remove_metadata()
    if columns is not None:
        schema = pa.schema([schema.field(c) for c in columns if c in schema.names])
    return schema


def _conform(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """table with exactly schema's columns, in its order and types (null where table has no such column)."""
    cols = [table.column(f.name).cast(f.type) if f.name in table.column_names else pa.nulls(len(table), f.type)
            for f in schema]
    return pa.Table.from_arrays(cols, schema=schema)


def _concat(tables: list[pa.Table]) -> pa.Table:
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def _latest(live: list[Part], schema: pa.Schema) -> pa.Table:
    """The last row of each id among the files, in the order ids first appeared (ids unique within each file)."""
    cols = [f.name for f in schema]
    tables = []
    for p in live:
        mtime, table = _WRITTEN.get(p.path, (None, None))
        if mtime == p.mtime_ns:
            tables.append(_conform(_select(table, cols), schema))
            continue
        f = pq.ParquetFile(p.path)
        tables.append(_conform(f.read(columns=[c for c in cols if c in f.schema_arrow.names]), schema))
    table = _concat(tables).combine_chunks() if tables else schema.empty_table()
    if len(tables) <= 1:
        return table
    enc = pc.dictionary_encode(table.column(KEY)).combine_chunks()
    codes = enc.indices.to_numpy()
    _, rev_first = np.unique(codes[::-1], return_index=True)     # sorted codes 0..K-1: their last occurrence
    return table.take(len(codes) - 1 - rev_first)


def _merged(live: list[Part], columns: list[str] | None = None) -> Iterator[pa.Table]:
    """The latest table in pieces: the first file a row group at a time with its ids' later rows put in their
    place, then the ids the first file does not have (memory: the later files plus one row group)."""
    want = None if columns is None else list(dict.fromkeys([KEY, *columns]))
    schema = _schema(live, want)
    later = _latest(live[1:], schema)
    later_ids = later.column(KEY)
    hit = np.zeros(len(later), dtype=bool)
    base = pq.ParquetFile(live[0].path)
    names = [f.name for f in schema if f.name in base.schema_arrow.names]
    for rg in range(base.num_row_groups):
        piece = _conform(base.read_row_group(rg, columns=names), schema)
        if len(later):
            at = pc.index_in(piece.column(KEY), value_set=later_ids).to_numpy(zero_copy_only=False)
            found = ~np.isnan(at)
            if found.any():
                j = at[found].astype(np.int64)
                hit[j] = True
                index = np.arange(len(piece))
                index[found] = len(piece) + j
                piece = _concat([piece, later]).take(index)
        yield _select(piece, columns)
    yield _select(later.filter(pa.array(~hit)), columns)


def _select(table: pa.Table, columns: list[str] | None) -> pa.Table:
    return table if columns is None else table.select([c for c in columns if c in table.column_names])


# ------------------------------------------------------------------------------------------------------ writing

def commit(path: str | os.PathLike, table: pa.Table | Iterable[pa.Table], metadata: Mapping[str, str] | None = None
           ) -> Path:
    """Upsert table's rows (item ids unique) as one new part file: O(rows), atomic (the rename commits it).

    table: one table, or pieces of one schema written as they come (a plan larger than memory). path: a folder, a
    single-file manifest (turned into a folder whose first part is the old file, hard-linked, not rewritten) or
    nothing yet. metadata: the manifest's key/value metadata from now on (None: unchanged)."""
    path = Path(path)
    if not is_folder(path):
        if not path.exists():
            return _make_folder(path, table, metadata or {})
        _make_folder(path)
    every = _listing(path)
    if len(_live(every)) < len(every):      # files a killed compaction left behind
        _clean(path)
    n = max((p.last for p in every), default=-1) + 1
    _write(path / _name(n, n), table, read_metadata(path) if metadata is None else metadata)
    if isinstance(table, pa.Table) and table.nbytes <= MERGE_MAX_BYTES:
        _WRITTEN[path / _name(n, n)] = ((path / _name(n, n)).stat().st_mtime_ns, table)
    _merge_tail(path)
    return path


def replace(path: str | os.PathLike, table: pa.Table, metadata: Mapping[str, str] | None = None) -> Path:
    """Replace the whole table (one file covering every commit so far), then delete what it supersedes."""
    path = Path(path)
    if not is_folder(path):
        return _make_folder(path, table, metadata or {})
    n = max((p.last for p in _listing(path)), default=-1) + 1
    _write(path / _name(0, n), table, metadata or {})
    _clean(path)
    return path


def compact(path: str | os.PathLike) -> Path:
    """Merge every live file into one (streamed a row group at a time), then delete what it supersedes."""
    path = Path(path)
    live = parts(path)
    if len(live) > 1:
        _write_pieces(path / _name(live[0].first, live[-1].last), _merged(live), read_metadata(path))
    _clean(path)
    return path


def _make_folder(path: Path, table: pa.Table | Iterable[pa.Table] | None = None, meta: Mapping[str, str] | None = None) -> Path:
    """Put a folder at path, atomically: its first part is table, else the single file at path (hard-linked).

    The folder is built whole beside path, the old file removed, the folder renamed into place; a kill between the
    last two steps leaves the finished folder beside a missing path, which is_folder then moves into place."""
    staged = _staging(path)
    shutil.rmtree(staged, ignore_errors=True)
    staged.mkdir(parents=True)
    first = staged / _name(0, 0)
    if table is not None:
        _write(first, table, meta or {})
    else:
        try:
            os.link(path, first)
        except OSError:             # a file system without hard links
            shutil.copyfile(path, first)
            _fsync(first)
    _fsync(staged)
    if path.is_file():
        path.unlink()
    os.rename(staged, path)
    _fsync(path.parent)
    return path


def _write(dest: Path, table: pa.Table | Iterable[pa.Table], meta: Mapping[str, str]) -> None:
    _write_pieces(dest, iter([table]) if isinstance(table, pa.Table) else iter(table), meta)


def _write_pieces(dest: Path, pieces: Iterator[pa.Table], meta: Mapping[str, str]) -> None:
    """Write pieces (one schema) as one Parquet file: to a hidden temporary name, fsync, rename (as durable as the
    single-file write: the file's bytes are on disk before its name appears)."""
    tmp = dest.with_name(f".{uuid.uuid4().hex}.tmp")
    writer = None
    try:
        for piece in pieces:
            if writer is None:
                schema = piece.schema.with_metadata({k.encode(): v.encode() for k, v in meta.items()})
                writer = pq.ParquetWriter(tmp, schema, compression="zstd")
            writer.write_table(piece, row_group_size=ROW_GROUP)
        writer.close()
        _fsync(tmp)
        os.rename(tmp, dest)
    finally:
        tmp.unlink(missing_ok=True)


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _merge_tail(path: Path) -> None:
    """Merge the trailing one-commit small files into one once there are MERGE_PARTS of them (bounded work)."""
    live = parts(path)
    tail: list[Part] = []
    for p in reversed(live[1:]):
        if p.first != p.last or p.bytes > MERGE_MAX_BYTES:
            break
        tail.append(p)
    if len(tail) >= MERGE_PARTS:
        tail.reverse()
        _write_pieces(path / _name(tail[0].first, tail[-1].last), _merged(tail), read_metadata(path))
        _clean(path)


def _clean(path: Path) -> None:
    """Delete files that live files cover and temporary files a killed writer left."""
    live = {p.path for p in parts(path)}
    for p in _listing(path):
        if p.path not in live:
            p.path.unlink(missing_ok=True)
            _WRITTEN.pop(p.path, None)
    for tmp in path.glob(".*.tmp"):
        tmp.unlink(missing_ok=True)
