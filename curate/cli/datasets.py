"""`curate import DATASET ...`: public datasets' annotation files, as released, into manifests (curate/formats)."""
from __future__ import annotations

from pathlib import Path

import click

from curate.core.files import FileFormatError

VIDEOS = click.option("--videos", "video_root", type=click.Path(exists=True, file_okay=False, path_type=Path),
                      help="Folder holding the videos; rows whose file is there become 'ok', the others "
                           "'failed: missing'. Without it every row is 'planned'.")


@click.group("import")
def import_group() -> None:
    """Import a public dataset's official annotation files into manifests.

    \b
    Every command checks the files as released (a bad line or key is named with its file) and ends with
    a summary: rows by split, classes, missing video files.
    """


def _write(df, out: Path, meta: dict[str, str]) -> None:
    """Write the manifest and print its summary line."""
    from curate.core import manifest as mf

    mf.write(df, out, meta)
    s = mf.summary(df)
    counts = lambda d: ", ".join(f"{k} {v}" for k, v in d.items())  # noqa: E731
    classes = df["label"].nunique()
    click.echo(f"{out}: {s['rows']} rows (split {counts(s['split'])}), " + (f"{classes} classes, " if classes else "")
               + f"status {counts(s['status'])}, {s['error'].get('missing', 0)} video files missing")


def _fail(exc: Exception) -> click.ClickException:
    return click.ClickException(str(exc))


def _split_command(dataset: str, name: str, layout: str) -> None:
    @import_group.command(dataset, help=f"Import the official train/test split of {name} into a manifest.\n\n"
                                         f"SPLITS_DIR holds {layout}. Train on it with `curate train OUT --data-root "
                                         "VIDEOS`; `curate eval` reports top-1 on the test split.")
    @click.argument("splits_dir", type=click.Path(exists=True, file_okay=False))
    @VIDEOS
    @click.option("--split", default=1, show_default=True, type=click.IntRange(1, 3), help="Official split number.")
    @click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False, path_type=Path),
                  help="Manifest to write.")
    def command(splits_dir: str, video_root: Path | None, split: int, out: Path) -> None:
        from curate.formats.ucf_hmdb import READERS

        try:
            df = READERS[dataset](splits_dir, split=split, video_root=video_root)
        except FileFormatError as exc:
            raise _fail(exc) from exc
        click.echo(f"{dataset} split {split}:")
        _write(df, out, {"dataset": dataset, "split": str(split), "data_root": str(video_root or "")})


_split_command("ucf101", "UCF101", "classInd.txt, trainlist0N.txt and testlist0N.txt")
_split_command("hmdb51", "HMDB51", "<class>_test_splitN.txt files (1 = train, 2 = test, 0 = unused)")


@import_group.command("activitynet")
@click.argument("annotations", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@VIDEOS
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Folder for videos.parquet and segments.parquet.")
def activitynet(annotations: Path, video_root: Path | None, out: Path) -> None:
    """Import ActivityNet v1.3 (activity_net.v1-3.min.json) into OUT/videos.parquet and OUT/segments.parquet.

    \b
    videos.parquet: a row per video (source youtube, source_id = the JSON's video id, split train / val /
      test, duration_s, label when all its segments share one); --videos finds <id>.* or v_<id>.*.
    segments.parquet: a row per annotated segment (parent_id = its video's item_id, start_s / end_s).
    label_id: index of the label among the taxonomy's leaf names, sorted.
    Then, for BMN on the released JSON:
      curate probe OUT/videos.parquet
      curate features CHECKPOINT OUT/videos.parquet -o FEATS
      curate localize train-bmn FEATS ANNOTATIONS -o RUN
    """
    from curate.formats import activitynet as anet

    try:
        release = anet.read_release(annotations)
    except FileFormatError as exc:
        raise _fail(exc) from exc
    videos, segments = anet.to_manifests(release, video_root)
    meta = {"dataset": "activitynet", "version": release.version, "data_root": str(video_root or "")}
    _write(videos, out / "videos.parquet", meta)
    _write(segments, out / "segments.parquet", meta)
    found = sum(len(v.annotations) for v in release.database.values())
    click.echo(f"{len(release.classes())} classes in the taxonomy; {found} annotations, {found - len(segments)} "
               "empty or repeated ones left out")


@import_group.command("ava")
@click.argument("ava_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@VIDEOS
@click.option("-o", "--out", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder for videos.parquet (default: AVA_DIR, where `curate localize train-ava` looks for it).")
def ava(ava_dir: Path, video_root: Path | None, out: Path | None) -> None:
    """Check the AVA v2.2 files in AVA_DIR and list its movies in OUT/videos.parquet.

    \b
    AVA_DIR: ava_{train,val}_v2.2.csv, and when present ava_{train,val}_excluded_timestamps_v2.2.csv,
    ava_action_list_v2.2.pbtxt, ava_action_list_v2.2_for_activitynet_2019.pbtxt and the proposals
    ava_dense_proposals_{train,val}.FAIR.recall_93.9.pkl (read without running any code it names).
    --videos finds the movies as <id>.*. Then:
      curate probe AVA_DIR/videos.parquet
      curate localize train-ava AVA_DIR --data-root VIDEOS -o RUN
    """
    from curate.formats.ava import import_folder

    try:
        df, counts = import_folder(ava_dir, video_root)
    except (FileFormatError, FileNotFoundError) as exc:
        raise _fail(exc) from exc
    for split in ("train", "val"):
        click.echo(f"{split}: " + ", ".join(f"{v} {k}" for k, v in counts[split].items()))
    click.echo(f"action list: {counts['classes']} classes, {counts['evaluated']} evaluated")
    _write(df, (out or ava_dir) / "videos.parquet", {"dataset": "ava", "data_root": str(video_root or "")})


@import_group.command("sthv2")
@click.argument("annot_dir", type=click.Path(exists=True, file_okay=False, path_type=Path))
@VIDEOS
@click.option("--labels", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Labels file (default: ANNOT_DIR's something-something-v2-labels.json or labels.json, else the "
                   "bundled copy of the 174 classes).")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Manifest to write.")
def sthv2(annot_dir: Path, video_root: Path | None, labels: Path | None, out: Path) -> None:
    """Import Something-Something v2 (something-something-v2-{train,validation,test}.json) into a manifest.

    \b
    Rows: source local, path <id>.webm under --videos, label = the class text (the template without
    brackets), label_id = its id in the labels file, split train / val / test (no labels), and the
    entry's caption and placeholders.
    """
    from curate.formats.sthv2 import read_sthv2

    try:
        df = read_sthv2(annot_dir, video_root, labels)
    except FileFormatError as exc:
        raise _fail(exc) from exc
    _write(df, out, {"dataset": "sthv2", "data_root": str(video_root or "")})
