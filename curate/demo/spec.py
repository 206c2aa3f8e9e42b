"""The sizes of one demo loop (`LoopSpec`) and `loop_spec`: `curate demo`'s options -> a spec. Why each default is
what it is was measured on the demo world: docs/experiments.md."""
from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field

from curate.clean.filter import KeepRules
from curate.clean.shots import ShotRules
from curate.demo.budget import budget_seconds


@dataclass(frozen=True)
class LoopSpec:
    """The sizes of one loop; the defaults fit the default world in 15 minutes on 2 CPU cores."""

    models: tuple[str, ...] = ("tsn_r50", "slowonly_r50")   # students; the first two are the image / video teachers
    seeds: tuple[int, ...] = (0, 1, 2)
    max_seeds: int = 0               # > len(seeds): the budget adds seeds up to this many where they fit (budget.py)
    rounds: int = 2                  # filter rounds; round k's teachers are the best students of round k - 1
    tiny: bool = True
    size: int = 48                   # crop side (SlowOnly teacher top-1 on a 2-core Xeon: 32 0.60, 48 0.75, 64 0.82)
    scale: int = 60                  # frames resized to this before a random (train) or centre (test) crop
    teacher_epochs: int = 150
    student_epochs: int = 60
    epochs_by_model: Mapping[str, int] = field(default_factory=dict)   # where the budget shortened a model's students
    efficiency_epochs: int = 40
    batch_size: int = 8
    lr: float = 3e-3                 # 1e-2 tripled SlowOnly's seed spread
    web_share: float = 1.0           # web clips per target clip in every batch, images and videos pooled
    web_images: str = "2d"           # which students take web images (still pseudo-videos): 'all', '2d' (frame models
                                     # only; the others train on web videos, which helps SlowOnly most) or 'none'
    cross_fit: tuple[int, int] | None = (3, 1)   # (folds, splits): round 1's image teachers are TSNs trained on the
                                     # target + the crawl's own images (crawl labels), each scoring only the fold it
                                     # left out (precision at recall 0.8 on images 0.905 -> 0.960)
    cross_fit_epochs: int = 90
    cross_fit_share: float = 3.0     # web images per target clip in their batches
    image_views: str | None = "1x10"  # TenCrop for the image teachers
    keep: KeepRules = KeepRules(relative=0.7, match=False)  # p >= 0.7 x the class's median (recall 0.81, precision
                                     # 0.92 on round 1, where a top-1 match kept half the good items)
    shots: ShotRules | None = ShotRules()   # untrimmed videos cut into shots before their windows (curate filter --shots)
    relabel_min_p: float = 0.9       # the relabel rule graded on round 1 (0.8 relabelled 2 of 6 videos wrongly on world 1)
    relabel_students: bool = False   # + the video student on round 1's kept rows and relabels (Table 1's extra cell)
    dedup_threshold: float = 0.6     # pixel-thumbnail cosine: planted copies 0.60-0.99, distinct items <= 0.58
    untrimmed_over_s: float = 4.0    # longer web videos are cut into clips
    window_s: float = 2.0
    efficiency_model: str = "slowonly_r50"
    fractions: tuple[float, ...] = (0.25, 0.5, 1.0)   # with the target-only point: 4 per curve
    workers: int = field(default_factory=lambda: max(1, min(4, os.cpu_count() or 1)))
    device: str | None = None
    budget_s: float | None = None    # seconds the whole demo may take (curate.demo.budget); None: no limit

    def epochs_of(self, model: str) -> int:
        """The student epochs of one model."""
        return self.epochs_by_model.get(model, self.student_epochs)


def family() -> tuple[str, ...]:
    """Every bundled recognition config, TSN and SlowOnly first: the students of `demo --full`."""
    from trainers.config import bundled_recognizers

    names = bundled_recognizers()
    return ("tsn_r50", "slowonly_r50", *[n for n in names if n not in ("tsn_r50", "slowonly_r50")])


def parse_cross_fit(text: str) -> tuple[int, int] | None:
    """'2x3' -> (2 folds, 3 splits); 'none' -> None."""
    if text.strip().lower() == "none":
        return None
    folds, x, splits = text.lower().partition("x")
    if not (x and folds.strip().isdigit() and splits.strip().isdigit()) or int(folds) < 2 or int(splits) < 1:
        raise ValueError(f"{text!r} is not FOLDSxSPLITS with FOLDS >= 2 and SPLITS >= 1 (e.g. 2x3), or none")
    return int(folds), int(splits)


def loop_spec(full: bool, seeds: int | None, teacher_epochs: int | None, student_epochs: int | None, workers: int | None,
              device: str | None, students: str = "", rounds: int = 2, budget_min: float | None = None,
              web_images: str = "2d", cross_fit: str = "3x1", relabel_students: bool = False) -> LoopSpec:
    """`curate demo`'s options as a LoopSpec; a bad option is a ValueError naming it, raised before any work."""
    if seeds is not None and seeds < 1:
        raise ValueError("--seeds: give at least one seed")
    try:
        folds = parse_cross_fit(cross_fit)
    except ValueError as exc:
        raise ValueError(f"--cross-fit: {exc}") from exc
    knobs = {"seeds": tuple(range(seeds or 3)), "max_seeds": 0 if seeds else 8, "device": device, "rounds": rounds,
             "web_images": web_images, "cross_fit": folds, "relabel_students": relabel_students}
    extra = [m.strip() for m in students.split(",") if m.strip()]
    unknown = sorted(set(extra) - set(family()))
    if unknown:
        raise ValueError(f"--students: {unknown} are not bundled recognition configs; choose from {list(family())}")
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
    knobs["budget_s"] = budget_seconds(budget_min, full or student_epochs is not None)
    return LoopSpec(**knobs)
