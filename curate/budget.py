"""The demo's time budget: from the teachers' measured speed, predict what the rest of the loop costs on this
machine and shrink it to fit (efficiency curves first, then student epochs)."""
from __future__ import annotations

import os
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd

if TYPE_CHECKING:
    from curate.loop import LoopSpec

MIN_EPOCHS = 20
WEB_STEP_COST = 0.75   # a step with a web batch beside the target's costs 1 + 0.75 * web_share target-only steps
                       # (measured: 1.45x for TSN, 1.8x for SlowOnly)
OTHER_STAGES = 3.3     # world, crawl, teachers, filters, BMN + detector, report, in units of the teachers' wall
                       # time: measured 2.5-2.7x on a 2-core AMD EPYC (2.4x on a 2-core Intel Xeon), where the
                       # students also took ~15 % more than planned (evaluation, worker start); 3.3 covers both


def fit_budget(spec: LoopSpec, teachers: pd.DataFrame, efficiency: bool = True) -> tuple[LoopSpec, bool, str | None]:
    """(spec, efficiency, note) that fit spec.budget_s, predicted from the teachers' measured seconds per epoch on
    this machine (column run_s; recorded, so a rerun decides the same): first the efficiency curves go, then the
    student epochs shrink, never below MIN_EPOCHS (a machine too slow for that overruns the budget rather than
    train students that learn nothing). note is None when everything fits as planned."""
    if spec.budget_s is None:
        return spec, efficiency, None
    per_epoch = dict(zip(teachers["model"], teachers["run_s"] / spec.teacher_epochs))
    slowest = max(per_epoch.values())
    web = 1 + WEB_STEP_COST * spec.web_share
    parallel = max(1, min(spec.workers, os.cpu_count() or 1))
    students = sum(per_epoch.get(m, slowest) for m in spec.models) * len(spec.seeds) * (
        1 + (spec.rounds + 1) * web) * spec.student_epochs / parallel
    curves = per_epoch.get(spec.efficiency_model, slowest) * (
        1 + 2 * len(spec.fractions) * web) * spec.efficiency_epochs / parallel if efficiency else 0.0
    left = spec.budget_s - OTHER_STAGES * float(teachers["run_s"].max())
    if students + curves <= left:
        return spec, efficiency, None
    speed = ", ".join(f"{Path(m).stem} {v:.2f}" for m, v in per_epoch.items())
    note = (f"time budget {spec.budget_s:.0f} s: the teachers trained at {speed} s per epoch on this machine, "
            f"which leaves {left:.0f} s for the students ({students:.0f} s planned)")
    if efficiency:
        note += f" and the efficiency curves ({curves:.0f} s planned): curves skipped"
    if students > left:
        epochs = max(MIN_EPOCHS, int(spec.student_epochs * max(0.0, left) / students))
        note += f"; students {spec.student_epochs} -> {epochs} epochs"
        spec = replace(spec, student_epochs=epochs)
    full = spec.budget_s - left + students + curves
    note += f" (the whole plan: --budget-min 0, about {full / 60:.0f} minutes here)"
    return spec, False, note
