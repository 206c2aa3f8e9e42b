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
from curate.synth.plan import WorldSpec
from curate.synth.world import fingerprint
from curate.synth.web import WebHandle, serve


DEFAULT_BUDGET_MIN = 11.0   # make demo's 15 minutes less a fresh install (venv, torch, ffmpeg: up to 4 minutes)


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for the world, the crawl, every run and report.html.")
@click.option("--classes", "num_classes", default=10, show_default=True, help="Classes in the demo world (2-17).")
@click.option("--seed", default=0, show_default=True, help="Seed of the world (same seed, same bytes).")
@click.option("--workers", type=int, default=None,
              help="Processes generating the world and training side by side (default: the cores, up to 4).")
@click.option("--seeds", type=int, default=3, show_default=True, help="Training seeds per student (Table 1 spread).")
@click.option("--rounds", type=click.IntRange(1, 9), default=2, show_default=True,
              help="Filter rounds: from round 2 on, the best students of the round before are the teachers "
                   "(each round adds a filter pass and one student per model and seed, about 130 s on 2 cores).")
@click.option("--teacher-epochs", type=int, default=None, help="Epochs of the two teachers (default 150; --full 300).")
@click.option("--cross-fit", default="3x1", show_default=True, metavar="FOLDSxSPLITS|none",
              help="Round 1's image teacher: TSNs trained on the target plus the crawl's own images (their crawl "
                   "labels), one per fold of SPLITS random FOLDS-fold splits, each scoring only the images it left "
                   "out (trained 3/5 of --teacher-epochs); none: the target-only teachers, as OmniSource did.")
@click.option("--student-epochs", type=int, default=None,
              help="Epochs of every student, efficiency runs included (default 60 and 40; --full 100).")
@click.option("--web-images", type=click.Choice(["2d", "all", "none"]), default="2d", show_default=True,
              help="Which students train on the web images (as still pseudo-videos): 2d = the frame models (TSN) "
                   "only, the others take the web videos; all = every student pools images and videos.")
@click.option("--budget-min", type=click.FloatRange(min=0), default=None,
              help="Minutes the demo may take (default 11: make demo's 15 less a fresh install; 0: no limit; off "
                   "with --student-epochs or --full). The teachers' speed on this machine predicts the rest: on a "
                   "slow one the efficiency curves are skipped first, then the students train fewer epochs (not "
                   "under 20), and the report says so.")
@click.option("--localize/--no-localize", default=True, show_default=True,
              help="Train and evaluate a tiny BMN (temporal proposals) and AVA-style detector on the world's long "
                   "videos and scenes, against their baselines (about a minute on 2 cores).")
@click.option("--efficiency/--no-efficiency", "with_efficiency", default=True, show_default=True,
              help="Data-efficiency curves: one student on growing fractions of the filtered web images and videos.")
@click.option("--world-only", is_flag=True, help="Stop after the world, the web check and the probed target manifest.")
@click.option("--full", is_flag=True,
              help="A bigger world (17 classes, twice the clips) and every recognition family member as a student, "
                   "with longer schedules: meant for a GPU.")
@click.option("--students", default="", metavar="NAMES",
              help="More students next to TSN and SlowOnly, comma-separated bundled configs (e.g. "
                   "i3d_r50,r2plus1d_r34: their temporal-order pair accuracy lands in the tables); --full takes all.")
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda when present).")
def demo(out: Path, num_classes: int, seed: int, workers: int | None, seeds: int, rounds: int,
         teacher_epochs: int | None, cross_fit: str, student_epochs: int | None, web_images: str,
         budget_min: float | None,
         localize: bool, with_efficiency: bool, world_only: bool, full: bool, students: str, device: str | None
         ) -> None:
    """Run the OmniSource loop on the embedded demo world and write OUT/report.html.

    \b
    1. generate the world under OUT/world (target clips with a small train split, a noisy web corpus, the truth)
    2. serve its web on 127.0.0.1, check it and probe the target into OUT/manifests/target.parquet
    3. crawl it with recipes/demo.yaml (search images, hashtag images and videos, untrimmed videos)
    4. dedup the crawl against val/test; train a TSN (image) and a SlowOnly (video) teacher on the train split,
       and cross-fitted TSNs on the train split plus the crawl's images (--cross-fit)
    5. filter the crawl with the teachers (untrimmed videos cut into the clips they believe)
    6. students with and without the (un)filtered web data, over --seeds seeds; test top-1 (Table 1)
    7. the best students become the teachers of round 2 (and so on, --rounds): re-filter, train students again
    8. efficiency curves, the world's hierarchy in FineGym format, report.html (BMN + detector: in a worker beside 4-7)
    A rerun reuses every finished step (students of other epochs train beside the old ones); an OUT whose
    crawl and runs came from another world (seed, --classes, --full) is refused. With the defaults:
    627 s on a 2-core Intel Xeon; a 2-core AMD EPYC trains at half that speed and fits the budget (--budget-min)
    with fewer student epochs, the 2D students' first.
    """
    con = Console()
    t0 = time.perf_counter()
    # bad options fail before any work
    spec = _spec(full, seeds, teacher_epochs, student_epochs, workers, device, students, rounds, budget_min,
                 web_images, cross_fit)
    size = {"num_classes": 17, "train_per_class": 16, "val_per_class": 32, "test_per_class": 48} if full else {}
    try:
        num_classes = size.pop("num_classes", num_classes)
        _same_world(out, WorldSpec(num_classes=num_classes, seed=seed, **size))
        world = _generate(out / "world", num_classes, seed, workers, con, **size)
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
    with serve(world.root) as web:
        found = _look_around(web, world)
        target = _probe(world)
        manifest = mf.write(target, out / "manifests" / "target.parquet",
                            {"data_root": str(world.root.resolve()), "world": json.dumps(world.counts["target"])})
        _summary(con, world, found, target, manifest, time.perf_counter() - t0)
        if world_only:
            return
        result, locdet = _run(con, world, web.url, out, spec, with_efficiency, localize)
    if locdet is not None:
        _print_locdet(con, *locdet, out / "locdet")
        locdet = locdet[0]
    from curate.demo_report import gym_export, print_tables, report

    gym = gym_export(world, out / "finegym")
    print_tables(con, result, world, locdet, gym)
    path = report(out / "report.html", result, world, out, locdet, gym, time.perf_counter() - t0)
    con.print(f"[bold]report[/] {path}", soft_wrap=True, highlight=False)
    con.print(f"done in {time.perf_counter() - t0:.0f} s")


def _cross_fit(text: str) -> tuple[int, int] | None:
    """'2x3' -> (2 folds, 3 splits); 'none' -> None."""
    if text.strip().lower() == "none":
        return None
    folds, x, splits = text.lower().partition("x")
    if not (x and folds.strip().isdigit() and splits.strip().isdigit()) or int(folds) < 2 or int(splits) < 1:
        raise click.BadParameter(f"{text!r} is not FOLDSxSPLITS with FOLDS >= 2 and SPLITS >= 1 (e.g. 2x3), or none",
                                 param_hint="--cross-fit")
    return int(folds), int(splits)


def _spec(full: bool, seeds: int, teacher_epochs: int | None, student_epochs: int | None, workers: int | None,
          device: str | None, students: str = "", rounds: int = 2, budget_min: float | None = None,
          web_images: str = "2d", cross_fit: str = "3x1"):
    from curate.loop import LoopSpec, family

    if seeds < 1:
        raise click.BadParameter("give at least one seed", param_hint="--seeds")
    knobs = {"seeds": tuple(range(seeds)), "device": device, "rounds": rounds, "web_images": web_images,
             "cross_fit": _cross_fit(cross_fit)}
    extra = [m.strip() for m in students.split(",") if m.strip()]
    unknown = sorted(set(extra) - set(family()))
    if unknown:
        raise click.BadParameter(f"{unknown} are not bundled recognition configs; choose from {list(family())}",
                                 param_hint="--students")
    if extra:
        knobs["models"] = tuple(dict.fromkeys([*LoopSpec().models, *extra]))
    if full:
        knobs.update(models=family(), teacher_epochs=300, student_epochs=100, efficiency_epochs=100)
    if teacher_epochs is not None:
        knobs["teacher_epochs"] = teacher_epochs
    if "teacher_epochs" in knobs:
        knobs["cross_fit_epochs"] = max(1, knobs["teacher_epochs"] * 3 // 5)
    if student_epochs is not None:
        knobs["student_epochs"] = knobs["efficiency_epochs"] = student_epochs
    if workers is not None:
        knobs["workers"] = workers
    if budget_min is None:
        budget_min = 0 if full or student_epochs is not None else DEFAULT_BUDGET_MIN
    knobs["budget_s"] = budget_min * 60 if budget_min > 0 else None
    return LoopSpec(**knobs)


def _run(con: Console, world: World, web_url: str, out: Path, spec, with_efficiency: bool, localize: bool):
    """The loop's result and, with localize, (BMN + detector metrics, seconds): that work needs only the world, so
    it runs in a worker queued behind the teachers, on the core the shorter teacher leaves idle."""
    from curate.loop import run_loop
    from curate.runs import WorkerPool

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
    from curate.locdet import run

    t0 = time.perf_counter()
    return run(root, out), time.perf_counter() - t0


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


def _same_world(out: Path, spec: WorldSpec) -> None:
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
    raise click.ClickException(f"{out} holds the demo of another world ({what}); its crawl and training runs would mix "
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
