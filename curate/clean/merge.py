"""The OmniSource manifest: a target's splits plus the kept rows of curated web manifests, in one table whose rows
keep living under their own data roots (named in the metadata, re-pointed by name when a folder moves).

Web rows come in when they are usable (status ok, with a file; not the pseudo-video mp4s made for inspection), of a
target class (label ids re-numbered by name to the target's), of a split other than train/val/test (only the target
defines those: a crawl's own copy of the target, fetched from its CSV, stays out), and collide with no target row:
an item id the target has, or the content (sha256) of a val/test item, is refused and counted. They keep their
lineage columns and their split (`web`).
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from curate.core import manifest as mf

TARGET_SPLITS = ("train", "val", "test")


@dataclass
class MergeReport:
    rows: pd.DataFrame                                   # the merged manifest
    roots: dict[str, str]                                # root name -> folder
    source_roots: dict[str, str]                         # manifest source -> root name
    merged: pd.DataFrame                                 # per input, source, media: rows merged
    refused: dict[str, int] = field(default_factory=dict)   # reason -> rows


def _roots_of(path: Path, df: pd.DataFrame, name: str) -> tuple[dict[str, str], dict[str, str]]:
    """(root name -> folder, source -> root name) of one input; a one-root input's root is called `name`."""
    named = mf.data_roots(path)
    if named is not None:
        return named
    folder = str(mf.find_data_root(path, df).resolve())
    return {name: folder}, {s: name for s in df["source"].dropna().unique()}


def _root_name(path: Path, taken: set[str]) -> str:
    base, k = path.stem, 2
    name = base
    while name in taken:
        name, k = f"{base}_{k}", k + 1
    return name


def merge(target: str | Path, web: Sequence[str | Path]) -> MergeReport:
    """The target manifest's rows (every split as it is) followed by the usable rows of each web manifest."""
    target = Path(target)
    tdf = mf.read(target)
    roots, source_roots = _roots_of(target, tdf, "target")
    classes = tdf[["label", "label_id"]].dropna().drop_duplicates("label").set_index("label")["label_id"]
    held = tdf["split"].isin(["val", "test"])
    taken_ids, held_sha = set(tdf["item_id"]), set(tdf.loc[held, "sha256"].dropna())
    parts, counts, refused = [tdf], [], {}

    def refuse(reason: str, n: int) -> None:
        if n:
            refused[reason] = refused.get(reason, 0) + int(n)

    for web_path in map(Path, web):
        df = mf.read(web_path)
        name = _root_name(web_path, set(roots))
        its_roots, its_sources = _roots_of(web_path, df, name)
        usable = (df["status"] == "ok") & df["path"].notna() & (df["source"] != "pseudo")
        refuse("not usable (not ok, no file, or an inspection pseudo-video)", (~usable).sum())
        df = df[usable]
        own = df["split"].isin(TARGET_SPLITS)
        refuse("a target split (train/val/test) of a web manifest", own.sum())
        df = df[~own]
        known = df["label"].isin(classes.index)
        refuse("label not a target class", (~known).sum())
        df = df[known]
        same_id = df["item_id"].isin(taken_ids)
        refuse("item id already in the manifest", same_id.sum())
        df = df[~same_id]
        copy = df["sha256"].isin(held_sha)
        refuse("same content as a val/test item", copy.sum())
        df = df[~copy].drop_duplicates("item_id").copy()
        df["label_id"] = df["label"].map(classes).astype("Int32")
        for source in df["source"].unique():
            root_name = its_sources[source]
            folder = its_roots[root_name]
            if source in source_roots and roots[source_roots[source]] != folder:
                raise mf.ManifestError([f"source {source!r} lives under {roots[source_roots[source]]} in one input and "
                                        f"{folder} in {web_path}: one source, one data root"], web_path)
            if source not in source_roots:
                owner = next((n for n, f in roots.items() if f == folder), root_name)
                roots.setdefault(owner, folder)
                source_roots[source] = owner
        taken_ids |= set(df["item_id"])
        parts.append(df)
        counts.append(df.assign(input=web_path.name).groupby(["input", "source", "media"]).size().rename("rows"))
    rows = mf.from_table(mf.to_table(pd.concat(parts, ignore_index=True)))
    merged = pd.concat(counts).reset_index() if counts else pd.DataFrame(columns=["input", "source", "media", "rows"])
    return MergeReport(rows, roots, source_roots, merged, refused)


def write_merged(report: MergeReport, out: str | Path, inputs: Sequence[str | Path]) -> Path:
    """The merged manifest, with its named roots and where it came from in the metadata."""
    meta = {"data_roots": json.dumps(report.roots), "source_roots": json.dumps(report.source_roots),
            "merged_from": json.dumps([str(Path(p).resolve()) for p in inputs])}
    return mf.write(report.rows, out, meta)
