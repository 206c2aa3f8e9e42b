"""`curate review MANIFEST -o review.html`: a page to review a filter's decisions (curate/clean/review.py)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("review")
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The page (default: MANIFEST's name + .review.html).")
@click.option("--per-class", type=click.IntRange(1, 100), default=6, show_default=True,
              help="Items per class in each list (suspected label errors; nearest the keep threshold).")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), help="Folder the paths are relative to.")
def review(manifest_path: Path, out: Path | None, per_class: int, data_root: Path | None) -> None:
    """Write one self-contained HTML page to review a filtered MANIFEST by eye.

    \b
    Per class: the top suspected label errors (with `curate filter --label-issues`) and the
    items nearest the keep threshold (the lowest-scored kept, the highest-scored rejected),
    each with a preview (image, or an animated GIF of a video), its scores, the suggested
    label and its lineage (query, URL, parent video, earlier label). Choose keep / drop /
    relabel per item; the page downloads them as decisions.csv (item_id,decision,label):
      curate review web.filtered.parquet -o review.html
      curate filter web.filtered.parquet --decisions decisions.csv
    """
    from curate.clean.review import review_page
    from curate.core import manifest as mf

    out = out or manifest_path.with_name(manifest_path.name.removesuffix(".parquet") + ".review.html")
    try:
        df = mf.read(manifest_path)
        path = review_page(df, mf.find_data_root(manifest_path, df, data_root), out, per_class,
                           f"review of {manifest_path.name}")
    except (mf.ManifestError, FileNotFoundError, ValueError) as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"{path}")
