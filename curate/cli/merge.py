"""`curate merge TARGET WEB... -o OMNI`: a target's splits plus the kept web rows, one manifest over several roots."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("merge")
@click.argument("target", type=click.Path(exists=True, path_type=Path))
@click.argument("web", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("-o", "--out", required=True, type=click.Path(path_type=Path),
              help="The merged manifest to write (e.g. manifests/omni.parquet).")
def merge_cmd(target: Path, web: tuple[Path, ...], out: Path) -> None:
    """Build the OmniSource manifest: TARGET's train/val/test rows as they are, plus every usable row of the WEB
    manifests (filtered and deduplicated crawls: status ok, with a file).

    \b
    A web row is refused (and counted) when its label is not a target class, its item id is already in the
    manifest, or its content equals a val/test item's. Rows keep their lineage and live on under their own data
    roots: the manifest names them (target, and each web manifest's stem), and a moved folder is re-pointed with
    `--data-root NAME=PATH` wherever a command reads media. Then train on it:
      curate merge world/manifests/target.parquet crawl/web.filtered.parquet -o manifests/omni.parquet
      curate train manifests/omni.parquet        # target = its train split, the web rows mixed in per source
    """
    from rich.console import Console
    from rich.table import Table

    from curate.clean.merge import merge, write_merged
    from curate.core.manifest import ManifestError, split_counts

    try:
        report = merge(target, web)
        write_merged(report, out, [target, *web])
    except (ManifestError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    con = Console()
    t = Table(title=f"merged into {out}", title_justify="left", show_edge=False)
    for col in ("from", "source", "media", "rows"):
        t.add_column(col, justify="right" if col == "rows" else "left")
    kept = report.rows[report.rows["split"].isin(["train", "val", "test"])]
    for (source, media), n in kept.groupby(["source", "media"]).size().items():
        t.add_row(target.name, source, media, str(n))
    for r in report.merged.itertuples():
        t.add_row(r.input, r.source, r.media, str(r.rows))
    con.print(t)
    for reason, n in report.refused.items():
        con.print(f"  refused {n} web rows: {reason}", highlight=False, soft_wrap=True)
    con.print("data roots: " + ", ".join(f"{k} = {v}" for k, v in report.roots.items()), highlight=False,
              soft_wrap=True)
    con.print(f"splits: {split_counts(report.rows)}; train on it: curate train {out}", highlight=False, soft_wrap=True)
