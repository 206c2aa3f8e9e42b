"""The OmniSource loop on the demo world: crawl -> teachers -> dedup + filter -> students -> the best students become
the next teachers -> re-filter -> students again. `curate demo` runs `run_loop`; it returns plain data the report
(curate/report.py) shows. Every stage is the real one (curate.crawl, curate.dedup, curate.filter, trainers.train);
this module wires them together and measures them against the world's known truth. Reruns reuse finished work.
"""
from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from curate import manifest as mf
from curate.budget import fit_budget
from curate.filter import AT_RECALL, TARGET_PRECISION, KeepRules, precision_at_recall
from curate.runs import RunJob, WorkerPool, run_jobs
from curate.synth import World
from trainers.sources import Source

RECIPE = Path(__file__).resolve().parent.parent / "recipes" / "demo.yaml"
LOOPBACK = "http://127.0.0.1:8000"
TARGET_ONLY, UNFILTERED = "target only", "+ web, unfiltered"


CROSS_FIT_SUFFIX = "_f{}of{}_s{}"              # a cross-fit run folder: <model>_e<epochs>_f<fold>of<folds>_s<split>
CROSS_FIT_RUN = re.compile(r"_f\d+of\d+_s\d+$")   # ... and how the report recognises one


def filtered(round_: int) -> str:
    return f"+ web, filtered (round {round_})"


@dataclass(frozen=True)
class LoopSpec:
    """The sizes of one loop; the defaults fit the default world in 15 minutes on 2 CPU cores."""

    models: tuple[str, ...] = ("tsn_r50", "slowonly_r50")   # students; the first two are the image / video teachers
    seeds: tuple[int, ...] = (0, 1, 2)
    rounds: int = 2                  # filter rounds; round k's teachers are the best students of round k - 1
    tiny: bool = True
    size: int = 48                   # crop side (SlowOnly teacher test top-1 on a 2-core Xeon: 32 0.60, 48 0.75,
                                     # 64 0.82; the same seed on a 2-core AMD EPYC, other float paths: 0.60 at 48)
    scale: int = 60                  # frames resized to this before a random (train) or centre (test) crop
    teacher_epochs: int = 150
    student_epochs: int = 60
    epochs_by_model: Mapping[str, int] = field(default_factory=dict)   # where the budget shortened a model's students
    efficiency_epochs: int = 40
    batch_size: int = 8
    lr: float = 3e-3                 # 1e-2: SlowOnly target-only 0.45 +- 0.13 over 3 seeds; 3e-3: 0.51 +- 0.02
    web_share: float = 1.0           # web clips per target clip in every batch, images and videos pooled (one source
                                     # per media at the same compute, 4 + 4 clips: filtered SlowOnly 0.511 -> 0.438)
    web_images: str = "2d"           # which students take web images (still pseudo-videos): 'all', '2d' (frame models
                                     # only; the others train on web videos) or 'none'. SlowOnly, 5 seeds: pooled
                                     # filtered web 0.417, filtered web videos only 0.628 (target only 0.472)
    cross_fit: tuple[int, int] | None = (3, 1)   # (folds, splits): round 1's image teachers are TSNs trained on the
                                     # target + the crawl's own images (crawl labels), each scoring only the fold it
                                     # left out. P@R0.8 on images, worlds 0 / 1: target-only teachers 0.905 / 0.907;
                                     # 2x1 0.960 / 0.935, 2x2 0.954 / 0.951, 2x3 0.963 / 0.968, 3x1 0.960 / 0.957
                                     # (3x1: 3 runs, ~215 s of training here; 2x3: 6 runs, ~420 s)
    cross_fit_epochs: int = 90       # 2x3, world 0 / 1: 60 epochs x share 2 0.938 / -, 90 x 2 0.952 / 0.946,
                                     # 90 x 3 0.963 / 0.968 (~1.4x the time of 90 x 2)
    cross_fit_share: float = 3.0     # web images per target clip in their batches
    image_views: str | None = "1x10"  # TenCrop for the image teachers; P@R0.8 on images, round-1 teachers: world 0
                                      # 0.877 -> 0.902, world 1 0.856 -> 0.890; world 0's round-2 pairs +0.015-0.024
    keep: KeepRules = KeepRules(relative=0.7, match=False)  # round 1, worlds 0 / 1, recall / precision: top-1 match
                                     # 0.47 / 0.92; top-2 match 0.73 / 0.91, 0.67 / 0.93; p >= 0.7 x class median
                                     # 0.81 / 0.92, 0.82 / 0.93 (Table 1 within the seed spread)
    dedup_threshold: float = 0.6     # pixel-thumbnail cosine: planted copies 0.60-0.99, distinct items <= 0.58
    untrimmed_over_s: float = 4.0    # longer web videos are cut into clips
    window_s: float = 2.0
    efficiency_model: str = "slowonly_r50"
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)   # with the target-only point: 4 per curve
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    device: str | None = None
    budget_s: float | None = None    # seconds the whole demo may take (fit_budget); None: no limit

    def epochs_of(self, model: str) -> int:
        """The student epochs of one model."""
        return self.epochs_by_model.get(model, self.student_epochs)


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


# ------------------------------------------------------------------------------------------------ truth

def right_label(rows: pd.DataFrame, world: World) -> pd.Series:
    """Per row: does it show its own label? Whole items are looked up by content hash in the world's truth (a
    clutter item shows no class); a clip cut from an untrimmed video is right when an action of its label covers
    at least half of it. NA where the world does not know the row."""
    truth = mf.read(world.truth_web, validate_rows=False)
    truth = truth[truth["sha256"].notna()].drop_duplicates("sha256").set_index("sha256")
    actions = pd.read_parquet(world.truth_actions)
    by_item = dict(zip(rows["item_id"], rows["sha256"]))
    out = pd.Series(pd.NA, index=rows.index, dtype="boolean")
    for i, r in rows.iterrows():
        sha = by_item.get(r["parent_id"]) if pd.notna(r["parent_id"]) else r["sha256"]
        if sha not in truth.index:
            continue
        t = truth.loc[sha]
        if pd.isna(r["parent_id"]):
            out[i] = bool(t["true_label"] == r["label"])
            continue
        acts = actions[(actions["video_id"] == t["source_id"]) & (actions["label"] == r["label"])]
        overlap = (np.minimum(acts["end_s"], r["end_s"]) - np.maximum(acts["start_s"], r["start_s"])).clip(lower=0)
        out[i] = bool((overlap >= 0.5 * (r["end_s"] - r["start_s"])).any())
    return out


def judged_rows(rows: pd.DataFrame, right: pd.Series) -> pd.Series:
    """Whole web items the teacher's keep rule decided on and the truth knows (not dedup'd, not cut up)."""
    return rows["teacher_sha"].notna() & rows["parent_id"].isna() & right.notna() & ~rows["error"].fillna(
        "").str.startswith(("duplicate_of_val", "near_duplicate", "untrimmed"))


def filter_quality(rows: pd.DataFrame, right: pd.Series) -> dict[str, Any]:
    """Precision / recall of the keep decision on 'label is right' over the whole web items the teacher judged
    (status ok = kept); base_rate = precision of keeping them all; at_recall = per media (and 'all') the best
    precision a threshold on teacher_score reaches at recall AT_RECALL."""
    judged = judged_rows(rows, right)
    clean, kept = right[judged].astype(bool), rows.loc[judged, "status"] == "ok"
    tp = int((clean & kept).sum())
    media, score = rows.loc[judged, "media"], rows.loc[judged, "teacher_score"].astype(float)
    at_recall = {f"{m}s": precision_at_recall(score[media == m].to_numpy(), clean[media == m].to_numpy())
                 for m in ("image", "video")}
    at_recall["all"] = precision_at_recall(score.to_numpy(), clean.to_numpy())
    return {"judged": int(judged.sum()), "kept": int(kept.sum()), "clean": int(clean.sum()),
            "base_rate": float(clean.mean()) if judged.any() else float("nan"),
            "precision": tp / max(1, int(kept.sum())), "recall": tp / max(1, int(clean.sum())),
            "at_recall": at_recall}


def at_recall_line(q: Mapping[str, Any]) -> str:
    """'best precision at recall 0.8: images 0.871, videos 0.938, all 0.875 (goal 0.95: met for videos)'."""
    got = {k: v for k, v in q["at_recall"].items() if not np.isnan(v)}
    met = [k for k, v in got.items() if v >= TARGET_PRECISION]
    verdict = "met" if "all" in met else f"met for {', '.join(met)}" if met else "not met"
    return (f"best precision at recall {AT_RECALL}: " + ", ".join(f"{k} {v:.3f}" for k, v in got.items())
            + f" (goal {TARGET_PRECISION}: {verdict})")


def dedup_quality(web: pd.DataFrame, world: World) -> dict[str, int]:
    """Planted near-copies of val/test among the crawled rows: how many were found, and hits on other rows."""
    truth = mf.read(world.truth_web, validate_rows=False)
    copies = set(truth.loc[truth["copy_of"].notna() & truth["sha256"].notna(), "sha256"])
    crawled = web[web["sha256"].isin(copies) & web["parent_id"].isna()]
    hit = web["error"].fillna("").str.startswith("duplicate_of_val")
    return {"planted_crawled": len(crawled), "found": int(hit[crawled.index].sum()),
            "false_hits": int((hit & ~web["sha256"].isin(copies)).sum())}


# ------------------------------------------------------------------------------------------------ runs

def usable_web(df: pd.DataFrame) -> pd.DataFrame:
    """The web rows a student trains on: status ok with a file, of a class (whole untrimmed videos included)."""
    ok = (df["status"] == "ok") & df["path"].notna() & df["label_id"].notna() & ~df["source"].eq("pseudo")
    return df[ok].reset_index(drop=True)


WEB_IMAGES = ("all", "2d", "none")


def student_web(corpus: pd.DataFrame, model_type: str, web_images: str) -> pd.DataFrame:
    """The web rows a student of this recognizer type trains on: web_images 'all' pools stills and videos, '2d' keeps
    the stills for frame models (Recognizer2D) only, 'none' drops them for every student."""
    if web_images not in WEB_IMAGES:
        raise ValueError(f"web_images must be one of {list(WEB_IMAGES)}, got {web_images!r}")
    if web_images == "all" or (web_images == "2d" and model_type == "Recognizer2D"):
        return corpus
    return corpus[corpus["media"] != "image"].reset_index(drop=True)


def jobs_for(world: World, web_root: Path, out: Path, spec: LoopSpec, corpora: Mapping[str, pd.DataFrame | None],
             seeds: Sequence[int], epochs: Mapping[str, int]) -> list[tuple[str, str, int, RunJob]]:
    """(condition, model, seed, job) for every corpus x model (the keys of epochs, each trained that many epochs) x
    seed: the target's train split plus the corpus (None: target only; its stills only for the students
    spec.web_images gives them to), scored on val and test with predictions kept. Run folders are named by the knobs
    a rerun may change (epochs, web_images), so a rerun with other values trains next to the old runs and reuses
    everything else; a run whose rows changed (another filter) is trained again in its folder."""
    from curate.efficiency import run_config

    target, whole = target_sources(world)
    jobs = []
    for cond, corpus in corpora.items():
        images = "" if corpus is None or spec.web_images == "2d" else f"_images-{spec.web_images}"
        for model, n in epochs.items():
            cfgs = {seed: run_config(model, spec.tiny, n, spec.batch_size, spec.lr, spec.size, seed, None,
                                     {"scale": spec.scale}) for seed in seeds}
            kind = next(iter(cfgs.values()))["model"]["type"]     # the web rows depend on the model, not the seed
            srcs = [target] + ([] if corpus is None else [Source(
                "web", student_web(corpus, kind, spec.web_images), share=spec.web_share, root=web_root)])
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
    from curate.efficiency import run_config

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


def pair_accuracy(run_dir: str | Path, pairs: Sequence[tuple[int, int]]) -> float:
    """On test clips of classes that differ only in temporal order, predicted into their pair: fraction predicted
    as the right one of the two (chance 0.5); NaN when no prediction falls inside a pair."""
    pred = pd.read_parquet(Path(run_dir) / "eval_test" / "predictions.parquet")
    partner = {a: b for p in pairs for a, b in (p, p[::-1])}
    rows = pred[pred["label"].isin(list(partner))]
    inside = rows[(rows["pred"] == rows["label"]) | (rows["pred"] == rows["label"].map(partner))]
    return float((inside["pred"] == inside["label"]).mean()) if len(inside) else float("nan")


def best_runs(runs: pd.DataFrame, condition: str) -> dict[str, str]:
    """Per model, the run of `condition` with the best validation top-1 (the next round's teachers)."""
    rows = runs[runs["condition"] == condition].sort_values(["val_top1", "seed"], ascending=[False, True])
    return {m: str(Path(g.iloc[0]["run"]) / "last.pt") for m, g in rows.groupby("model", sort=False)}


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


def run_loop(world: World, web_url: str, out: Path, spec: LoopSpec = LoopSpec(),
             stage: Callable[[str], None] = lambda name: None, said: Callable[[str], None] = lambda line: None,
             efficiency: bool = True, pool: WorkerPool | None = None) -> LoopResult:
    """The whole loop; stage(name) announces each stage, said(line) reports a finished step; the training runs of
    every stage go to `pool` when given (else each stage starts its own workers)."""
    import time

    from curate.crawl import crawl
    from curate.dedup import PixelEmbedder, dedup_manifest
    from curate.recipe import load_recipe

    clock: dict[str, float] = {}
    t = time.perf_counter()

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
    first = {m: str(Path(r) / "last.pt") for m, r in zip(teachers["model"], teachers["run"])}
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
        images = ([str(Path(r) / "last.pt") for r in cross_fit["run"]] if rnd == 1 and cross_fit is not None
                  else [ckpts[m] for m in spec.models[:2]])
        r = filter_round(deduped, web_root, out / "manifests" / f"web_round{rnd}.parquet",
                         {"image": images, "video": [ckpts[spec.models[1]]]}, spec)
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
        stage(f"students round {rnd}")
        corpora = ({TARGET_ONLY: None, UNFILTERED: usable_web(deduped), filtered(1): usable_web(r["manifest"])}
                   if rnd == 1 else {filtered(rnd): usable_web(r["manifest"])})
        jobs = jobs_for(world, web_root, out / "students", spec, corpora, spec.seeds,
                        {m: spec.epochs_of(m) for m in spec.models})
        runs = pd.concat([runs, run_table(jobs, spec.workers, said, pool)], ignore_index=True)
        lap(f"students round {rnd}")

    eff, eff_dir = None, None
    if efficiency:
        from curate.efficiency import efficiency_curves

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
                      cross_fit)


def filter_round(deduped: pd.DataFrame, web_root: Path, path: Path, ckpts: Mapping[str, Sequence[str]],
                 spec: LoopSpec) -> dict[str, Any]:
    """curate filter with the given teachers (media -> checkpoints, several: an ensemble) over the deduplicated
    crawl; read back from path when it holds the same teachers, rules and rows."""
    import dataclasses
    import hashlib
    import json

    from curate.filter import filter_manifest
    from curate.teacher import teachers_from_args

    teachers = teachers_from_args(ckpts.get("image", []), ckpts.get("video", []), spec.device,
                                  {"image": spec.image_views})
    inputs = {"teachers": {m: t.sha for m, t in teachers.items()}, "rules": dataclasses.asdict(spec.keep),
            "untrimmed": spec.untrimmed_over_s, "window": spec.window_s, "rows": sorted(deduped["item_id"]),
            "ok": int((deduped["status"] == "ok").sum())}
    key = hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()
    out = {"teachers": dict(ckpts), "path": path, "rule": spec.keep.describe()}
    if path.exists() and mf.read_metadata(path).get("filter_key") == key:
        stats = json.loads(mf.read_metadata(path)["filter_stats"])
        return {**out, "manifest": mf.read(path), **stats}
    res = filter_manifest(deduped, web_root, teachers, spec.keep, untrimmed_over_s=spec.untrimmed_over_s,
                          window_s=spec.window_s, embeddings=path.with_name(path.stem + ".emb.parquet"))
    stats = {"removed": res.removed, "clips": res.clips}
    mf.write(res.manifest, path, {"data_root": str(web_root), "filter_key": key, "filter_stats": json.dumps(stats)})
    return {**out, "manifest": res.manifest, **stats}


def family() -> tuple[str, ...]:
    """Every bundled recognition config (recipes/models), TSN and SlowOnly first: the students of `demo --full`."""
    from trainers.config import MODEL_DIR
    from trainers.models import FUSIONS, RECOGNIZERS
    from trainers.train import make_config

    names = sorted(p.stem for p in MODEL_DIR.glob("*.yaml")
                   if make_config(p.stem)["model"]["type"] in {*RECOGNIZERS, *FUSIONS})
    return ("tsn_r50", "slowonly_r50", *[n for n in names if n not in ("tsn_r50", "slowonly_r50")])
