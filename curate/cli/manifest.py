"""`curate manifest compact|export`: a manifest folder (curate/core/store.py) as one Parquet file, for anyone."""
from __future__ import annotations

from pathlib import Path

import click

_MANIFEST = click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))


@click.group("manifest")
def manifest_group() -> None:
    """Manifests stored as folders of part files: compact them, or export one Parquet file.

    \b
    A stage that commits in batches (crawl, probe, filter) keeps its manifest as a folder: each
    commit adds a part file; the latest row of each item_id wins. Finished runs compact it.
    """


@manifest_group.command("compact")
@_MANIFEST
def compact(manifest_path: Path) -> None:
    """Merge MANIFEST's part files into one (same rows, same order); a single file is left as it is.

    \b
    Afterwards any Parquet reader sees the table exactly:
      pandas.read_parquet(MANIFEST), duckdb "SELECT * FROM 'MANIFEST/*.parquet'"
    """
    from curate.core import store

    if not store.is_folder(manifest_path):
        click.echo(f"{manifest_path}: a single file already")
        return
    before = len(store.parts(manifest_path))
    store.compact(manifest_path)
    click.echo(f"{manifest_path}: {before} part file(s) -> {len(store.parts(manifest_path))}")


@manifest_group.command("export")
@_MANIFEST
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The Parquet file to write (atomically).")
def export(manifest_path: Path, out: Path) -> None:
    """Write MANIFEST (a folder or a file) as one validated Parquet file with its metadata."""
    from curate.core import manifest as mf

    try:
        df = mf.read(manifest_path)
        mf.write(df, out, mf.read_metadata(manifest_path))
    except mf.ManifestError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{out}: {len(df)} rows")
