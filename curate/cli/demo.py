"""`curate demo`: the main job on the embedded demo world, end to end (curate/demo/main.py does the work)."""
from __future__ import annotations

from pathlib import Path

import click


@click.command()
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=Path("demo_out"), show_default=True,
              help="Folder for the world, the crawl, every run and report.html.")
@click.option("--classes", "num_classes", default=10, show_default=True, help="Classes in the demo world (2-17).")
@click.option("--seed", default=0, show_default=True, help="Seed of the world (same seed, same bytes).")
@click.option("--workers", type=int, default=None,
              help="Processes generating the world and training side by side (default: the cores, up to 4).")
@click.option("--seeds", type=int, default=None,
              help="Training seeds per student: Table 1's paired verdicts rest on this many pairs (default: 3, more "
                   "where the time budget allows, up to 8).")
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
@click.option("--relabel-students", is_flag=True,
              help="Also train the video student (SlowOnly) on round 1's kept rows plus the rows the relabel rule "
                   "keeps under their suggested label (Table 1's '+ relabels' cell; one more condition: 3 runs).")
@click.option("--device", default=None, help="cpu, cuda, ... (default: cuda when present).")
def demo(out: Path, num_classes: int, seed: int, workers: int | None, seeds: int | None, rounds: int,
         teacher_epochs: int | None, cross_fit: str, student_epochs: int | None, web_images: str,
         budget_min: float | None,
         localize: bool, with_efficiency: bool, world_only: bool, full: bool, students: str, relabel_students: bool,
         device: str | None) -> None:
    """Run the OmniSource loop on the embedded demo world and write OUT/report.html.

    \b
    1. generate the world under OUT/world (target clips with a small train split, a noisy web corpus, the truth)
    2. serve its web on 127.0.0.1, check it and probe the target into OUT/manifests/target.parquet
    3. crawl it with recipes/demo.yaml (search images, hashtag images and videos, untrimmed videos)
    4. dedup the crawl against val/test; train a TSN (image) and a SlowOnly (video) teacher on the train split,
       and cross-fitted TSNs on the train split plus the crawl's images (--cross-fit)
    5. filter the crawl with the teachers (untrimmed videos cut into shots, then into the clips they believe);
       round 1 also grades shots, label issues + relabels and a feedback crawl against the truth, and writes
       OUT/review.html
    6. students with and without the (un)filtered web data, over --seeds seeds; test top-1 (Table 1)
    7. the best students become the teachers of round 2 (and so on, --rounds): re-filter, train students again
    8. efficiency curves, the world's hierarchy in FineGym format, report.html (BMN + detector: in a worker beside 4-7)
    A rerun reuses every finished step (students of other epochs train beside the old ones); an OUT whose
    crawl and runs came from another world (seed, --classes, --full) is refused. With the defaults:
    627 s on a 2-core Intel Xeon; a 2-core AMD EPYC trains at half that speed and fits the budget (--budget-min)
    with fewer student epochs, the 2D students' first.
    """
    from rich.console import Console

    from curate.demo.main import run_demo
    from curate.demo.spec import loop_spec

    try:   # bad options fail before any work
        spec = loop_spec(full, seeds, teacher_epochs, student_epochs, workers, device, students, rounds, budget_min,
                         web_images, cross_fit, relabel_students)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    try:
        run_demo(out, num_classes, seed, workers, spec, full, with_efficiency, localize, world_only, Console())
    except ValueError as exc:
        raise click.ClickException(str(exc)) from exc
