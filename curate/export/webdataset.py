"""WebDataset tar shards: per item `<item_id>.<ext>` (the media file as stored: mp4, webm, jpg, png, ...),
`<item_id>.json` (label, label_id, split, source, lineage) and `<item_id>.cls` (the label id), in shards of at most
N items / B bytes named `<prefix>-000000.tar`, one shard set per split."""
from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path

import pandas as pd

from curate.core.files import write_text
from curate.export import shards
from curate.export.common import Selection, Summary, item_meta
from curate.formats import lists

BLOCK = 512
DEFAULT_MAX_BYTES = 1e9
VERSION = "wds1"   # bump when the bytes of a shard change for the same items (invalidates shards of earlier runs)


def _padded(n: int) -> int:
    """Bytes of a tar member of n bytes: its header and its data padded to 512-byte blocks."""
    return BLOCK + -(-n // BLOCK) * BLOCK


def _members(row: dict) -> list[tuple[str, bytes]]:
    """The json and cls members of one item."""
    return [("json", json.dumps(item_meta(row), sort_keys=True).encode()), ("cls", str(int(row["label_id"])).encode())]


def member_bytes(row: dict) -> int:
    """Bytes one item takes in a tar (its three members with headers and padding)."""
    return _padded(int(row["size"])) + sum(_padded(len(data)) for _, data in _members(row))


def write_tar(rows: pd.DataFrame, root: Path, tmp: Path) -> None:
    """One shard: every row's media, json and cls members in row order (fixed mtime and owner: reproducible)."""
    with tarfile.open(tmp, "w", format=tarfile.USTAR_FORMAT) as tar:
        for row in rows.to_dict("records"):
            key = row["item_id"]
            with open(root / row["path"], "rb") as fh:
                tar.addfile(_info(f"{key}.{row['ext']}", row["size"]), fh)
            for ext, data in _members(row):
                tar.addfile(_info(f"{key}.{ext}", len(data)), io.BytesIO(data))


def _info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mtime, info.mode, info.uname, info.gname = int(size), 0, 0o644, "", ""
    return info


def export(sel: Selection, out: Path, max_items: int | None = None, max_bytes: float | None = None,
           prefix: str | None = None) -> Summary:
    """Shards of every split of the selection under out (resumable: whole shards of an earlier run are kept)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if max_items is None and max_bytes is None:
        max_bytes = DEFAULT_MAX_BYTES
    summary = Summary("webdataset", out, sel.root, sel.names, skipped=sel.skipped)
    log, keep = shards.ShardLog(out, "webdataset"), set()
    for split, rows in sel.splits():
        sizes = [member_bytes(r) for r in rows.to_dict("records")]
        budget = None if max_bytes is None else max(max_bytes - 2 * BLOCK - tarfile.RECORDSIZE, 1)
        bounds = shards.plan(sizes, max_items, budget)
        stem = f"{prefix}-{split}" if prefix else split
        names = [f"{stem}-{i:06d}.tar" for i in range(len(bounds))]
        paths, reused = shards.write_shards(log, split, rows, names, bounds,
                                            lambda part, tmp: write_tar(part, sel.root, tmp), VERSION)
        keep.update(names)
        summary.files[split], summary.reused = paths, summary.reused + reused
        summary.count(split, rows)
        last = len(names) - 1
        summary.notes.append(f"{split}: {out}/{stem}-{{000000..{last:06d}}}.tar ({len(rows)} items)")
    log.prune(sel.only, keep)
    write_text(out / "label_map.txt", lists.label_map_text(sel.names))
    summary.notes.append(
        "load: wds.WebDataset(URLS, shardshuffle=100).shuffle(1000).decode('pil').to_tuple('mp4;webm;jpg;png', 'cls', "
        "'json')  (images decode to PIL; videos stay bytes; class names in label_map.txt)")
    return summary
