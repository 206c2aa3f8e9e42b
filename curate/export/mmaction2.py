"""MMAction2 (1.x) annotation lists: videos as VideoDataset lists `<path> <label>` (paths relative to the data root,
the `data_prefix=dict(video=...)` of the config), images as RawframeDataset lists `<frame dir> 1 <label>` whose
one-frame folders (`rawframes/<id[:2]>/<id>/img_00001.<ext>`, hard links to the files or copies) MMAction2's
SampleFrames loops into a still clip; a label map and a config fragment with one dataset dict per list."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from curate.core.files import write_text
from curate.export.common import Selection, Summary
from curate.formats import lists

FRAME_DIR = "rawframes"


def frame_dir(item_id: str) -> str:
    """An image's one-frame folder under rawframes/ (two-level, like the data root's media folders)."""
    return f"{item_id[:2]}/{item_id}"


def place_frame(src: Path, dst: Path) -> None:
    """dst as a hard link to src (a copy across file systems), replaced atomically; kept when already the same."""
    if dst.is_file():
        a, b = dst.stat(), src.stat()
        if dst.samefile(src) or (a.st_size, a.st_mtime_ns) == (b.st_size, b.st_mtime_ns):
            return
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(src, tmp)
    except OSError:
        shutil.copy2(src, tmp)
    os.replace(tmp, dst)


def _dataset(kind: str, ann: Path, prefix_key: str, prefix: str, **extra: object) -> str:
    """A config dict as Python source: dict(type=..., ann_file=..., data_prefix=dict(...), ...)."""
    more = "".join(f", {k}={v!r}" for k, v in extra.items())
    return f"dict(type={kind!r}, ann_file={str(ann)!r}, data_prefix=dict({prefix_key}={prefix!r}){more})"


def export(sel: Selection, out: Path, absolute: bool = False, prefix: str | None = None) -> Summary:
    """Lists per split (`<split>_list_videos.txt`, `<split>_list_rawframes[_<ext>].txt`), label_map.txt and
    mmaction2_data.py (data_root, num_classes, one dataset dict per list) under out."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    stem = f"{prefix}_" if prefix else ""
    summary = Summary("mmaction2", out, sel.root, sel.names, skipped=sel.skipped)
    frames = out / FRAME_DIR
    configs: dict[str, list[str]] = {}
    rows = sel.rows
    videos, images = rows[rows["media"] == "video"], rows[rows["media"] == "image"]
    for split, ann in lists.write_lists(_entries(videos, sel.root, absolute), videos["label_id"], videos["split"],
                                        out, f"{stem}{{split}}_list_videos.txt").items():
        summary.files.setdefault(split, []).append(ann)
        configs.setdefault(split, []).append(
            _dataset("VideoDataset", ann, "video", "" if absolute else str(sel.root)))
    for ext, grp in images.groupby("ext", sort=True):
        dirs = grp["item_id"].map(frame_dir)
        for row, d in zip(grp.itertuples(index=False), dirs):
            place_frame(sel.root / row.path, frames / d / f"img_00001.{ext}")
        entries = dirs.map(lambda d: str(frames / d)) if absolute else dirs
        text = {split: lists.rawframe_text(entries[g.index], [1] * len(g), g["label_id"])
                for split, g in grp.groupby("split", sort=True)}
        tail = "" if ext == "jpg" else f"_{ext}"
        for split, body in text.items():
            ann = write_text(out / f"{stem}{split}_list_rawframes{tail}.txt", body)
            summary.files.setdefault(split, []).append(ann)
            configs.setdefault(split, []).append(_dataset(
                "RawframeDataset", ann, "img", "" if absolute else str(frames), filename_tmpl=f"img_{{:05}}.{ext}",
                start_index=1))
    for split, grp in rows.groupby("split", sort=True):
        summary.count(str(split), grp)
    label_map = write_text(out / "label_map.txt", lists.label_map_text(sel.names))
    config = write_text(out / "mmaction2_data.py", _config(sel, label_map, configs))
    summary.notes.append(f"data root (data_prefix video): {'absolute paths' if absolute else sel.root}")
    summary.notes += [f"{split}: {' + '.join(c)}" for split, c in sorted(configs.items())]
    summary.notes.append(f"config fragment: {config} (num_classes={len(sel.names)}, label map {label_map}); "
                         "several lists of one split: ConcatDataset(datasets=[...])")
    return summary


def _entries(videos: pd.DataFrame, root: Path, absolute: bool) -> pd.Series:
    return videos["path"].map(lambda p: str(root / p)) if absolute else videos["path"]


def _config(sel: Selection, label_map: Path, configs: dict[str, list[str]]) -> str:
    """mmaction2_data.py: what a config needs to train on the lists (import it with `_base_` or copy it)."""
    body = "".join(f"    {split!r}: [\n" + "".join(f"        {c},\n" for c in cs) + "    ],\n"
                   for split, cs in sorted(configs.items()))
    return (f"# MMAction2 datasets written by `curate export --to mmaction2` from {sel.manifest}.\n"
            f"# Add a pipeline to each dict; several dicts of one split: dict(type='ConcatDataset', datasets=[...]).\n"
            f"data_root = {str(sel.root)!r}\nlabel_map = {str(label_map)!r}\nnum_classes = {len(sel.names)}\n"
            f"datasets = {{\n{body}}}\n")
