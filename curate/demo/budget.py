"""The demo's time budget, all of it: the default (`--budget-min`), the measured cost constants, and `fit_budget`:
from the teachers' measured speed, predict what the rest of the loop costs on this machine and shrink it to fit
(efficiency curves first, then the 2D students' epochs, then the others')."""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from curate.demo.spec import LoopSpec

DEFAULT_BUDGET_MIN = 11.0   # make demo's 15 minutes less a fresh install (venv, torch, ffmpeg: up to 4 minutes)
MIN_EPOCHS = 20
WEB_STEP_COST = 0.75      # a step with a web batch beside the target's costs 1 + 0.75 * web_share target-only steps
                          # (measured: 1.45x for TSN, 1.8x for SlowOnly)
STUDENT_OVERHEAD = 1.15   # a student run's evaluation and worker start on top of its epochs (measured 1.14x)
OTHER_STAGES = 2.0        # world, crawl, teachers, filters, round 1's curation grading, report (BMN + detector run
                          # beside the teachers), in units of the teachers' wall time: measured 1.76x on a 2-core AMD
                          # EPYC, about 2x with shots, montages and the second crawls (a loaded box, docs/experiments.md)


def budget_seconds(budget_min: float | None, schedule_given: bool) -> float | None:
    """`--budget-min` in seconds: by default DEFAULT_BUDGET_MIN, unless the schedule was given (--student-epochs,
    --full: taken as given); 0 means no limit (None)."""
    if budget_min is None:
        budget_min = 0 if schedule_given else DEFAULT_BUDGET_MIN
    return budget_min * 60 if budget_min > 0 else None


def fit_budget(spec: LoopSpec, teachers: pd.DataFrame, efficiency: bool = True, extra_s: float = 0.0
               ) -> tuple[LoopSpec, bool, str | None]:
    """(spec, efficiency, note) that fit spec.budget_s, predicted from the teachers' measured seconds per epoch on
    this machine (column run_s; recorded, so a rerun decides the same): first the efficiency curves go, then the 2D
    students' epochs shrink, then the other students' (a frame model's Table 1 row moves little with its length on
    this world; the 3D students need the epochs to show web data's effect), never below MIN_EPOCHS (a machine too
    slow for that overruns the budget rather than train students that learn nothing); extra_s: seconds of other
    runs beside the teachers (the cross-fitted image teachers), spread over the workers. note is None when everything
    fits as planned; the epochs chosen per model land in spec.epochs_by_model."""
    if spec.budget_s is None:
        return spec, efficiency, None
    per_epoch = dict(zip(teachers["model"], teachers["run_s"] / spec.teacher_epochs))
    slowest = max(per_epoch.values())
    web = 1 + WEB_STEP_COST * spec.web_share
    parallel = max(1, min(spec.workers, os.cpu_count() or 1))
    extra = {spec.models[1]: 1} if spec.relabel_students else {}    # the video students' relabel condition
    unit = {m: per_epoch.get(m, slowest) * len(spec.seeds) * (1 + (spec.rounds + 1 + extra.get(m, 0)) * web)
            * STUDENT_OVERHEAD / parallel for m in spec.models}    # seconds per student epoch of every run of the model
    plan = {m: spec.epochs_of(m) for m in spec.models}
    students = sum(unit[m] * e for m, e in plan.items())
    curves = per_epoch.get(spec.efficiency_model, slowest) * (
        1 + 2 * len(spec.fractions) * web) * spec.efficiency_epochs / parallel if efficiency else 0.0
    left = spec.budget_s - OTHER_STAGES * float(teachers["run_s"].max()) - extra_s / parallel
    if students + curves <= left:
        return more_seeds(spec, students + curves, left), efficiency, None
    speed = ", ".join(f"{Path(m).stem} {v:.2f}" for m, v in per_epoch.items())
    note = (f"time budget {spec.budget_s:.0f} s: the teachers trained at {speed} s per epoch on this machine, "
            f"which leaves {left:.0f} s for the students ({students:.0f} s planned)")
    if efficiency:
        note += f" and the efficiency curves ({curves:.0f} s planned): curves skipped"
    if students > left:
        epochs = shrink(plan, unit, left, [[m for m in plan if _is_2d(m)], [m for m in plan if not _is_2d(m)]])
        note += "; students " + ", ".join(f"{Path(m).stem} {plan[m]} -> {e}" for m, e in epochs.items()
                                          if e != plan[m]) + " epochs"
        spec = replace(spec, epochs_by_model=epochs)
    full = spec.budget_s - left + students + curves
    note += f" (the whole plan: --budget-min 0, about {full / 60:.0f} minutes here)"
    return spec, False, note


def more_seeds(spec: LoopSpec, planned: float, left: float) -> LoopSpec:
    """Where the whole plan fits with time to spare (a faster machine), more seeds for Table 1's paired verdicts:
    as many as fit, up to spec.max_seeds (student time grows with the seed count)."""
    n = len(spec.seeds)
    fits = [k for k in range(n + 1, spec.max_seeds + 1) if planned * k / n <= left]
    return replace(spec, seeds=tuple(range(max(fits)))) if fits else spec


def shrink(plan: Mapping[str, int], unit: Mapping[str, float], left: float,
           groups: Sequence[Sequence[str]]) -> dict[str, int]:
    """Epochs per model that fit `left` seconds (unit: seconds per epoch): the groups shrink in order, each only as
    far as it must and never below MIN_EPOCHS, the next one only once the last is at MIN_EPOCHS."""
    epochs = dict(plan)
    for group in (g for g in groups if g):
        rest = sum(unit[m] * e for m, e in epochs.items() if m not in group)
        fit = int(max(0.0, left - rest) / sum(unit[m] for m in group))
        for m in group:
            epochs[m] = min(epochs[m], max(MIN_EPOCHS, fit))
        if fit >= MIN_EPOCHS:
            break
    return epochs


def _is_2d(model: str) -> bool:
    from trainers.config import is_2d
    from trainers.train import make_config

    return is_2d(make_config(model)["model"])
