"""`curate demo`'s steps: generate the world, check its web, probe the target, run the loop (curate/demo/loop.py)
with BMN + the detector beside it, print the tables and write report.html."""
from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pandas as pd
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from curate import media
from curate.core import manifest as mf
from curate.crawl.plan import hashtags
from curate.demo import locdet
from curate.demo.loop import run_loop
from curate.demo.page import gym_export, print_tables, report
from curate.demo.spec import LoopSpec
from curate.demo.synth import World, make_world
from curate.demo.synth.plan import WorldSpec
from curate.demo.synth.web import WebHandle, serve
from curate.demo.synth.world import fingerprint
from curate.experiments.runs import WorkerPool


def run_demo(out: Path, num_classes: int, seed: int, workers: int | None, spec: LoopSpec, full: bool,
             with_efficiency: bool, localize: bool, world_only: bool, con: Console) -> Path | None:
    """`curate demo`'s work: the world, its web checked, the probed target, the loop, the tables and report.html
    (its path; None with world_only). A ValueError names what was refused (another world in `out`)."""
    t0 = time.perf_counter()
    size = {"num_classes": 17, "train_per_class": 16, "val_per_class": 32, "test_per_class": 48} if full else {}
    num_classes = size.pop("num_classes", num_classes)
    same_world(out, WorldSpec(num_classes=num_classes, seed=seed, **size))
    world = _generate(out / "world", num_classes, seed, workers, con, **size)
    with serve(world.root) as web:
        found = _look_around(web, world)
        target = _probe(world)
        manifest = mf.write(target, out / "manifests" / "target.parquet",
                            {"data_root": str(world.root.resolve()), "world": json.dumps(world.counts["target"])})
        _summary(con, world, found, target, manifest, time.perf_counter() - t0)
        if world_only:
            return None
        result, locdet = _run(con, world, web.url, out, spec, with_efficiency, localize)
    if locdet is not None:
        _print_locdet(con, *locdet, out / "locdet")
        locdet = locdet[0]
    gym = gym_export(world, out / "finegym")
    print_tables(con, result, world, locdet, gym)
    path = report(out / "report.html", result, world, out, locdet, gym, time.perf_counter() - t0)
    con.print(f"[bold]report[/] {path}", soft_wrap=True, highlight=False)
    con.print(f"done in {time.perf_counter() - t0:.0f} s")
    return path


def _run(con: Console, world: World, web_url: str, out: Path, spec, with_efficiency: bool, localize: bool):
    """The loop's result and, with localize, (BMN + detector metrics, seconds): that work needs only the world, so
    it runs in a worker queued behind the teachers, on the core the shorter teacher leaves idle."""
    with Progress(TextColumn("[bold]{task.description}[/]"), BarColumn(), TimeElapsedColumn(), console=con,
                  transient=True) as bar, WorkerPool(spec.workers) as pool:
        side = pool.later(_locdet, world.root, out / "locdet") if localize else None
        task = bar.add_task("crawl", total=None)
        result = run_loop(world, web_url, out, spec, stage=lambda name: bar.update(task, description=name),
                          said=lambda line: con.print(f"  {line}", highlight=False), efficiency=with_efficiency,
                          pool=pool)
        bar.update(task, description="BMN + detector")
        return result, side.result() if side is not None else None


def _locdet(root: Path, out: Path) -> tuple[dict[str, dict[str, float]], float]:
    """Train and evaluate the tiny BMN and detector (in a worker): (metrics, seconds)."""
    t0 = time.perf_counter()
    return locdet.run(root, out), time.perf_counter() - t0


def _print_locdet(con: Console, m: dict[str, dict[str, float]], seconds: float, out: Path) -> None:
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
    con.print(f"trained beside the loop in {seconds:.1f} s")


LOOP_OUTPUTS = ("crawl", "dedup", "teachers", "students", "efficiency", "locdet")


def same_world(out: Path, spec: WorldSpec) -> None:
    """Refuse an OUT whose crawl and runs were made from another world: reused, they would mix with this one's."""
    meta = out / "world" / "world.json"
    if not meta.exists() or not any((out / d).exists() for d in LOOP_OUTPUTS):
        return
    old = json.loads(meta.read_text())
    if old.get("fingerprint") == fingerprint(spec):
        return
    try:
        was = WorldSpec(**old["spec"])
    except (KeyError, TypeError):      # written by a generator with other knobs
        was = None
    what = (f"seed {was.seed}, {was.num_classes} classes" if was is not None and was != spec else
            "another version of the world generator")
    raise ValueError(f"{out} holds the demo of another world ({what}); its crawl and training runs would mix "
                     f"with this one's: give another --out, or delete {out}")


def _generate(root: Path, num_classes: int, seed: int, workers: int | None, con: Console, **sizes) -> World:
    with Progress(TextColumn("[bold]world[/]"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=con, transient=True) as bar:
        task = bar.add_task("world", total=None)
        return make_world(root, num_classes=num_classes, seed=seed, workers=workers,
                          progress=lambda done, total: bar.update(task, completed=done, total=total), **sizes)


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
