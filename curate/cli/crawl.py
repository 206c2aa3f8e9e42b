"""`curate crawl RECIPE`: fetch a recipe's target and web sources into a probed Parquet manifest."""
from __future__ import annotations

from pathlib import Path

import click

from curate.cli.executor import executor_options, executor_summary


@click.command("crawl")
@click.argument("recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--dry-run", is_flag=True, help="Plan without touching the network: print rows per source and class, "
              "write <manifest>.plan.parquet with the rows known offline.")
@click.option("--limit", type=int, default=None, help="Fetch at most this many rows in this run.")
@click.option("--workers", type=click.IntRange(min=1), default=None,
              help="Download threads, per Ray task with --executor ray, shared out over the processes with --executor "
                   "processes (default: the recipe's download.workers).")
@click.option("--classes", default=None, help="Comma-separated class names or label ids to crawl (default: all).")
@click.option("--retry-failed", is_flag=True, help="Also retry permanent failures (404, removed, not_media, ...).")
@click.option("--manifest", "manifest_path", default=None, help="Override output.manifest.")
@click.option("--data-root", default=None, help="Override output.data_root.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@executor_options(workers=False, shard_size=64)
def crawl(recipe: Path, dry_run: bool, limit: int | None, workers: int | None, classes: str | None,
          retry_failed: bool, manifest_path: str | None, data_root: str | None, quiet: bool, executor: str,
          address: str | None, shard_size: int) -> None:
    """Crawl RECIPE: target CSV segments, image/video search, hashtag feeds and URL lists into a manifest.

    \b
    Every row ends ok, failed (with a code such as http_404, http_429, timeout,
    not_media, too_big, opted_out, removed, sign_in; all are listed in
    manifests/README.md) or rejected (duplicate).
    Reruns resume: ok rows are skipped, transient failures retried, finished files
    never fetched again. Attempts go to <manifest>.attempts.jsonl, the closing
    summary to <manifest>.stats.json. Keys for keyed APIs come from the environment.
    With --executor ray, shards of rows are fetched on Ray workers (the data root
    and manifest folder must be storage every node shares) and committed here:
      curate crawl recipes/omnisource.yaml --executor ray --address auto
    With --executor processes, shards go to one process per CPU on this machine
    (for many small images, where one process is CPU-bound).
    """
    from rich.console import Console

    from curate.cli.crawl_view import Progressor, print_plan, print_summary
    from curate.core.executor import ExecutorError
    from curate.crawl.crawler import crawl as run_crawl
    from curate.crawl.recipe import OutputSpec, RecipeError, load_recipe

    console = Console(stderr=False)
    try:
        r = load_recipe(recipe)
        if manifest_path or data_root:
            r.output = OutputSpec(manifest_path or r.output.manifest, data_root or r.output.data_root)
        wanted = [c.strip() for c in classes.split(",")] if classes else None
        if dry_run:
            res = run_crawl(r, classes=wanted, dry_run=True)
            print_plan(console, res)
            return
        with Progressor(console, disable=quiet) as prog:
            res = run_crawl(r, classes=wanted, limit=limit, workers=workers, retry_failed=retry_failed,
                            executor=executor, address=address, shard_size=shard_size, progress=prog.update)
    except (RecipeError, ExecutorError) as exc:
        raise click.ClickException(str(exc)) from exc
    print_summary(console, res)
    if res.run is not None:
        executor_summary(console, res.run, f"{res.fetched} rows to fetch")
    if res.plan and res.plan.notes:
        for note in res.plan.notes:
            console.print(f"[yellow]note:[/] {note}")
