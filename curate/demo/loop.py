"""The OmniSource loop on the demo world: crawl -> teachers -> dedup + filter -> students -> the best students become
the next teachers -> re-filter -> students again. `curate demo` runs `run_loop`; it returns plain data the report
(curate/demo/tables.py, page.py) shows. Every stage is the real one (curate.crawl, curate.clean, trainers); this
module wires them together and grades them against the world's known truth (curate/demo/truth.py). Reruns reuse
finished work.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from curate.core import manifest as mf
from curate.crawl.recipe import RECIPE_DIR
from curate.demo.budget import fit_budget
from curate.demo.spec import LoopSpec
from curate.demo.synth import World
from curate.demo.truth import at_recall_line, dedup_quality, filter_quality, right_label
from curate.experiments.runs import RunJob, WorkerPool, run_config, run_jobs, tested_checkpoint
from trainers.config import is_2d
from trainers.sources import Source

RECIPE = RECIPE_DIR / "demo.yaml"
LOOPBACK = "http://127.0.0.1:8000"
TARGET_ONLY, UNFILTERED = "target only", "+ web, unfiltered"
RELABELLED = "+ web, filtered (round 1) + relabels"   # the video students' extra condition (--relabel-students)


CROSS_FIT_SUFFIX = "_f{}of{}_s{}"              # a cross-fit run folder: <model>_e<epochs>_f<fold>of<folds>_s<split>
CROSS_FIT_RUN = re.compile(r"_f\d+of\d+_s\d+$")   # ... and how the report recognises one


def filtered(round_: int) -> str:
    return f"+ web, filtered (round {round_})"


def demo_recipe(web_url: str, out: Path, classes: Sequence[str]) -> Path:
    """recipes/demo.yaml pointed at a running loopback web and writing under out/crawl; saved as out/crawl/recipe.yaml
    so `curate crawl` can rerun it. The target comes from the world itself, so the recipe's target CSV is left out."""
    data = yaml.safe_load(RECIPE.read_text())

    def point(v: Any) -> Any:
        if isinstance(v, str):
            return v.replace(LOOPBACK, web_url)
        if isinstance(v, list):
            return [point(x) for x in v]
        if isinstance(v, dict):
            return {k: point(x) for k, x in v.items()}
        return v

    data = point(data)
    data.pop("target", None)
    data["classes"] = list(classes)
    crawl_dir = (out / "crawl").resolve()
    data["output"] = {"manifest": str(crawl_dir / "web.parquet"), "data_root": str(crawl_dir / "data")}
    crawl_dir.mkdir(parents=True, exist_ok=True)
    path = crawl_dir / "recipe.yaml"
    path.write_text("# recipes/demo.yaml pointed at this run's loopback web (written by curate demo)\n"
                    + yaml.safe_dump(data, sort_keys=False))
    return path


# ------------------------------------------------------------------------------------------------ runs

def usable_web(df: pd.DataFrame) -> pd.DataFrame:
    """The web rows a student trains on: status ok with a file, of a class (whole untrimmed videos included)."""
    ok = (df["status"] == "ok") & df["path"].notna() & df["label_id"].notna() & ~df["source"].eq("pseudo")
    return df[ok].reset_index(drop=True)


WEB_IMAGES = ("all", "2d", "none")


def student_web(corpus: pd.DataFrame, frames: bool, web_images: str) -> pd.DataFrame:
    """The web rows a student trains on: web_images 'all' pools stills and videos, '2d' keeps the stills for frame
    models (frames: trainers.config.is_2d) only, 'none' drops them for every student."""
    if web_images not in WEB_IMAGES:
        raise ValueError(f"web_images must be one of {list(WEB_IMAGES)}, got {web_images!r}")
    if web_images == "all" or (web_images == "2d" and frames):
        return corpus
    return corpus[corpus["media"] != "image"].reset_index(drop=True)


def jobs_for(world: World, web_root: Path, out: Path, spec: LoopSpec, corpora: Mapping[str, pd.DataFrame | None],
             seeds: Sequence[int], epochs: Mapping[str, int]) -> list[tuple[str, str, int, RunJob]]:
    """(condition, model, seed, job) for every corpus x model (the keys of epochs, each trained that many epochs) x
    seed: the target's train split plus the corpus (None: target only; its stills only for the students
    spec.web_images gives them to), scored on val and test with predictions kept. Run folders are named by the knobs
    a rerun may change (epochs, web_images), so a rerun with other values trains next to the old runs and reuses
    everything else; a run whose rows changed (another filter) is trained again in its folder."""
    target, whole = target_sources(world)
    jobs = []
    for cond, corpus in corpora.items():
        images = "" if corpus is None or spec.web_images == "2d" else f"_images-{spec.web_images}"
        for model, n in epochs.items():
            cfgs = {seed: run_config(model, spec.tiny, n, spec.batch_size, spec.lr, spec.size, seed, None,
                                     {"scale": spec.scale}) for seed in seeds}
            frames = is_2d(next(iter(cfgs.values()))["model"])   # the web rows depend on the model, not the seed
            srcs = [target] + ([] if corpus is None else [Source(
                "web", student_web(corpus, frames, spec.web_images), share=spec.web_share, root=web_root)])
            for seed, cfg in cfgs.items():
                run_dir = out / _slug(cond) / f"{Path(model).stem}_e{n}{images}_s{seed}"
                jobs.append((cond, model, seed, RunJob(run_dir, cfg, srcs, whole, ("test", "val"), True, spec.device,
                                                       replace_stale=True)))
    return jobs


def target_sources(world: World) -> tuple[Source, Source]:
    """The target's train split (every run's first source) and the whole target manifest (scored on val / test)."""
    tdf = mf.read(world.target_manifest)
    return (Source("target", tdf[tdf["split"] == "train"].reset_index(drop=True), root=world.root),
            Source("eval", tdf, root=world.root))


def cross_fit_jobs(world: World, web_root: Path, out: Path, spec: LoopSpec, corpus: pd.DataFrame
                   ) -> list[tuple[str, str, int, RunJob]]:
    """Cross-fitted image teachers: the image teacher's model trained on the target plus the corpus's images under
    their crawl labels (no truth), one run per fold of spec.cross_fit's (folds, splits), split s seeded s; each run
    leaves its fold out (trainers.sources.Holdout), so an ensemble of them scores every image with models that
    never trained on it."""
    folds, splits = spec.cross_fit
    model, epochs = spec.models[0], spec.cross_fit_epochs
    target, whole = target_sources(world)
    images = corpus[corpus["media"] == "image"].reset_index(drop=True)
    jobs = []
    for seed in range(splits):
        cfg = run_config(model, spec.tiny, epochs, spec.batch_size, spec.lr, spec.size, seed, None,
                         {"scale": spec.scale})
        for fold in range(folds):
            web = Source("web", images, share=spec.cross_fit_share, holdout=f"{fold}/{folds}@{seed}", root=web_root)
            run_dir = out / "cross_fit" / f"{Path(model).stem}_e{epochs}{CROSS_FIT_SUFFIX.format(fold, folds, seed)}"
            jobs.append((f"cross-fit {fold}/{folds}@{seed}", model, seed,
                         RunJob(run_dir, cfg, [target, web], whole, ("test", "val"), False, spec.device,
                                replace_stale=True)))
    return jobs


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() else "_" for c in text).strip("_").replace("__", "_")


def run_table(jobs: Sequence[tuple[str, str, int, RunJob]], workers: int,
              said: Callable[[str], None] = lambda line: None, pool: WorkerPool | None = None) -> pd.DataFrame:
    """Run every job (side by side) and return one row per run: condition, model, seed, test and val metrics."""
    def done(i: int, row: dict, reused: bool) -> None:
        cond, model, seed, _ = jobs[i]
        said(f"{cond} / {model} seed {seed}: test top1 {row['top1']:.3f}"
             + (" (done before)" if reused else f" in {row['seconds']:.0f} s"))

    rows = run_jobs([j for *_, j in jobs], workers, done, pool)
    return pd.DataFrame([{"condition": c, "model": m, "seed": s, "run": str(j.run_dir), "run_s": r["seconds"],
                          **_flat(r["metrics"])}
                         for (c, m, s, j), r in zip(jobs, rows)])


def _flat(metrics: Mapping[str, Mapping[str, float]]) -> dict[str, float]:
    return {("" if split == "test" else f"{split}_") + k: v for split, m in metrics.items() for k, v in m.items()}


def pair_scores(run_dir: str | Path, pairs: Sequence[tuple[int, int]]) -> dict[str, float]:
    """Test predictions against the classes that differ only in temporal order: `pair_acc`, on clips of a paired
    class predicted into their pair, the fraction predicted as the right one of the two (chance 0.5; NaN when none
    falls inside a pair); `pair_top1`, top-1 with each pair counted as one class (what a frame model can learn)."""
    pred = pd.read_parquet(Path(run_dir) / "eval_test" / "predictions.parquet")
    partner = {a: b for p in pairs for a, b in (p, p[::-1])}
    rows = pred[pred["label"].isin(list(partner))]
    inside = rows[(rows["pred"] == rows["label"]) | (rows["pred"] == rows["label"].map(partner))]
    group = {c: min(c, partner.get(c, c)) for c in set(pred["label"]) | set(pred["pred"])}
    return {"pair_acc": float((inside["pred"] == inside["label"]).mean()) if len(inside) else float("nan"),
            "pair_top1": float((pred["pred"].map(group) == pred["label"].map(group)).mean())}


def best_runs(runs: pd.DataFrame, condition: str) -> dict[str, str]:
    """Per model, the run of `condition` with the best validation top-1 (the next round's teachers)."""
    rows = runs[runs["condition"] == condition].sort_values(["val_top1", "seed"], ascending=[False, True])
    return {m: str(tested_checkpoint(g.iloc[0]["run"])) for m, g in rows.groupby("model", sort=False)}


# ------------------------------------------------------------------------------------------------ the loop

@dataclass
class LoopResult:
    web: pd.DataFrame                          # the crawl manifest as crawled
    deduped: pd.DataFrame                      # after dedup against val/test and inside the web
    rounds: list[dict[str, Any]]               # per filter round: teachers, manifest, quality, removed, clips
    teachers: pd.DataFrame                     # the first teachers' runs
    runs: pd.DataFrame                         # every student run
    dedup: dict[str, Any]
    efficiency: pd.DataFrame | None
    seconds: dict[str, float] = field(default_factory=dict)
    budget: str | None = None                  # what the time budget changed (fit_budget), if anything
    web_images: str = "2d"                     # which students took the web images (LoopSpec.web_images)
    efficiency_dir: Path | None = None         # where the efficiency curves' runs and plot are
    cross_fit: pd.DataFrame | None = None      # the cross-fitted image teachers' runs (round 1), if any
    curation: dict[str, pd.DataFrame] = field(default_factory=dict)   # shots, label issues, feedback crawl (round 1)


def run_loop(world: World, web_url: str, out: Path, spec: LoopSpec = LoopSpec(),
             stage: Callable[[str], None] = lambda name: None, said: Callable[[str], None] = lambda line: None,
             efficiency: bool = True, pool: WorkerPool | None = None) -> LoopResult:
    """The whole loop; stage(name) announces each stage, said(line) reports a finished step; the training runs of
    every stage go to `pool` when given (else each stage starts its own workers)."""
    import time

    from curate.clean.dedup import PixelEmbedder, dedup_manifest
    from curate.crawl.crawler import crawl
    from curate.crawl.recipe import load_recipe

    clock: dict[str, float] = {}
    t = time.perf_counter()
    measured: dict[str, pd.DataFrame] = {}

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        clock[name] = round(now - t, 1)
        t = now

    stage("crawl")
    res = crawl(load_recipe(demo_recipe(web_url, out, world.classes)))
    web, web_root = res.df, out.resolve() / "crawl" / "data"
    said(f"crawl: {res.fetched} fetched in {res.seconds:.1f} s, "
         + ", ".join(f"{k} {v}" for k, v in web["status"].value_counts().items()))
    lap("crawl")

    stage("dedup")
    tdf = mf.read(world.target_manifest)
    deduped, rep = dedup_manifest(web, tdf, web_root, world.root, PixelEmbedder(), spec.dedup_threshold,
                                  cache=out / "dedup" / "vectors.parquet")
    mf.write(deduped, out / "manifests" / "web_deduped.parquet", {"data_root": str(web_root)})
    dedup = {"report": rep, **dedup_quality(deduped, world)}
    said(f"dedup: {rep.of_val} copies of val/test ({dedup['found']}/{dedup['planted_crawled']} planted found, "
         f"{dedup['false_hits']} false), {rep.within} near-duplicates inside the web, index {rep.index}")
    lap("dedup")

    stage("teachers")
    tjobs = jobs_for(world, web_root, out / "teachers", spec, {TARGET_ONLY: None}, (0,),
                     dict.fromkeys(spec.models[:2], spec.teacher_epochs))
    cjobs = cross_fit_jobs(world, web_root, out / "teachers", spec, usable_web(deduped)) if spec.cross_fit else []
    table = run_table(tjobs + cjobs, spec.workers, said, pool)
    teachers = table.iloc[:len(tjobs)].reset_index(drop=True)
    cross_fit = table.iloc[len(tjobs):].reset_index(drop=True) if cjobs else None
    first = {m: str(tested_checkpoint(r)) for m, r in zip(teachers["model"], teachers["run"])}
    lap("teachers")
    spec, efficiency, budget = fit_budget(spec, teachers, efficiency,
                                          0.0 if cross_fit is None else float(cross_fit["run_s"].sum()))
    if budget:
        said(budget)

    right = None
    rounds: list[dict[str, Any]] = []
    runs = pd.DataFrame()
    for rnd in range(1, spec.rounds + 1):
        stage(f"filter round {rnd}")
        ckpts = first if rnd == 1 else best_runs(runs, filtered(rnd - 1))
        images = ([str(tested_checkpoint(r)) for r in cross_fit["run"]] if rnd == 1 and cross_fit is not None
                  else [ckpts[m] for m in spec.models[:2]])
        r = filter_round(deduped, web_root, out / "manifests" / f"web_round{rnd}.parquet",
                         {"image": images, "video": [ckpts[spec.models[1]]]}, spec, issues=rnd == 1)
        ensembles = r.pop("ensembles")
        right = right_label(r["manifest"], world)
        r["quality"] = filter_quality(r["manifest"], right)
        r["right"] = right
        rounds.append(r)
        q = r["quality"]
        said(f"filter round {rnd} (keep {r['rule']}): kept {q['kept']} of {q['judged']} judged web items, "
             f"precision {q['precision']:.3f} (crawl {q['base_rate']:.3f}), recall {q['recall']:.3f}; "
             f"{r['clips'].get('clips', 0)} clips cut; "
             + at_recall_line(q))
        lap(f"filter round {rnd}")
        if rnd == 1:
            from curate.clean.review import review_page
            from curate.demo.curation import curation

            measured = curation(world, web_url, out, spec, deduped, r, web_root, ensembles)
            review_page(r["manifest"], web_root, out / "review.html", title="curate demo: review of round 1")
            lap("curation (round 1)")
        stage(f"students round {rnd}")
        corpora = ({TARGET_ONLY: None, UNFILTERED: usable_web(deduped), filtered(1): usable_web(r["manifest"])}
                   if rnd == 1 else {filtered(rnd): usable_web(r["manifest"])})
        jobs = jobs_for(world, web_root, out / "students", spec, corpora, spec.seeds,
                        {m: spec.epochs_of(m) for m in spec.models})
        if rnd == 1 and spec.relabel_students:     # round 1's kept rows plus the rows the relabel rule keeps
            from curate.clean.label_issues import relabel

            video = spec.models[1]
            jobs += jobs_for(world, web_root, out / "students", spec,
                             {RELABELLED: usable_web(relabel(r["manifest"], spec.relabel_min_p)[0])}, spec.seeds,
                             {video: spec.epochs_of(video)})
        runs = pd.concat([runs, run_table(jobs, spec.workers, said, pool)], ignore_index=True)
        lap(f"students round {rnd}")

    eff, eff_dir = None, None
    if efficiency:
        from curate.experiments.efficiency import efficiency_curves

        stage("efficiency")
        kept = usable_web(rounds[0]["manifest"])
        by_media = {name: Source(name, kept[kept["media"] == m].reset_index(drop=True), root=web_root)
                    for name, m in (("images", "image"), ("videos", "video"))}
        eff_dir = out / "efficiency" / f"{Path(spec.efficiency_model).stem}_e{spec.efficiency_epochs}"
        eff = efficiency_curves(world.target_manifest, by_media, eff_dir, model=spec.efficiency_model,
                                tiny=spec.tiny, fractions=spec.fractions, epochs=spec.efficiency_epochs,
                                batch_size=spec.batch_size, lr=spec.lr, size=spec.size, data={"scale": spec.scale},
                                device=spec.device, workers=spec.workers, pool=pool, replace_stale=True)
        lap("efficiency")
    return LoopResult(web, deduped, rounds, teachers, runs, dedup, eff, clock, budget, spec.web_images, eff_dir,
                      cross_fit, measured)


def filter_round(deduped: pd.DataFrame, web_root: Path, path: Path, ckpts: Mapping[str, Sequence[str]],
                 spec: LoopSpec, issues: bool = False) -> dict[str, Any]:
    """curate filter with the given teachers (media -> checkpoints, several: an ensemble) over the deduplicated
    crawl, untrimmed videos cut inside their shots, label issues marked when asked (round 1's out-of-sample
    teachers); read back from path when it holds the same teachers, rules and rows."""
    import dataclasses
    import hashlib
    import json

    from curate.clean.filter import filter_manifest
    from curate.clean.label_issues import METHOD as ISSUE_METHOD
    from curate.clean.teacher import teachers_from_args

    teachers = teachers_from_args(ckpts.get("image", []), ckpts.get("video", []), spec.device,
                                  {"image": spec.image_views})
    inputs = {"teachers": {m: t.sha for m, t in teachers.items()}, "rules": dataclasses.asdict(spec.keep),
            "untrimmed": spec.untrimmed_over_s, "window": spec.window_s, "rows": sorted(deduped["item_id"]),
            "ok": int((deduped["status"] == "ok").sum()), "issues": issues and ISSUE_METHOD,
            "shots": dataclasses.asdict(spec.shots) if spec.shots else None}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    out = {"teachers": dict(ckpts), "path": path, "rule": spec.keep.describe(), "ensembles": teachers}
    if path.exists() and mf.read_metadata(path).get("filter_key") == key:
        stats = json.loads(mf.read_metadata(path)["filter_stats"])
        return {**out, "manifest": mf.read(path), **stats}
    res = filter_manifest(deduped, web_root, teachers, spec.keep, untrimmed_over_s=spec.untrimmed_over_s,
                          window_s=spec.window_s, embeddings=path.with_name(path.stem + ".emb.parquet"),
                          shots=spec.shots, issues=issues)
    stats = {"removed": res.removed, "clips": res.clips}
    mf.write(res.manifest, path, {"data_root": str(web_root), "filter_key": key, "filter_stats": json.dumps(stats)})
    return {**out, "manifest": res.manifest, **stats}


