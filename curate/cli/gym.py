"""`curate gym ...`: FineGym-style hierarchical annotations (import, validate, build, export, crawl, trim)."""
from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console
from rich.table import Table

from curate import finegym as fg
from curate import gymstats
from curate import manifest as mf

_ANN = click.argument("annotation", type=click.Path(exists=True, dir_okay=False))
_CATS = click.argument("categories", type=click.Path(exists=True, file_okay=False))
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
    return mf.write(events, out / "events.parquet", meta), mf.write(elements, out / "elements.parquet", meta)


@gym.command("import")
@_ANN
@_CATS
@_VERSION
@_SOURCE
@_PRIMARY
@click.option("-o", "--out", required=True, type=click.Path(file_okay=False), help="Folder for the two manifests.")
@click.option("--plot/--no-plot", default=True, show_default=True, help="Write gym_stats.png next to them.")
def import_(annotation: str, categories: str, version: str | None, source: str, primary: str | None, out: str,
            plot: bool) -> None:
    """Import FineGym's annotation JSON and the category/split files of CATEGORIES into two manifests.

    \b
    CATEGORIES holds set_categories.txt, gym530/gym288/gym99_categories.txt (any of them), optionally
    event_categories.txt (`event: <id>; <name>`, default 1 VT, 2 FX, 3 BB, 4 UB), and split files
    <subset>_<train|val>_element[_vX.Y].txt. Nothing is written when any file has a problem: every problem
    is listed with its file and line or JSON key path.
    """
    try:
        events, elements = fg.read_annotations(annotation, categories, version, source, primary)
    except fg.GymError as exc:
        _problems(exc.problems)
        raise SystemExit(1) from exc
    outp = Path(out)
    meta = {"dataset": "finegym", "annotation": str(annotation), "categories": str(categories)}
    paths = write_tables(events, elements, outp, meta)
    show(events, elements, f"{annotation}", outp / "gym_stats.png" if plot else None)
    click.echo(f"wrote {paths[0]} and {paths[1]}")


@gym.command("validate")
@_ANN
@_CATS
@_VERSION
def validate(annotation: str, categories: str, version: str | None) -> None:
    """Check FineGym files and list every problem: elements outside their event, overlapping elements, stage
    counts that do not match their timestamps, keys that do not match their times, labels missing from the
    category files, split lines naming unknown clips. Exit status 1 when there is any."""
    problems: list[fg.Problem] = []
    events, elements = fg.read_annotations(annotation, categories, version, problems=problems)
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
    events, elements = mf.read(Path(folder) / "events.parquet"), mf.read(Path(folder) / "elements.parquet")
    show(events, elements, folder, Path(plot) if plot else Path(folder) / "gym_stats.png")
