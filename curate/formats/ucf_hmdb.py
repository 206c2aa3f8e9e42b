"""Importers for public recognition benchmarks' split files (UCF101, HMDB51) into manifests.

The videos stay where the user keeps them: `path` is relative to the folder holding the class folders
(`<class>/<video>.avi`), which becomes the data root for training and evaluation.
"""
from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from curate.core.files import FileFormatError
from curate.formats.local import local_rows

if TYPE_CHECKING:   # the CLI lists READERS without loading pandas
    import pandas as pd


class SplitFileError(FileFormatError):
    """A split file that does not follow the official format; the message gives file and line."""


def _lines(path: Path) -> list[tuple[int, str]]:
    if not path.exists():
        raise SplitFileError(f"{path}: missing")
    text = path.read_text(encoding="utf-8", errors="replace")
    return [(i, ln.strip()) for i, ln in enumerate(text.splitlines(), 1) if ln.strip()]


def read_ucf101(split_dir: str | Path, split: int = 1, video_root: str | Path | None = None) -> pd.DataFrame:
    """UCF101 `classInd.txt` + `trainlist0N.txt` / `testlist0N.txt` -> manifest (labels 0-based, classInd order)."""
    split_dir = Path(split_dir)
    if split not in (1, 2, 3):
        raise SplitFileError(f"UCF101 has splits 1, 2, 3, not {split}")
    classes: dict[int, str] = {}
    for no, line in _lines(split_dir / "classInd.txt"):
        m = re.fullmatch(r"(\d+)\s+(\S+)", line)
        if not m:
            raise SplitFileError(f"{split_dir / 'classInd.txt'}:{no}: expected '<index> <ClassName>', got {line!r}")
        classes[int(m.group(1))] = m.group(2)
    if sorted(classes) != list(range(1, len(classes) + 1)):
        raise SplitFileError(f"{split_dir / 'classInd.txt'}: class indices must run 1..N")
    by_folder = {name.lower(): (i - 1, name) for i, name in classes.items()}  # folder case differs for one class
    entries = []
    for split_name, fname in (("train", f"trainlist0{split}.txt"), ("test", f"testlist0{split}.txt")):
        for no, line in _lines(split_dir / fname):
            parts = line.split()
            rel = parts[0]
            folder = rel.split("/")[0].lower()
            if folder not in by_folder or "/" not in rel or ".." in rel.split("/"):
                raise SplitFileError(f"{split_dir / fname}:{no}: {rel!r} is not '<Class>/<video>.avi' of a known class")
            label_id, label = by_folder[folder]
            if len(parts) > 1 and int(parts[1]) - 1 != label_id:
                raise SplitFileError(f"{split_dir / fname}:{no}: label {parts[1]} does not match folder {label}")
            entries.append((rel, label, label_id, split_name))
    return local_rows(entries, "ucf101", Path(video_root) if video_root else None)


def read_hmdb51(split_dir: str | Path, split: int = 1, video_root: str | Path | None = None) -> pd.DataFrame:
    """HMDB51 `<class>_test_split<N>.txt` files (`<video>.avi <0|1|2>`: unused/train/test) -> manifest.

    Classes are numbered in sorted name order, as the common list files do.
    """
    split_dir = Path(split_dir)
    if split not in (1, 2, 3):
        raise SplitFileError(f"HMDB51 has splits 1, 2, 3, not {split}")
    files = sorted(split_dir.glob(f"*_test_split{split}.txt"))
    if not files:
        raise SplitFileError(f"{split_dir}: no '*_test_split{split}.txt' files")
    entries = []
    for label_id, path in enumerate(files):
        label = path.name[: -len(f"_test_split{split}.txt")]
        for no, line in _lines(path):
            m = re.fullmatch(r"(\S+\.avi)\s+([012])", line)
            if not m:
                raise SplitFileError(f"{path}:{no}: expected '<video>.avi <0|1|2>', got {line!r}")
            if m.group(2) != "0":
                entries.append((f"{label}/{m.group(1)}", label, label_id, "train" if m.group(2) == "1" else "test"))
    return local_rows(entries, "hmdb51", Path(video_root) if video_root else None)


READERS = {"ucf101": read_ucf101, "hmdb51": read_hmdb51}
