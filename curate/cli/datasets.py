"""`curate import DATASET SPLITS_DIR`: official split files of UCF101 / HMDB51 into a manifest."""
from __future__ import annotations

import click

from curate.formats.ucf_hmdb import READERS, SplitFileError


@click.command("import")
@click.argument("dataset", type=click.Choice(sorted(READERS)))
@click.argument("splits_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--videos", "video_root", type=click.Path(exists=True, file_okay=False),
              help="Folder holding <class>/<video>.avi; rows whose file is there become 'ok', others 'failed: missing'.")
@click.option("--split", default=1, show_default=True, type=click.IntRange(1, 3), help="Official split number.")
@click.option("-o", "--out", "out", required=True, type=click.Path(dir_okay=False), help="Manifest to write.")
def import_split(dataset: str, splits_dir: str, video_root: str | None, split: int, out: str) -> None:
    """Import the official train/test split of UCF101 or HMDB51 into a manifest.

    \b
    UCF101: SPLITS_DIR holds classInd.txt, trainlist0N.txt, testlist0N.txt.
    HMDB51: SPLITS_DIR holds <class>_test_splitN.txt (1 = train, 2 = test, 0 = unused).
    Train on it with `curate train OUT --data-root VIDEOS`; `curate eval` reports top-1 on the test split.
    """
    from curate.core import manifest as mf

    try:
        df = READERS[dataset](splits_dir, split=split, video_root=video_root)
    except SplitFileError as exc:
        raise click.ClickException(str(exc)) from exc
    mf.write(df, out, {"dataset": dataset, "split": str(split), "data_root": str(video_root or "")})
    s = mf.summary(df)
    click.echo(f"{dataset} split {split}: {s['rows']} videos, {len(s['label'])} classes, "
               f"splits {s['split']}, status {s['status']} -> {out}")
