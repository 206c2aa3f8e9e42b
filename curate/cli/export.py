"""`curate export MANIFEST --to FORMAT -o OUT`: usable rows as WebDataset shards, MMAction2 lists, PyTorchVideo CSVs
or Hugging Face Parquet (curate/export/)."""
from __future__ import annotations

import re
from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

FORMATS = ("webdataset", "mmaction2", "pytorchvideo", "hf")
_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "m": 1e6, "mb": 1e6, "g": 1e9, "gb": 1e9, "t": 1e12, "tb": 1e12,
          "kib": 2 ** 10, "mib": 2 ** 20, "gib": 2 ** 30, "tib": 2 ** 40}


class ByteSize(click.ParamType):
    """1e9, 500MB, 1.5GiB -> bytes."""

    name = "bytes"

    def convert(self, value, param, ctx):
        if isinstance(value, (int, float)):
            return float(value)
        m = re.fullmatch(r"\s*([0-9.]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", str(value))
        if not m or m.group(2).lower() not in _UNITS:
            self.fail(f"{value!r} is not a size such as 1e9, 500MB or 2GiB", param, ctx)
        size = float(m.group(1)) * _UNITS[m.group(2).lower()]
        if size <= 0:
            self.fail(f"{value!r} must be positive", param, ctx)
        return size


@click.command("export")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--to", "fmt", required=True, type=click.Choice(FORMATS), help="The format (see above).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder.")
@click.option("--split", "splits", multiple=True, help="Only this split (repeatable; default: every split).")
@click.option("--data-root", type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="Folder the manifest's paths are relative to (default: its data_root metadata, else the nearest "
                   "folder above the manifest holding its files).")
@click.option("--max-items", type=click.IntRange(min=1), default=None,
              help="webdataset / hf: items per shard at most.")
@click.option("--max-bytes", type=ByteSize(), default=None,
              help="webdataset / hf: bytes per shard at most, e.g. 1e9 or 500MB (tars: exact; Parquet: media bytes, "
                   "about); default 1e9 for tars, 5e8 for Parquet when --max-items is not given either.")
@click.option("--absolute", is_flag=True, help="mmaction2 / pytorchvideo: absolute paths in the lists (default: "
                                                "relative to the data root, which is printed as the data prefix).")
@click.option("--embed/--no-embed", default=True, show_default=True,
              help="hf: the media bytes inside the Parquet files, or only their absolute paths.")
@click.option("--subset", default=None,
              help="FineGym elements: labels and splits of this subset (gym99, gym288, ...: the <subset>_label / "
                   "<subset>_split columns and class names that `curate gym` stores).")
@click.option("--classes", default=None,
              help="Class names by label id: a file (one per line) or a list shipped with curate (kinetics400, ...); "
                   "default: the names the manifest's rows carry. Rows must agree with it.")
@click.option("--prefix", default=None, help="Name prefix of the files: <prefix>-<split>-NNNNNN.tar, "
                                             "<prefix>_<split>_list_videos.txt, <prefix>_<split>.csv (not hf).")
def export(manifest_path: Path, fmt: str, out: Path, splits: tuple[str, ...], data_root: Path | None,
           max_items: int | None, max_bytes: float | None, absolute: bool, embed: bool, subset: str | None,
           classes: str | None, prefix: str | None) -> None:
    """Export MANIFEST's usable rows (status ok, a label, the file on disk) for a training framework to load as is.

    \b
    webdataset    tar shards OUT/<split>-000000.tar ... of --max-items / --max-bytes, one set per split; each item
                  <item_id>.mp4|webm|jpg|png (the file as stored), <item_id>.json (label, label_id, split,
                  source, item_id, lineage: parent_id, url, query, teacher_score, dup_of, ...) and <item_id>.cls.
                  Resumable: rerunning keeps the shards already written whole.
                    curate export web.parquet --to webdataset -o shards --max-items 1000 --max-bytes 1e9
                    wds.WebDataset("shards/train-{000000..000009}.tar").decode("pil").to_tuple("mp4;jpg", "cls")
    mmaction2     OUT/<split>_list_videos.txt lines `<path> <label>` (VideoDataset, data_prefix = the data root),
                  images as OUT/<split>_list_rawframes.txt `<frame dir> 1 <label>` (RawframeDataset over one-frame
                  folders OUT/rawframes/..., hard links), label_map.txt and mmaction2_data.py (the dataset dicts).
                    curate export target.parquet --to mmaction2 -o lists
    pytorchvideo  OUT/<split>.csv lines `<path> <label>` for labeled_video_dataset(csv, sampler,
                  video_path_prefix=DATA_ROOT); videos only (images are counted as skipped), label_map.txt.
                    curate export target.parquet --to pytorchvideo -o csv
    hf            OUT/data/<split>-00000-of-0000N.parquet with label as a ClassLabel, image / video columns
                  (Image / Video features, the bytes embedded), lineage columns, and OUT/README.md (a dataset
                  card whose YAML maps the splits), so datasets.load_dataset("OUT") works.
                    curate export filtered.parquet --to hf -o hf_data --split train --split val

    FineGym elements: `curate export FOLDER/elements.parquet --to mmaction2 --subset gym99`. The summary
    counts items per split and media, bytes and files, and every row left out by split, media and reason.
    """
    from curate import export as ex
    from curate.core.manifest import ManifestError

    names = _classes(classes) if classes else None
    try:
        summary = ex.export(manifest_path, fmt, out, data_root, splits, subset, names, max_items, max_bytes,
                            absolute, embed, prefix)
    except (ex.ExportError, ManifestError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    show(summary)
    if not summary.items:
        raise click.ClickException("nothing exported: no usable rows (see the skipped rows above)")


def _classes(spec: str) -> list[str]:
    from curate.formats import CLASS_LISTS, class_list

    if spec in CLASS_LISTS:
        return class_list(spec)
    path = Path(spec)
    if not path.is_file():
        raise click.BadParameter(f"no file {spec} and no shipped list of that name ({', '.join(CLASS_LISTS)})",
                                 param_hint="--classes")
    return [ln.strip() for ln in path.read_text(encoding="utf-8").splitlines() if ln.strip()]


def show(summary) -> None:
    """The end-of-export tables: written per split and media, skipped rows by reason, how to load the result."""
    from curate.export.common import human_bytes

    con = Console()
    t = Table(title=f"{summary.format} -> {summary.out}", title_justify="left", show_edge=False)
    for c in ("split", "media", "items", "media bytes", "files", "file bytes"):
        t.add_column(c, justify="left" if c in ("split", "media") else "right")
    written = {s: sum(p.stat().st_size for p in files if p.exists()) for s, files in summary.files.items()}
    for split in sorted(summary.files):
        media = sorted(m for s, m in summary.items if s == split)
        for i, m in enumerate(media):
            first = i == 0
            t.add_row(split if first else "", m, str(summary.items[split, m]),
                      human_bytes(summary.media_bytes[split]) if first else "",
                      str(len(summary.files[split])) if first else "",
                      human_bytes(written[split]) if first else "")
    con.print(t)
    total = sum(summary.items.values())
    con.print(f"{total} items, {len(summary.names)} classes, {human_bytes(sum(summary.media_bytes.values()))} of "
              f"media, {sum(len(f) for f in summary.files.values())} files of {human_bytes(sum(written.values()))}"
              + (f" ({summary.reused} shards kept from an earlier run)" if summary.reused else "")
              + f"; data root: {summary.root}", highlight=False, soft_wrap=True)
    if summary.skipped:
        t = Table(title=f"skipped ({sum(summary.skipped.values())} rows)", title_justify="left", show_edge=False)
        for c in ("split", "media", "reason", "rows"):
            t.add_column(c, justify="right" if c == "rows" else "left")
        for (split, media, reason), n in sorted(summary.skipped.items()):
            t.add_row(split, media, reason, str(n))
        con.print(t)
    for note in summary.notes:
        con.print(note, highlight=False, soft_wrap=True)
