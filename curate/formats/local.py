"""Rows of videos the user keeps in a folder (`--videos`): where each file is and whether it is there."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # the CLI lists its importers without loading pandas
    import pandas as pd


def by_stem(root: Path) -> dict[str, str]:
    """File stem -> file name of the files directly under root (the first name in sorted order on a tie)."""
    return {p.stem: p.name for p in sorted(root.iterdir(), reverse=True) if p.is_file()}


def located(root: Path | None, rel: str | None, expected: str) -> dict[str, Any]:
    """path, status and error of a row whose file is rel under root: ok when it is there, failed (`missing: ...`,
    naming `expected`) when not, planned without a root."""
    ok = root is not None and rel is not None and (root / rel).is_file()
    return {"path": rel, "status": "ok" if ok else ("failed" if root else "planned"),
            "error": None if ok or root is None else f"missing: {expected} not found under {root}"}


def local_rows(entries: Sequence[tuple[str, str | None, int | None, str]], dataset: str, video_root: Path | None,
               extra: Sequence[Mapping[str, Any]] | None = None) -> pd.DataFrame:
    """Manifest rows (source `local`, source_id `<dataset>/<path>`) for (relative path, class name, class id, split)
    entries, each updated with its `extra` columns."""
    from curate.core import manifest as mf

    records = []
    for k, (rel, label, label_id, split) in enumerate(entries):
        records.append({"item_id": mf.item_id("local", f"{dataset}/{rel}"), "source": "local",
                        "source_id": f"{dataset}/{rel}", "label": label, "label_id": label_id, "split": split,
                        "media": "video", **located(video_root, rel, rel), **(extra[k] if extra else {})})
    return mf.from_records(records)
