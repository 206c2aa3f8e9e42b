"""Hugging Face `datasets` Parquet: `data/<split>-00000-of-0000N.parquet` shards whose schema metadata carries the
features (label as a ClassLabel with the class names, `image` / `video` as Image / Video features holding the file's
bytes, or its absolute path with embed=False), and a README dataset card whose YAML maps splits to files, so that
`load_dataset(OUT)` and `load_dataset("parquet", data_files=...)` both give the class names."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from curate.core import manifest as mf
from curate.core.files import write_text
from curate.export import shards
from curate.export.common import PROBE, Selection, Summary, plain

DEFAULT_MAX_BYTES = 5e8          # the Hub's advice: Parquet files of a few hundred MB
VERSION = "hf1"
MEDIA = pa.struct({"bytes": pa.binary(), "path": pa.string()})
_LINEAGE = ("source_id", "url", "query", "parent_id", "start_s", "end_s", "teacher_score", "teacher_pred",
            "teacher_sha", "dup_of", "dup_sim", "event", "event_id", "set", "set_id", "element", "element_id")
_DTYPE = {pa.string(): "string", pa.int64(): "int64", pa.int32(): "int32", pa.float64(): "float64",
          pa.float32(): "float32"}


def columns(sel: Selection) -> list[tuple[str, pa.DataType]]:
    """The exported columns and their Arrow types (every shard has all of them, null where unset)."""
    base = [("item_id", pa.string()), ("label", pa.int64()), ("image", MEDIA), ("video", MEDIA),
            ("media", pa.string()), ("source", pa.string()), ("path", pa.string())]
    typed = {f.name: f.type for f in mf.SCHEMA}
    extra = [(c, typed[c]) for c in _LINEAGE + PROBE]
    if "clip_id" in sel.rows:
        extra.append(("clip_id", pa.string()))
    return base + extra


def features(sel: Selection) -> dict:
    """The `datasets.Features` dict of the columns (as Features.to_dict writes it)."""
    feats = {}
    for name, type_ in columns(sel):
        if name == "label":
            feats[name] = {"names": list(sel.names), "_type": "ClassLabel"}
        elif type_ == MEDIA:
            feats[name] = {"_type": name.capitalize()}
        else:
            feats[name] = {"dtype": _DTYPE[type_], "_type": "Value"}
    return feats


def table(rows: pd.DataFrame, sel: Selection, embed: bool = True) -> pa.Table:
    """One shard's rows as an Arrow table with the features in its schema metadata."""
    data = {}
    for name, type_ in columns(sel):
        if type_ == MEDIA:
            data[name] = pa.array([_media(r, sel.root, embed) if r["media"] == name else None
                                   for r in rows.to_dict("records")], type=MEDIA)
        elif name == "label":
            data[name] = pa.array(rows["label_id"].astype("int64").to_numpy(), type=type_)
        else:
            values = [plain(v) for v in rows[name]] if name in rows else [None] * len(rows)
            data[name] = pa.array(values, type=type_)
    meta = {b"huggingface": json.dumps({"info": {"features": features(sel)}}).encode()}
    return pa.table(data).replace_schema_metadata(meta)


def _media(row: dict, root: Path, embed: bool) -> dict:
    path = root / row["path"]
    if embed:
        return {"bytes": path.read_bytes(), "path": f"{row['item_id']}.{row['ext']}"}
    return {"bytes": None, "path": str(path)}


def export(sel: Selection, out: Path, max_items: int | None = None, max_bytes: float | None = None,
           embed: bool = True) -> Summary:
    """Parquet shards per split under out/data (resumable, like tar shards) and README.md (the dataset card)."""
    out = Path(out).resolve()
    (out / "data").mkdir(parents=True, exist_ok=True)
    if max_items is None and max_bytes is None:
        max_bytes = DEFAULT_MAX_BYTES
    summary = Summary("hf", out, sel.root, sel.names, skipped=sel.skipped)
    log, keep = shards.ShardLog(out, "hf"), set()
    for split, rows in sel.splits():
        sizes = [int(s) + 512 if embed else 512 for s in rows["size"]]
        bounds = shards.plan(sizes, max_items, max_bytes)
        names = [f"data/{split}-{i:05d}-of-{len(bounds):05d}.parquet" for i in range(len(bounds))]

        def write(part: pd.DataFrame, tmp: Path) -> None:
            pq.write_table(table(part, sel, embed), tmp, row_group_size=100, compression="zstd" if not embed else None)

        options = f"{VERSION} embed={embed} names={json.dumps(sel.names)}"
        paths, reused = shards.write_shards(log, split, rows, names, bounds, write, options)
        keep.update(names)
        summary.files[split], summary.reused = paths, summary.reused + reused
        summary.count(split, rows)
    log.prune(sel.only, keep)
    card = write_text(out / "README.md", card_text(sel, log.counts(), embed))
    files = ", ".join(f"{s!r}: {str(out / 'data' / f'{s}-*.parquet')!r}" for s in sorted(summary.files))
    summary.notes += [f"load: datasets.load_dataset({str(out)!r})  (splits and features from {card.name})",
                      f"   or datasets.load_dataset('parquet', data_files={{{files}}})",
                      "media: " + ("bytes inside the Parquet files (portable)" if embed else
                                   "absolute paths on this machine (--no-embed)")]
    return summary


def card_text(sel: Selection, counts: dict[str, dict[int, int]], embed: bool) -> str:
    """README.md: YAML (configs: split -> files; dataset_info: features with the class names) and a short card;
    `counts` (split -> label id -> items) covers every split under the folder, this run's and earlier ones'."""
    import yaml

    splits = sorted(counts)
    feats = []
    for name, type_ in columns(sel):
        if name == "label":
            feats.append({"name": name, "dtype": {"class_label": {"names": {str(i): n for i, n in
                                                                            enumerate(sel.names)}}}})
        else:
            feats.append({"name": name, "dtype": name if type_ == MEDIA else _DTYPE[type_]})
    head = {"configs": [{"config_name": "default", "data_files": [{"split": s, "path": f"data/{s}-*"}
                                                                  for s in splits]}],
            "dataset_info": {"features": feats}}
    rows = "".join(f"| {i} | {n} | " + " | ".join(str(counts[s].get(i, 0)) for s in splits) + " |\n"
                   for i, n in enumerate(sel.names))
    media = "the file's bytes" if embed else "the file's absolute path on the machine that exported it"
    name = sel.manifest.stem if sel.manifest else "dataset"
    return (f"---\n{yaml.safe_dump(head, sort_keys=False, allow_unicode=True)}---\n\n# {name}\n\n"
            f"Exported by `curate export --to hf` from `{sel.manifest}`: "
            + ", ".join(f"{sum(counts[s].values())} {s}" for s in splits) + " items.\n\n"
            "```python\nfrom datasets import load_dataset\nds = load_dataset(\"path/to/this/folder\")\n"
            "names = ds[\"train\"].features[\"label\"].names\n```\n\n"
            f"`image` (Image) and `video` (Video, decoded by torchcodec) hold {media}; one of them is set per row "
            "(`media` says which). `path` is the file relative to the curate data root; the other columns are the "
            "item's lineage (source, url, query, parent_id, teacher_score, dup_of, ...) and probe values from the "
            "curate manifest.\n\n"
            f"## Classes ({len(sel.names)})\n\n| label | name | " + " | ".join(splits) + " |\n|---|---|"
            + "---|" * len(splits) + "\n" + rows)
