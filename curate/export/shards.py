"""Shards: consecutive items cut by count and bytes, each file written atomically, and a log beside them so that a
rerun keeps the shards an earlier run wrote whole (same items, same content) and removes the ones it no longer
plans. A killed export resumes at its first unfinished shard."""
from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from pathlib import Path

import pandas as pd

from curate.core.files import atomic_path, write_text


def plan(sizes: Sequence[int], max_items: int | None = None, max_bytes: float | None = None) -> list[tuple[int, int]]:
    """(start, stop) of each shard over items of these sizes: at most max_items items and max_bytes bytes (an item
    bigger than max_bytes gets a shard of its own); no shards for no items."""
    if max_items is not None and max_items < 1:
        raise ValueError(f"max_items must be at least 1, got {max_items}")
    if max_bytes is not None and max_bytes <= 0:
        raise ValueError(f"max_bytes must be positive, got {max_bytes}")
    bounds, start, used = [], 0, 0
    for i, size in enumerate(sizes):
        full = (max_items is not None and i - start >= max_items) or \
               (max_bytes is not None and i > start and used + size > max_bytes)
        if full:
            bounds.append((start, i))
            start, used = i, 0
        used += size
    if len(sizes) > start:
        bounds.append((start, len(sizes)))
    return bounds


class ShardLog:
    """`<out>/.curate-export-<format>.json`: shard file (relative to out) -> split, fingerprint, bytes, items."""

    def __init__(self, out: Path, fmt: str):
        self.out = Path(out)
        self.path = self.out / f".curate-export-{fmt}.json"
        try:
            self.shards: dict[str, dict] = json.loads(self.path.read_text(encoding="utf-8"))["shards"]
        except (OSError, ValueError, KeyError, TypeError):
            self.shards = {}

    def done(self, name: str, fingerprint: str) -> bool:
        """Whether the shard file is there, whole, with this content (as an earlier run recorded it)."""
        entry, path = self.shards.get(name), self.out / name
        return bool(entry and entry.get("fingerprint") == fingerprint and path.is_file()
                    and path.stat().st_size == entry.get("bytes"))

    def record(self, name: str, split: str, fingerprint: str, labels: dict[str, int]) -> None:
        """Note a shard written whole, with its items per label id (the log is rewritten atomically)."""
        self.shards[name] = {"split": split, "fingerprint": fingerprint, "bytes": (self.out / name).stat().st_size,
                             "items": sum(labels.values()), "labels": labels}
        self.save()

    def counts(self) -> dict[str, dict[int, int]]:
        """Items per split and label id over every shard under out (this run's and other splits' kept ones)."""
        out: dict[str, dict[int, int]] = {}
        for entry in self.shards.values():
            per = out.setdefault(entry["split"], {})
            for label, n in entry.get("labels", {}).items():
                per[int(label)] = per.get(int(label), 0) + int(n)
        return out

    def save(self) -> None:
        write_text(self.path, json.dumps({"shards": self.shards}, indent=1, sort_keys=True))

    def prune(self, only: tuple[str, ...], keep: set[str]) -> list[Path]:
        """Delete the shards an earlier run wrote (for the splits in `only`, or any split) that this run did not
        plan; return them."""
        gone = [n for n, e in self.shards.items() if (not only or e.get("split") in only) and n not in keep]
        for name in gone:
            (self.out / name).unlink(missing_ok=True)
            del self.shards[name]
        if gone:
            self.save()
        return [self.out / n for n in gone]


def fingerprint(rows: pd.DataFrame, options: str) -> str:
    """Hash of a shard's items (their content keys, in order) and the options that shape its bytes."""
    h = hashlib.sha256(options.encode())
    for key in rows["key"]:
        h.update(key.encode())
    return h.hexdigest()[:24]


def write_shards(log: ShardLog, split: str, rows: pd.DataFrame, names: Sequence[str],
                 bounds: Sequence[tuple[int, int]], write: Callable[[pd.DataFrame, Path], None],
                 options: str) -> tuple[list[Path], int]:
    """Write rows[start:stop] to each named shard (atomic, fsynced) unless the log says it is done; return the
    shard paths and how many were kept from an earlier run."""
    paths, reused = [], 0
    for name, (a, b) in zip(names, bounds):
        part, path = rows.iloc[a:b], log.out / name
        fp = fingerprint(part, options)
        if log.done(name, fp):
            reused += 1
        else:
            with atomic_path(path, durable=True) as tmp:
                write(part, tmp)
            labels = part["label_id"].value_counts().sort_index()
            log.record(name, split, fp, {str(k): int(v) for k, v in labels.items()})
        paths.append(path)
    return paths, reused
