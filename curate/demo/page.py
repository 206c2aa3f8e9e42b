"""`curate demo`'s ending: the FineGym export of the world, the tables printed to the terminal and report.html."""
from __future__ import annotations

import html
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from curate.clean.plots import plot_extremes, plot_scores
from curate.demo import tables as rp
from curate.demo.loop import TARGET_ONLY, LoopResult, filtered
from curate.demo.synth import World
from curate.demo.synth.classes import classes, reversal_pairs
from curate.demo.truth import at_recall_line
from curate.demo.verdicts import TEST as VERDICT_TEST
from curate.gym import build as gymbuild


def gym_export(world: World, out: Path) -> dict[str, Any]:
    """The world's event -> set -> element hierarchy and timed segments as FineGym files under out."""
    tree = json.loads(world.hierarchy.read_text())
    events, elements, cats, ignored = gymbuild.build(tree, gymbuild.read_table(world.truth_events),
                                                     gymbuild.read_table(world.truth_actions), source="synthetic")
    files = gymbuild.write_files(events, elements, cats, out)
    return {"events": len(events), "elements": len(elements), "ignored segments": ignored,
            "files": [str(f) for f in files]}


def _pairs(world: World) -> list[tuple[int, int]]:
    return reversal_pairs(classes(len(world.classes)))


def _frame_models(result: LoopResult, world: World) -> tuple[pd.DataFrame, list[str]]:
    """The frame models' Table 1 at the pair level and why (tables.frame_model_note)."""
    from trainers.config import is_2d
    from trainers.train import make_config

    models = [m for m in result.runs["model"].unique() if is_2d(make_config(m)["model"])]
    return rp.frame_model_note(result.runs, _pairs(world), len(world.classes), models)


def _rich(df: pd.DataFrame, title: str) -> Table:
    t = Table(title=title, title_justify="left", show_edge=False)
    for col in df.columns:
        t.add_column(str(col), justify="left" if df[col].dtype == object else "right")
    for row in df.itertuples(index=False):
        t.add_row(*[f"{v:.3f}" if isinstance(v, float) else str(v) for v in row])
    return t


def teacher_table(result: LoopResult) -> pd.DataFrame:
    """The first teachers, target-only, then the cross-fitted image teachers (round 1's, when the loop had them)."""
    t, cf = result.teachers, result.cross_fit
    images = "images" if cf is None else "reference (round 1's images: cross-fit)"
    rows = [pd.DataFrame({"teacher": t["model"], "trained on": "target",
                          "for": [images, "videos"][:len(t)], "val top1": t["val_top1"], "test top1": t["top1"]})]
    if cf is not None:
        rows.append(pd.DataFrame({"teacher": cf["model"] + " " + cf["condition"],
                                  "trained on": "target + crawl images", "for": "the images it left out",
                                  "val top1": cf["val_top1"], "test top1": cf["top1"]}))
    return pd.concat(rows, ignore_index=True)


def print_tables(con: Console, result: LoopResult, world: World, locdet: Mapping | None, gym: Mapping) -> None:
    """The loop's tables in the terminal (the same DataFrames report.html shows)."""
    from curate.experiments.efficiency import efficiency_table

    con.print(_rich(rp.counts_table(result.web), "crawled rows per source and status"))
    con.print(_rich(teacher_table(result), "teachers (round 1)"))
    wordy = ["image teacher", "video teacher", "keep rule", "removed by rule"]     # in report.html; a terminal of 80
    con.print(_rich(rp.filter_table(result).drop(columns=wordy),                 # columns cut every number to "0.…"
                    "filter quality against the world's truth (label is right; teachers and rules: report.html)"))
    con.print(_rich(rp.table_one(result.runs), "Table 1: test top-1 without / with web data, mean ± std (seeds)"))
    con.print(f"  {web_images_line(result.web_images)}", highlight=False)
    con.print(f"  verdicts: {VERDICT_TEST}; yes = the interval lies above 0", highlight=False)
    for line in rp.verdicts(result.runs):
        con.print(f"  {line}", highlight=False)
    pairs = rp.pair_table(result.runs, _pairs(world), world.classes)
    if not pairs.empty:
        con.print(_rich(pairs.drop(columns="pairs"), "accuracy inside temporal-order pairs (chance 0.5)"))
    frames, said = _frame_models(result, world)
    if not frames.empty:
        con.print(_rich(frames, "frame models: test top-1 with each temporal-order pair counted as one class"))
        for line in said:
            con.print(f"  {line}", highlight=False)
    con.print(_rich(rp.level_table(result.runs), "per-level test accuracy (FineGym hierarchy)"))
    for key, title in CURATION:
        if key in result.curation:
            con.print(_rich(result.curation[key], title))
    if result.efficiency is not None:
        con.print(efficiency_table(result.efficiency))
    con.print(f"FineGym export: {gym['events']} events, {gym['elements']} elements -> "
              f"{Path(gym['files'][0]).parent}", highlight=False)


CURATION = (("shots", "shots: clips of montage videos (round 1), without and with --shots"),
            ("issues", "label issues (Cleanlab, round 1's out-of-sample scores) against the planted mislabels"),
            ("feedback", "a second image crawl of the same budget: even shares vs --feedback (round 1's keep rates)"))


def web_images_line(web_images: str) -> str:
    """Which students the web images (still pseudo-videos) went to (LoopSpec.web_images)."""
    return "web images go to " + {"2d": "the 2D frame students only; the others train on the web videos",
                                  "all": "every student, pooled with the web videos",
                                  "none": "no student; every student trains on the web videos"}[web_images]


def _figures(result: LoopResult, out: Path) -> dict[str, Any]:
    fig = out / "report_files"
    fig.mkdir(parents=True, exist_ok=True)
    first = result.rounds[0]
    figs: dict[str, Any] = {"counts": rp.plot_counts(result.web, fig / "counts.png"),
                            "pr": rp.plot_precision_recall(result, fig / "precision_recall.png")}
    for i, r in enumerate(result.rounds, 1):
        figs[f"scores{i}"] = plot_scores(r["manifest"], fig / f"round{i}")
    figs["extremes"] = plot_extremes(first["manifest"], Path(first["path"]).parent.parent / "crawl" / "data",
                                     fig / "round1")
    return figs


def _runs_figures(result: LoopResult) -> list[str]:
    """Learning curve and confusion matrix of seed 0 of every model, target only vs filtered web data."""
    runs = result.runs[(result.runs["seed"] == result.runs["seed"].min())
                       & result.runs["condition"].isin([TARGET_ONLY, filtered(1)])]
    parts = []
    for r in runs.itertuples():
        cap = f"{r.model}, {r.condition}, seed {r.seed}: test top1 {r.top1:.3f}"
        parts.append(f"<div class='grid'>{rp._img(Path(r.run) / 'curve.png', 'learning curve: ' + cap)}"
                     f"{rp._img(Path(r.run) / 'eval_test' / 'confusion.png', 'confusion (test): ' + cap)}</div>")
    return parts


def report(path: Path, result: LoopResult, world: World, out: Path, locdet: Mapping | None, gym: Mapping,
           seconds: float) -> Path:
    """Write report.html (self-contained) for one demo run."""
    figs = _figures(result, out)
    runs, dd = result.runs, result.dedup
    base = result.rounds[0]["quality"]["base_rate"]
    summary = {"world": f"{len(world.classes)} classes, seed {world.spec.seed}: "
                        + ", ".join(f"{k} {v}" for k, v in world.counts["target"].items()) + " target clips",
               "crawl": f"{len(result.web)} rows, " + ", ".join(
                   f"{k} {v}" for k, v in result.web["status"].value_counts().items()),
               "filter": f"crawl's clean rate {base:.3f}; " + "; ".join(
                   f"round {i}: precision {r['quality']['precision']:.3f}, recall {r['quality']['recall']:.3f}, "
                   + at_recall_line(r["quality"])
                   for i, r in enumerate(result.rounds, 1)),
               "students": f"{len(runs)} runs, seeds {sorted(runs['seed'].unique().tolist())}; "
                           + web_images_line(result.web_images),
               "time": f"{seconds:.0f} s; " + ", ".join(f"{k} {v:.0f} s" for k, v in result.seconds.items())
               + (f"; {result.budget}" if result.budget else "")}
    pairs = rp.pair_table(runs, _pairs(world), world.classes)
    frames, said = _frame_models(result, world)
    sections = [
        ("The crawl", [rp._table(rp.counts_table(result.web), "counts"), rp._img(figs["counts"])]),
        ("Near-duplicates of val/test", [
            f"<p>{dd['found']} of the {dd['planted_crawled']} planted near-copies that were crawled were found, "
            f"{dd['false_hits']} hits on other rows; {dd['report'].within} near-duplicates collapsed inside the "
            f"web; index: {dd['report'].index}.</p>", rp._table(rp.dedup_table(result), "dedup")]),
        ("Teachers", [rp._table(teacher_table(result), "teachers")]),
        ("Filtering against the world's truth", [
            rp._table(rp.filter_table(result), "filter"), rp._img(figs["pr"], "precision / recall"),
            "<div class='grid'>" + "".join(rp._img(p, f"round {i}: {p.stem}") for i in range(1, len(result.rounds) + 1)
                                           for p in figs.get(f"scores{i}", [])) + "</div>",
            rp._img(figs["extremes"], "round 1: highest and lowest teacher scores per class")]),
        ("Curation beyond the keep rule (round 1, against the truth)", [
            "<p>Shots: windows and clips inside the shots PySceneDetect finds, against the world's planted cuts. Label "
            "issues: confident learning on the out-of-sample probabilities, next to the teacher score's lowest rows at "
            "the same recall; relabel: flagged rows kept under a suggested label of p at least the threshold. "
            "Feedback: a second crawl's clean rate. A reviewer's page for round 1: review.html.</p>",
            *(rp._table(result.curation[k], f"curation-{k}") for k, _ in CURATION if k in result.curation)]),
        ("Table 1: without vs with web data (test top-1, mean ± std over seeds)", [
            rp._table(rp.table_one(runs), "table1"), f"<p>{web_images_line(result.web_images)}.</p>",
            f"<p>Verdicts: {VERDICT_TEST}, each condition against the other seed by seed (the same initial weights "
            "and target batches); yes = the interval lies above 0.</p>",
            rp.verdict_list(rp.verdicts(runs))]),
        ("Classes that differ only in temporal order", [
            "<p>Accuracy on test clips of each pair, counted over predictions that fall inside the pair "
            "(chance 0.5): 2D TSN averages frames and cannot see order; 3D models can.</p>",
            rp._table(pairs, "pairs"),
            *([f"<p>{html.escape(said[0])}</p>", rp._table(frames, "frame_models"), rp.verdict_list(said[1:])]
              if not frames.empty else [])]),
        ("Per-level accuracy (FineGym hierarchy: element, set, event)", [
            rp._table(rp.level_table(runs), "levels"),
            f"<p>FineGym export: {gym['events']} events, {gym['elements']} elements; files: "
            + ", ".join(Path(f).name for f in gym["files"]) + "</p>"]),
        ("Learning curves and confusion matrices", _runs_figures(result)),
    ]
    if result.efficiency is not None and result.efficiency_dir is not None:
        from curate.experiments.efficiency import gains

        eff = result.efficiency_dir / "efficiency.png"
        sections.append(("Data efficiency", [rp._img(eff), rp._table(gains(result.efficiency).round(4), "efficiency")]))
    if locdet:
        b, d = locdet["bmn"], locdet["detector"]
        sections.append(("Localization and detection", [rp._table(pd.DataFrame([
            {"task": "temporal proposals (BMN)", "metric": "AUC", "model": b["auc"], "baseline": b["baseline_auc"]},
            {"task": "AVA-style detection", "metric": "frame-mAP@0.5", "model": d["frame_map"],
             "baseline": d["baseline_frame_map"]}]), "locdet")]))
    sections.append(("Lineage: where trained clips came from", [rp._table(rp.lineage(result), "lineage")]))
    return rp.write_report(path, "curate demo: the OmniSource loop on the demo world", summary, sections)
