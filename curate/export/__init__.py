"""Exports users load unchanged: a manifest's usable rows as WebDataset tar shards, MMAction2 lists, PyTorchVideo
CSVs or Hugging Face `datasets` Parquet (`curate export MANIFEST --to FORMAT -o OUT`)."""
from __future__ import annotations

from pathlib import Path

from curate.export.common import ExportError, Selection, Summary, select

FORMATS = ("webdataset", "mmaction2", "pytorchvideo", "hf")
__all__ = ["FORMATS", "ExportError", "Selection", "Summary", "export", "select"]


def export(manifest: str | Path, fmt: str, out: str | Path, data_root: str | Path | None = None,
           splits: tuple[str, ...] = (), subset: str | None = None, classes: list[str] | None = None,
           max_items: int | None = None, max_bytes: float | None = None, absolute: bool = False,
           embed: bool = True, prefix: str | None = None) -> Summary:
    """Export the usable rows of a manifest to `fmt` under out; the summary counts what was written and skipped."""
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")
    sel = select(manifest, data_root, splits, subset, classes)
    out = Path(out)
    if fmt == "webdataset":
        from curate.export import webdataset
        return webdataset.export(sel, out, max_items, max_bytes, prefix)
    if fmt == "mmaction2":
        from curate.export import mmaction2
        return mmaction2.export(sel, out, absolute, prefix)
    if fmt == "pytorchvideo":
        from curate.export import pytorchvideo
        return pytorchvideo.export(sel, out, absolute, prefix)
    from curate.export import hf
    return hf.export(sel, out, max_items, max_bytes, embed)
