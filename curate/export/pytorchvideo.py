"""PyTorchVideo's CSV: the `<path> <label>` lines `LabeledVideoPaths.from_csv` reads (it splits each line once from
the right on whitespace, so a path may hold spaces), one file per split; paths relative to the data root (the
`video_path_prefix` of `labeled_video_dataset`) or absolute. PyTorchVideo decodes videos only: images are left out
(make them pseudo-videos first: `curate filter --pseudo-mp4 static`)."""
from __future__ import annotations

from pathlib import Path

from curate.core.files import write_text
from curate.export.common import Selection, Summary
from curate.formats import lists

SKIP_IMAGES = "image (PyTorchVideo reads videos)"


def export(sel: Selection, out: Path, absolute: bool = False, prefix: str | None = None) -> Summary:
    """`<split>.csv` per split and label_map.txt under out; images counted as skipped."""
    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    rows = sel.rows
    sel.skip(rows[rows["media"] != "video"], SKIP_IMAGES)
    videos = rows[rows["media"] == "video"]
    summary = Summary("pytorchvideo", out, sel.root, sel.names, skipped=sel.skipped)
    entries = videos["path"].map(lambda p: str(sel.root / p)) if absolute else videos["path"]
    stem = f"{prefix}_" if prefix else ""
    for split, path in lists.write_lists(entries, videos["label_id"], videos["split"], out, f"{stem}{{split}}.csv",
                                         spaces_ok=True).items():
        summary.files[split] = [path]
        summary.count(split, videos[videos["split"] == split])
    label_map = write_text(out / "label_map.txt", lists.label_map_text(sel.names))
    where = "" if absolute else f", video_path_prefix={str(sel.root)!r}"
    summary.notes += [f"{split}: pytorchvideo.data.labeled_video_dataset({str(files[0])!r}, "
                      f"make_clip_sampler('random', 2.0){where}, decode_audio=False)"
                      for split, files in sorted(summary.files.items())]
    summary.notes.append(f"class names: {label_map} (line i = label i)")
    return summary
