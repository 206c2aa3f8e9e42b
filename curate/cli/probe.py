"""`curate probe`: measure every fetched file of a manifest (curate/crawl/probe.py), here or on a Ray cluster."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from curate.cli.executor import executor_options, executor_summary


@click.command()
@click.argument("manifest_path", metavar="MANIFEST", type=click.Path(exists=True, path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Where the probed manifest goes (default: MANIFEST, updated in place).")
@click.option("--data-root", type=click.Path(file_okay=False, path_type=Path), default=None,
              help="Folder the manifest's paths are relative to (default: its data_root metadata, else found "
                   "next to the manifest).")
@executor_options
def probe(manifest_path: Path, out: Path | None, data_root: Path | None, executor: str, address: str | None,
          shard_size: int, workers: int) -> None:
    """Probe every fetched, not yet probed row of MANIFEST: size, fps, frame count, duration and codec from the
    file itself; unreadable files become failed rows with the media error code.

    \b
    Each shard of rows is committed to the output manifest as it finishes, so an interrupted run loses only the
    shards in flight and a rerun probes only what is left. Examples:
      curate probe crawl.parquet
      curate probe crawl.parquet --executor ray --address ray://head:10001 --shard-size 256
    """
    from curate.core import manifest as mf
    from curate.core.executor import ExecutorError
    from curate.crawl.probe import probe_manifest
    from trainers.config import ConfigError

    con = Console()
    try:
        with Progress(TextColumn("[bold]probe"), BarColumn(), MofNCompleteColumn(), TextColumn("shards"),
                      TimeElapsedColumn(), console=con, transient=True) as bar:
            task = bar.add_task("probe", total=None)
            r = probe_manifest(manifest_path, out, data_root, executor, address, shard_size, workers,
                               progress=lambda done, total: bar.update(task, completed=done, total=total))
    except (ExecutorError, ConfigError, mf.ManifestError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc
    executor_summary(con, r.run, f"{r.todo} rows to probe")
    con.print(mf.dumps_summary(r.manifest))
    con.print(f"manifest: {out or manifest_path}")
    if r.run.failed:
        raise SystemExit(1)
