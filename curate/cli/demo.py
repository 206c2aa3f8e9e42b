"""`curate demo`: the main job on the embedded demo world, end to end, with a summary of where everything went."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import click
import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from curate import manifest as mf
from curate import media
from curate.synth import World, make_world
from curate.synth.classes import hashtags
from curate.synth.web import WebHandle, serve


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for the world, the manifests and the report.")
@click.option("--classes", "num_classes", default=10, show_default=True, help="Classes in the demo world (2-17).")
@click.option("--seed", default=0, show_default=True, help="Seed of the world (same seed, same bytes).")
@click.option("--workers", type=int, default=None, help="Processes generating the world (default: up to 4).")
@click.option("--localize", is_flag=True,
              help="Also train and evaluate a tiny BMN (temporal proposals) and a tiny AVA-style detector on the "
                   "world's long videos and scenes, against their baselines (about a minute on 2 cores).")
def demo(out: Path, num_classes: int, seed: int, workers: int | None, localize: bool) -> None:
    """Run the curation loop on the embedded demo world and say where its outputs went.

    \b
    1. generate the world under OUT/world (target clips, web corpus, ground truth; reused when present)
    2. serve its web on 127.0.0.1 and check what a crawler finds there (search, feeds, watch pages, CSV)
    3. probe every target clip (curate.media.probe) into OUT/manifests/target.parquet
    4. with --localize: BMN and a detector under OUT/locdet (curate.locdet.run)
    Read the result with `curate info OUT/manifests/target.parquet`.
    """
    con = Console()
    t0 = time.perf_counter()
    try:
        world = _generate(out / "world", num_classes, seed, workers, con)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    with serve(world.root) as web:
        found = _look_around(web, world)
    target = _probe(world)
    manifest = mf.write(target, out / "manifests" / "target.parquet",
                        {"data_root": str(world.root.resolve()), "world": json.dumps(world.counts["target"])})
    _summary(con, world, found, target, manifest, time.perf_counter() - t0)
    if localize:
        _locdet(con, world, out / "locdet")


def _locdet(con: Console, world: World, out: Path) -> None:
    from curate.locdet import run

    t0 = time.perf_counter()
    with con.status("training and evaluating tiny BMN and a tiny detector"):
        m = run(world.root, out)
    b, d = m["bmn"], m["detector"]
    t = Table(title="localization and detection (validation)", title_justify="left")
    for col in ("task", "model", "baseline", "more"):
        t.add_column(col)
    t.add_row("temporal proposals", f"BMN AUC {b['auc']:.1f}", f"evenly spaced fixed length {b['baseline_auc']:.1f}",
              f"AR@1 {b['AR@1']:.1f}, AR@100 {b['AR@100']:.1f}, mAP {b['average_map']:.1f} ({b['videos']} videos)")
    t.add_row("AVA-style detection", f"frame-mAP@0.5 {d['frame_map']:.1f}",
              f"class prior {d['baseline_frame_map']:.1f}", f"{d['keyframes']} keyframes")
    con.print(t)
    con.print(f"  {'outputs':<17} {out}", soft_wrap=True, highlight=False)
    con.print(f"done in {time.perf_counter() - t0:.1f} s")


def _generate(root: Path, num_classes: int, seed: int, workers: int | None, con: Console) -> World:
    with Progress(TextColumn("[bold]world[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con, transient=True) as bar:
        task = bar.add_task("world", total=None)
        return make_world(root, num_classes=num_classes, seed=seed, workers=workers,
                          progress=lambda done, total: bar.update(task, completed=done, total=total))


def _get(url: str) -> bytes:
    with urllib.request.urlopen(url, timeout=10) as r:  # noqa: S310 - loopback URL we built
        return r.read()


def _look_around(web: WebHandle, world: World) -> dict[str, int]:
    """What a crawler finds on the web with the class names as queries and hashtags."""
    found = {"search images": 0, "search videos": 0, "feed images": 0, "feed videos": 0}
    for name in world.classes:
        q = urllib.parse.quote(name)
        for media_type in ("image", "video"):
            found[f"search {media_type}s"] += json.loads(_get(f"{web.url}/search?q={q}&type={media_type}"))["total"]
            for tag in hashtags(name):
                found[f"feed {media_type}s"] += json.loads(_get(f"{web.url}/tags/{tag}?type={media_type}"))["total"]
    csv = _get(f"{web.url}/datasets/target.csv").decode().splitlines()[1:]
    found["CSV rows"] = len(csv)
    found["watch pages up"] = sum(_watch_ok(web, line.split(",")[1]) for line in csv)
    found["requests served"] = web.stats()["total_requests"]
    return found


def _watch_ok(web: WebHandle, vid: str) -> bool:
    try:
        return b"<video" in _get(f"{web.url}/watch?v={vid}")
    except urllib.error.HTTPError:
        return False


def _probe(world: World) -> pd.DataFrame:
    """The target manifest with every clip probed from its file; unreadable clips become failed rows."""
    df = mf.read(world.target_manifest)
    rows = []
    for row in df.to_dict("records"):
        try:
            p = media.probe(world.root / row["path"])
            row.update(width=p.width, height=p.height, fps=p.fps, frames=p.frames, duration_s=p.duration_s,
                       codec=p.codec, bytes=p.bytes, status="ok", error=None)
        except media.MediaError as exc:
            row.update(status="failed", error=f"{exc.code}: {exc}")
        rows.append(row)
    return mf.from_records(rows)


def _summary(con: Console, world: World, found: dict[str, int], target: pd.DataFrame, manifest: Path,
             seconds: float) -> None:
    c = world.counts
    t = Table(title=f"demo world: {len(world.classes)} classes, seed {world.spec.seed}", title_justify="left",
              show_header=False, show_edge=False)
    t.add_row("target clips", ", ".join(f"{k} {v}" for k, v in c["target"].items()))
    t.add_row("web corpus", ", ".join(f"{k} {v}" for k, v in c["web"].items()))
    t.add_row("planted", f"{c['web_noisy']} mislabelled, {c['web_copies']} near-copies of val/test, "
                         f"{c['web_broken']} broken files, {c['web_gone']} removed videos")
    t.add_row("ground truth", f"{sum(c['actions'].values())} timed actions, {c['events']} events, {c['boxes']} boxes")
    t.add_row("found on the web", ", ".join(f"{k} {v}" for k, v in found.items()))
    status = target["status"].value_counts().to_dict()
    t.add_row("probed target", ", ".join(f"{k} {v}" for k, v in status.items()))
    con.print(t)
    con.print("[bold]outputs[/]")
    for key, value in (("world", world.root), ("target manifest", manifest), ("web corpus truth", world.truth_web),
                       ("serve the web", f"curate serve-web {world.root}"), ("inspect", f"curate info {manifest}")):
        con.print(f"  {key:<17} {value}", soft_wrap=True, highlight=False)  # whole paths, never cut
    con.print(f"done in {seconds:.1f} s")
