"""`curate crawl RECIPE`: fetch a recipe's target and web sources into a probed Parquet manifest; `curate recipes`
lists the recipes that ship with curate."""
from __future__ import annotations

import click

from curate.cli.executor import executor_options, executor_summary


@click.command("crawl")
@click.argument("recipe")
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
@click.option("--set", "sets", multiple=True, metavar="KEY.PATH=VALUE",
              help="Any recipe value, e.g. --set download.rate_per_host=1 --set target.csv=[k400/test.csv]. "
                   "Repeatable.")
@click.option("--feedback", "feedback_path", type=click.Path(exists=True), default=None,
              metavar="FILTERED.parquet",
              help="Share the recipe's budget (budget:, else its searching sources' per_class x classes) over source "
                   "x class x query by the keep rate `curate filter` measured on an earlier crawl; the shares go to "
                   "<manifest>.quotas.csv.")
@click.option("--efficiency", "efficiency_path", type=click.Path(exists=True, dir_okay=False), default=None,
              metavar="EFFICIENCY.parquet",
              help="With --feedback: weigh each media by the top-1 one item of it bought (`curate efficiency`'s "
                   "table, sources named images / videos).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@executor_options(workers=False, shard_size=64)
def crawl(recipe: str, dry_run: bool, limit: int | None, workers: int | None, classes: str | None,
          retry_failed: bool, manifest_path: str | None, data_root: str | None, sets: tuple[str, ...],
          feedback_path: str | None, efficiency_path: str | None, quiet: bool,
          executor: str, address: str | None, shard_size: int) -> None:
    """Crawl RECIPE: target CSV segments, image/video search, hashtag feeds and URL lists into a manifest.

    \b
    RECIPE is a recipe file (its relative paths are read next to it), the name of a
    recipe that ships with curate (`curate recipes`; its relative paths are read
    from the current folder), or a manifest (.parquet) whose planned rows are
    fetched in place (e.g. the source videos of `curate gym crawl`):
      curate crawl kinetics400 --dry-run
      curate crawl recipes/kinetics.yaml --classes abseiling,archery
      curate crawl gym/sources.parquet --set download.workers=4
      curate crawl recipes/demo.yaml --feedback web.filtered.parquet --set budget=400

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
    import pandas as pd
    from rich.console import Console

    from curate.cli.crawl_view import Progressor, print_plan, print_quotas, print_summary
    from curate.core.executor import ExecutorError
    from curate.core.manifest import ManifestError
    from curate.core.manifest import read as read_manifest
    from curate.crawl.crawler import crawl as run_crawl
    from curate.crawl.extractors import dead_extractors
    from curate.crawl.recipe import OutputSpec, RecipeError, find_recipe, load_recipe, manifest_recipe, parse_sets
    from curate.experiments.efficiency import item_values

    console = Console(stderr=False)
    try:
        overrides = parse_sets(sets)
        if recipe.endswith(".parquet"):
            r = manifest_recipe(recipe, overrides)
        else:
            path, base = find_recipe(recipe)
            r = load_recipe(path, overrides, base)
            if base is not None:
                console.print(f"recipe {r.name} ({path}), relative paths read from {base}", highlight=False, soft_wrap=True)
        if manifest_path or data_root:
            r.output = OutputSpec(manifest_path or r.output.manifest, data_root or r.output.data_root)
        for warning in dead_extractors(r):
            console.print(f"[yellow]warning:[/] {warning}", highlight=False, soft_wrap=True)
        wanted = [c.strip() for c in classes.split(",")] if classes else None
        feedback = read_manifest(feedback_path) if feedback_path else None
        values = item_values(pd.read_parquet(efficiency_path)) if efficiency_path else None
        if dry_run:
            res = run_crawl(r, classes=wanted, dry_run=True, feedback=feedback, values=values)
            print_plan(console, res)
            print_quotas(console, res.quotas)
            return
        with Progressor(console, disable=quiet) as prog:
            res = run_crawl(r, classes=wanted, limit=limit, workers=workers, retry_failed=retry_failed,
                            executor=executor, address=address, shard_size=shard_size, progress=prog.update,
                            feedback=feedback, values=values)
    except (RecipeError, ExecutorError, ManifestError) as exc:
        raise click.ClickException(str(exc)) from exc
    print_quotas(console, res.quotas)
    print_summary(console, res)
    if res.run is not None:
        executor_summary(console, res.run, f"{res.fetched} rows to fetch")
    if res.plan and res.plan.notes:
        for note in res.plan.notes:
            console.print(f"[yellow]note:[/] {note}", highlight=False, soft_wrap=True)


@click.command("recipes")
def recipes() -> None:
    """List the crawl recipes that ship with curate: name, classes, target and web sources.

    \b
    Run one by name from any folder (its relative paths, such as the Kinetics CSVs and
    the output manifest, are read from there):  curate crawl kinetics400 --dry-run
    """
    from rich.console import Console

    from curate.crawl.recipe import RecipeError, bundled_recipes, load_recipe

    con = Console()
    seen = set()
    for name, path in bundled_recipes().items():
        if path in seen:
            continue
        seen.add(path)
        con.print(f"[bold]{name}[/] ({path.name})", highlight=False)
        try:
            r = load_recipe(path)
        except RecipeError as exc:
            con.print(f"  [red]{exc}[/]", highlight=False, soft_wrap=True)
            continue
        lines = {"classes": f"{len(r.class_names())}" + (f" ({r.classes_file})" if r.classes_file else ""),
                 "target": ", ".join(r.target.csv) if r.target else "-",
                 "sources": ", ".join(f"{s.name} ({s.kind}{'/' + s.provider if s.provider else ''})"
                                      for s in r.sources) or "-",
                 "output": f"{r.output.manifest}, media under {r.output.data_root}"}
        for key, value in lines.items():
            con.print(f"  {key:<8} {value}", highlight=False, soft_wrap=True)
