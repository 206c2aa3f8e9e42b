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
