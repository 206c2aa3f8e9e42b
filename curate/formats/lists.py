"""Annotation lists of the training frameworks: MMAction2's VideoDataset (`<path> <label>`) and RawframeDataset
(`<frame dir> <total frames> <label>`) lists and label maps, PyTorchVideo's `LabeledVideoPaths.from_csv` files.

The readers parse a file exactly the way the framework does (MMAction2 1.x `load_data_list`: a line split on one
space; PyTorchVideo 0.1.5: `line.rsplit(None, 1)`), so a test can check what a user's loader will see.
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

import pandas as pd

from curate.core.files import write_text


def list_text(entries: Iterable[str], labels: Iterable[int], spaces_ok: bool = False) -> str:
    """`<entry> <label>` lines; an entry holding whitespace is refused unless the reader splits from the right."""
    lines = []
    for entry, label in zip(entries, labels):
        entry = str(entry)
        if not entry or "\n" in entry or (not spaces_ok and any(c.isspace() for c in entry)):
            raise ValueError(f"list entry {entry!r} is empty or holds whitespace (MMAction2 splits lines on ' ')")
        lines.append(f"{entry} {int(label)}\n")
    return "".join(lines)


def write_lists(entries: pd.Series, labels: pd.Series, splits: pd.Series, out: str | Path,
                name: str = "{split}.txt", spaces_ok: bool = False) -> dict[str, Path]:
    """One `<entry> <label>` list per split value (files `name.format(split=...)` under out, splits sorted, rows in
    their order): MMAction2 VideoDataset lists, FineGym split files, PyTorchVideo CSVs."""
    out = Path(out)
    frame = pd.DataFrame({"entry": entries.to_numpy(), "label": labels.to_numpy(), "split": splits.to_numpy()})
    return {str(split): write_text(out / name.format(split=split), list_text(grp["entry"], grp["label"], spaces_ok))
            for split, grp in frame.groupby("split", sort=True)}


def rawframe_text(frame_dirs: Iterable[str], totals: Iterable[int], labels: Iterable[int]) -> str:
    """MMAction2 RawframeDataset lines `<frame dir> <total frames> <label>`."""
    for d in (frame_dirs := list(frame_dirs)):
        if not d or any(c.isspace() for c in str(d)):
            raise ValueError(f"frame dir {d!r} is empty or holds whitespace")
    return "".join(f"{d} {int(n)} {int(lab)}\n" for d, n, lab in zip(frame_dirs, totals, labels))


def label_map_text(names: Iterable[str]) -> str:
    """A label map: one class name per line, line i naming label i (MMAction2's `label_map_*.txt`)."""
    names = [str(n) for n in names]
    bad = [n for n in names if not n.strip() or "\n" in n or "\r" in n]
    if bad:
        raise ValueError(f"class names {bad[:3]!r} are empty or span lines")
    return "".join(f"{n}\n" for n in names)


def read_video_list(path: str | Path, prefix: str | None = "", delimiter: str = " ") -> list[dict]:
    """A VideoDataset list as MMAction2 1.x `VideoDataset.load_data_list` reads it: dicts of filename, label."""
    items = []
    for line in _lines(path):
        parts = line.strip().split(delimiter)
        if len(parts) == 1:
            filename, label = parts[0], -1
        else:
            filename, label = parts          # more than two fields raises, as in MMAction2
            label = int(label)
        if prefix is not None:
            filename = os.path.join(prefix, filename)
        items.append({"filename": filename, "label": label})
    return items


def read_rawframe_list(path: str | Path, prefix: str | None = "") -> list[dict]:
    """A RawframeDataset list as MMAction2 1.x reads it (no offsets, one label): frame_dir, total_frames, label."""
    items = []
    for line in _lines(path):
        parts = line.strip().split()
        frame_dir = os.path.join(prefix, parts[0]) if prefix is not None else parts[0]
        labels = [int(x) for x in parts[2:]] or [-1]
        if len(labels) != 1:
            raise ValueError(f"{path}: {line!r} has {len(labels)} labels")
        items.append({"frame_dir": frame_dir, "total_frames": int(parts[1]), "label": labels[0]})
    return items


def read_pytorchvideo_csv(path: str | Path) -> list[tuple[str, int]]:
    """(path, label) pairs as PyTorchVideo 0.1.5 `LabeledVideoPaths.from_csv` reads them (rsplit on whitespace)."""
    pairs = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        parts = line.rsplit(None, 1)
        pairs.append((parts[0], -1) if len(parts) == 1 else (parts[0], int(parts[1])))
    if not pairs:
        raise ValueError(f"Failed to load dataset from {path}.")
    return pairs


def _lines(path: str | Path) -> list[str]:
    """mmengine's `list_from_file`: the file's lines, each without its '\\n' / '\\r'."""
    return [line.rstrip("\n\r") for line in Path(path).read_text(encoding="utf-8").splitlines(keepends=True)]
