"""`curate gym ...`: FineGym-style hierarchical annotations (import, validate, build, export, crawl, trim)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.console import Console
from rich.table import Table

if TYPE_CHECKING:
    from curate.formats import finegym as fg


_ANN = click.argument("annotation", type=click.Path(exists=True, dir_okay=False))
_CATS = click.argument("categories", type=click.Path(exists=True, file_okay=False), required=False)
_SPLITS = click.option("--splits", type=click.Path(exists=True, file_okay=False), default=None,
                       help="Folder of split files <subset>_<train|val>_element[_vX.Y].txt (default: CATEGORIES, "
                            "or the official v1.0/v1.1 files that ship with curate).")
_STRICT = click.option("--strict", is_flag=True,
                       help="Keys whose truncated seconds disagree with their timestamps are errors, not warnings.")
_VERSION = click.option("--version", "version", default=None,
                        help="Train split version to read (v1.0, v1.1); default: the newest present.")
_SOURCE = click.option("--source", default="youtube", show_default=True,
                       help="Manifest `source` of the videos (youtube: `url` is the watch page).")
_PRIMARY = click.option("--primary", default=None,
                        help="Subset whose split fills `split` (default: the smallest with split files, e.g. gym99).")


@click.group("gym")
def gym() -> None:
    """FineGym-style hierarchies: event (apparatus) -> set -> element, in FineGym's own file formats.

    \b
    import    annotation JSON + category/split files -> events.parquet, elements.parquet
    validate  list every problem of the files (exit 1 when there is one)
    build     hierarchy.json + timed segments (e.g. the demo world) -> the same FineGym files and manifests
    export    manifests -> FineGym files again, and MMAction2 lists `<clip>.mp4 <label>`
    crawl     plan the source videos into a manifest (`curate crawl` downloads them)
    trim      cut events from the source videos and elements from events (resumable)
    stats     per-level class counts, subsets, durations and media on disk, with a plot
    """


def show(events, elements, title: str, plot: Path | None = None) -> None:
    """Rich tables of gymstats.summary (and the plot, when asked)."""
    from curate.gym import stats as gymstats

    s = gymstats.summary(events, elements)
    con = Console()
    con.print(f"[bold]{title}[/]: {s['videos']} videos, {s['events']} events, {s['elements']} elements "
              f"(mean {s['element_s']['mean']:.2f} s, max {s['element_s']['max']:.2f} s); media on disk: "
              f"{s['on_disk']['events']} events, {s['on_disk']['elements']} elements")
    t = Table(title="per level (labelled elements)", title_justify="left", show_edge=False)
    for c in ("level", "classes", "instances", "min", "median", "max"):
        t.add_column(c, justify="left" if c == "level" else "right")
    for lv, d in s["levels"].items():
        t.add_row(lv, *(f"{d[k]:g}" for k in ("classes", "instances", "min", "median", "max")))
    con.print(t)
    t = Table(title="subsets", title_justify="left", show_edge=False)
    splits = sorted({k for d in s["subsets"].values() for k in d} - {"classes", "labelled"})
    for c in ("subset", "classes", "labelled", *splits):
        t.add_column(c, justify="left" if c == "subset" else "right")
    for name, d in s["subsets"].items():
        t.add_row(name, str(d["classes"]), str(d["labelled"]), *(str(d.get(k, 0)) for k in splits))
    con.print(t)
    t = Table(title="per event", title_justify="left", show_edge=False)
    for c in ("event", "videos", "events", "annotated", "elements", "labelled"):
        t.add_column(c, justify="left" if c == "event" else "right")
    for name, d in s["per_event"].items():
        t.add_row(name, *(str(d[k]) for k in ("videos", "events", "annotated", "elements", "labelled")))
    con.print(t)
    if plot is not None and len(elements):
        con.print(f"plot: {gymstats.plot(elements, plot)}")


def _problems(problems: list[fg.Problem]) -> None:

    con = Console(stderr=True)
    for p in problems:
        con.print(f"[red]x[/] {p.where}: {p.message}", highlight=False, soft_wrap=True)
    con.print(f"[bold red]{len(problems)} problem(s)[/]")


def write_tables(events, elements, out: Path, meta: dict[str, str]) -> tuple[Path, Path]:
    """events.parquet and elements.parquet under out (atomic writes)."""
    from curate.core import manifest as mf

    return mf.write(events, out / "events.parquet", meta), mf.write(elements, out / "elements.parquet", meta)


def _load(folder: str):
    from curate.core import manifest as mf
    from curate.formats import finegym as fg
    from curate.gym import build as gymbuild

    try:
        return gymbuild.read_manifests(folder)
    except (fg.GymError, mf.ManifestError, FileNotFoundError) as exc:
        raise click.ClickException(str(exc)) from exc


@gym.command("import")
@_ANN
@_CATS
@_SPLITS
@_VERSION
@_SOURCE
@_PRIMARY
@_STRICT
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Folder for the two manifests.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write gym_stats.png next to them.")
def import_(annotation: str, categories: str | None, splits: str | None, version: str | None, source: str,
            primary: str | None, strict: bool, out: str, plot: bool) -> None:
    """Import FineGym's annotation JSON (e.g. finegym_annotation_info_v1.1.json) into two manifests.

    \b
    CATEGORIES (default: the official files that ship with curate) holds set_categories.txt,
    gym530/gym288/gym99_categories.txt (any of them), optionally event_categories.txt (`event: <id>;
    <name>`, default 1 VT, 2 FX, 3 BB, 4 UB), and split files <subset>_<train|val>_element[_vX.Y].txt
    (or give them with --splits; the shipped ones are v1.0 and v1.1, --version picks). Nothing is written when
    any file has a problem: every problem is listed with its file and line or JSON key path; keys whose
    truncated seconds disagree with their timestamps are counted as warnings (--strict: errors). Then:
      curate gym crawl OUT -o OUT/sources.parquet && curate crawl OUT/sources.parquet
      curate gym trim OUT --root data/ --sources OUT/sources.parquet
      curate train OUT/elements.parquet --subset gym99      # the Gym99 benchmark, official labels and splits
    """
    from curate.formats import finegym as fg

    warnings: list[fg.Problem] | None = None if strict else []
    try:
        events, elements, cats = fg.read_annotations(annotation, categories or fg.SHIPPED, version, source, primary,
                                                     warnings=warnings, splits=splits)
    except fg.GymError as exc:
        _problems(exc.problems)
        raise SystemExit(1) from exc
    if warnings:
        Console().print(f"[yellow]{len(warnings)} key(s) disagree with their timestamps[/] (the timestamps are "
                        f"used; --strict refuses them), e.g. {warnings[0]}", highlight=False)
    outp = Path(out)
    meta = {"dataset": "finegym", "annotation": str(annotation), "gym_categories": fg.categories_to_json(cats)}
    paths = write_tables(events, elements, outp, meta)
    show(events, elements, f"{annotation}", outp / "gym_stats.png" if plot else None)
    click.echo(f"wrote {paths[0]} and {paths[1]}")


@gym.command("validate")
@_ANN
@_CATS
@_SPLITS
@_VERSION
def validate(annotation: str, categories: str | None, splits: str | None, version: str | None) -> None:
    """Check FineGym files and list every problem: elements outside their event, overlapping elements, stage
    counts that do not match their timestamps, keys that do not match their times, labels missing from the
    category files, split lines naming unknown clips. Exit status 1 when there is any."""
    from curate.formats import finegym as fg

    problems: list[fg.Problem] = []
    events, elements, _ = fg.read_annotations(annotation, categories or fg.SHIPPED, version, problems=problems,
                                              splits=splits)
    if problems:
        _problems(problems)
        raise SystemExit(1)
    click.echo(f"ok: {len(events)} events, {len(elements)} elements, no problems")


@gym.command("stats")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--plot", "plot", type=click.Path(dir_okay=False), default=None,
              help="PNG of per-level class counts and element durations (default FOLDER/gym_stats.png).")
def stats(folder: str, plot: str | None) -> None:
    """Statistics of FOLDER/events.parquet and FOLDER/elements.parquet."""
    from curate.core import manifest as mf

    events, elements = mf.read(Path(folder) / "events.parquet"), mf.read(Path(folder) / "elements.parquet")
    show(events, elements, folder, Path(plot) if plot else Path(folder) / "gym_stats.png")


@gym.command("build")
@click.option("--world", type=click.Path(exists=True, file_okay=False),
              help="A demo world (curate.demo.synth): its hierarchy.json, truth/events.parquet and truth/actions.parquet.")
@click.option("--hierarchy", type=click.Path(exists=True, dir_okay=False),
              help='JSON {"events": [{id, name}], "sets": [{id, name, event_id}], '
                   '"elements": [{id, name, set_id, event_id}]}.')
@click.option("--events", "events_path", type=click.Path(exists=True, dir_okay=False),
              help="CSV/Parquet of event instances: video_id, start_s, end_s, event_id.")
@click.option("--segments", "segments_path", type=click.Path(exists=True, dir_okay=False),
              help="CSV/Parquet of timed elements: video_id, start_s, end_s, element_id (or label_id); optional "
                   "`instance` (rows sharing it are the stages of one element) and `split`.")
@click.option("--val-fraction", default=0.3, show_default=True, help="Share of videos put in val (video-disjoint).")
@click.option("--seed", default=0, show_default=True)
@click.option("--name", default=None, help="Name of the full element list (default gym<N>).")
@click.option("--min-count", type=int, default=None,
              help="Also write a subset of the elements with at least this many train instances (like Gym99).")
@click.option("--source", default=None, help="Manifest `source` (default synthetic for --world, else youtube).")
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False))
def build(world, hierarchy, events_path, segments_path, val_fraction, seed, name, min_count, source, out) -> None:
    """Build FineGym-format annotations for another sport or the demo world.

    \b
    Writes OUT/events.parquet and OUT/elements.parquet, OUT/finegym/ (annotation.json, event/set/element
    category files, <subset>_<split>_element.txt) which `curate gym import` and FineGym tools read, and
    OUT/mmaction/<subset>_<split>.txt lists. Segments in videos without any event are ignored (counted);
    a segment outside every event of its video is an error.
    """
    from curate.formats import finegym as fg
    from curate.gym import build as gymbuild

    if world:
        hierarchy = hierarchy or str(Path(world) / "hierarchy.json")
        events_path = events_path or str(Path(world) / "truth" / "events.parquet")
        segments_path = segments_path or str(Path(world) / "truth" / "actions.parquet")
    if not (hierarchy and events_path and segments_path):
        raise click.UsageError("give --world, or --hierarchy, --events and --segments")
    tree = json.loads(Path(hierarchy).read_text(encoding="utf-8"))
    try:
        events, elements, cats, ignored = gymbuild.build(
            tree, gymbuild.read_table(events_path), gymbuild.read_table(segments_path), val_fraction, seed, name,
            min_count, source or ("synthetic" if world else "youtube"))
    except fg.GymError as exc:
        _problems(exc.problems)
        raise SystemExit(1) from exc
    outp = Path(out)
    write_tables(events, elements, outp, {"dataset": "finegym-built", "gym_categories": fg.categories_to_json(cats)})
    files = gymbuild.write_files(events, elements, cats, outp / "finegym")
    lists = gymbuild.mmaction_lists(elements, outp / "mmaction")
    show(events, elements, f"built from {hierarchy}", outp / "gym_stats.png")
    click.echo(f"{ignored} segments in videos without events ignored; wrote {len(files)} FineGym files to "
               f"{outp / 'finegym'}, {len(lists)} MMAction2 lists to {outp / 'mmaction'}")


@gym.command("export")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False))
@click.option("--only-on-disk", is_flag=True, help="MMAction2 lists keep only elements whose clip is trimmed.")
def export(folder: str, out: str, only_on_disk: bool) -> None:
    """Write FOLDER's manifests back as FineGym files (OUT/finegym) and MMAction2 lists `<clip>.mp4 <label>`
    (OUT/mmaction/<subset>_<split>.txt, clips under gym/subactions of the data root)."""
    from curate.gym import build as gymbuild

    events, elements, cats = _load(folder)
    files = gymbuild.write_files(events, elements, cats, Path(out) / "finegym")
    lists = gymbuild.mmaction_lists(elements, Path(out) / "mmaction", only_on_disk)
    for p in lists:
        click.echo(f"{p}: {sum(1 for _ in open(p))} clips")
    click.echo(f"wrote {len(files)} FineGym files and {len(lists)} lists under {out}")


@gym.command("crawl")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--out", required=True, type=click.Path(), help="Sources manifest to add to.")
@click.option("--url-template", default="https://www.youtube.com/watch?v={id}", show_default=True)
@click.option("--whole-videos", is_flag=True,
              help="One row per source video (the whole broadcast) instead of one per event span.")
@click.option("--dry-run", is_flag=True, help="Only count what would be planned.")
def crawl(folder: str, out: str, url_template: str, whole_videos: bool, dry_run: bool) -> None:
    """Plan what FOLDER's events need from their source videos into the manifest OUT: one `planned` row per event
    span (only those seconds are downloaded), or per video with --whole-videos. Then fetch them with
    `curate crawl OUT` (the manifest is the plan; --set download.workers=N ...) and cut the clips with
    `curate gym trim FOLDER --root ROOT --sources OUT`. Rows already in OUT are left as they are."""
    from curate.core import manifest as mf
    from curate.gym import trim as gymtrim

    events = _load(folder)[0]
    planned = gymtrim.plan_sources(events, url_template, whole_videos)
    base = mf.read(out) if Path(out).exists() else mf.empty()
    new = planned[~planned["item_id"].isin(base["item_id"])]
    if not dry_run and len(new):
        mf.write(mf.upsert(base, new), out, mf.read_metadata(out) if Path(out).exists() else None)
    what = "source videos" if whole_videos else f"event spans of {planned['source_id'].nunique()} source videos"
    click.echo(f"{len(planned)} {what}, {len(new)} new{' (dry run, nothing written)' if dry_run else ''} -> {out}; "
               f"fetch them with: curate crawl {out}")


@gym.command("trim")
@click.argument("folder", type=click.Path(exists=True, file_okay=False))
@click.option("--root", required=True, type=click.Path(file_okay=False),
              help="Data root: clips go to ROOT/gym/events and ROOT/gym/subactions.")
@click.option("--videos", type=click.Path(exists=True, file_okay=False), help="Folder of <video id>.mp4 files.")
@click.option("--sources", type=click.Path(exists=True),
              help="Sources manifest crawled by `curate crawl` (ok rows, paths under --sources-root).")
@click.option("--sources-root", type=click.Path(exists=True, file_okay=False), default=None)
@click.option("--direct", is_flag=True, help="Cut elements straight from the source videos (no event clips).")
@click.option("--level", type=click.Choice(["both", "events", "elements"]), default="both", show_default=True)
def trim(folder, root, videos, sources, sources_root, direct, level) -> None:
    """Cut events from the source videos and elements from the event clips (or, --direct, from the sources),
    re-encoding so every cut is frame-exact. Resumable: clips already on disk are kept; the manifests in
    FOLDER are saved as it goes. Failures carry the media error codes (missing, trim_failed, ...)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from curate.core import manifest as mf
    from curate.gym import trim as gymtrim

    if not (videos or sources):
        raise click.UsageError("give --videos or --sources")
    events, elements, cats = _load(folder)
    meta = {**mf.read_metadata(Path(folder) / "elements.parquet"), "data_root": str(Path(root).resolve())}
    if sources:
        sources_root = sources_root or mf.read_metadata(sources).get("data_root")
    find = gymtrim.source_finder(videos, mf.read(sources) if sources else None, sources_root)
    outcomes: dict[str, dict[str, int]] = {}
    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn()) as bar:
        def run(kind: str, df, fn, *args):
            task = bar.add_task(kind, total=len(df))

            def on_item(_, outcome):
                outcomes.setdefault(kind, {}).setdefault(outcome, 0)
                outcomes[kind][outcome] += 1
                bar.advance(task)
            return fn(*args, on_item=on_item, save=lambda d: mf.write(d, Path(folder) / f"{kind}.parquet", meta))
        if level in ("both", "events") and not (direct and level == "both"):
            events = run("events", events, gymtrim.trim_events, events, root, find)
        if level in ("both", "elements"):
            elements = run("elements", elements, gymtrim.trim_elements, elements, events, root,
                           find if direct else None)
    t = Table(title="trim", title_justify="left", show_edge=False)
    for c in ("level", "outcome", "clips"):
        t.add_column(c)
    for kind, d in outcomes.items():
        for k, v in sorted(d.items()):
            t.add_row(kind, k, str(v))
    Console().print(t)
