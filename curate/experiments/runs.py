"""Training runs as jobs: train one config on its sources, score it on the target's splits, keep the result.

A job's folder holds run.json (what the run is: a hash of the config and of the exact rows it trains on), the
trainer's files (last.pt, metrics.jsonl, curve.png) and, once scored, result.json. A rerun reads finished jobs
back, resumes an interrupted one from its last.pt and refuses a folder that holds a different run (or, for a job
that says replace_stale, as the demo's do, empties it and trains again). `run_jobs`
runs many at once in worker processes of one torch thread each (tiny models train faster that way on few cores).
"""
from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import shutil
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.console import Console

from curate.core.files import write_text
from trainers.config import ConfigError, is_2d
from trainers.evaluate import evaluate_checkpoint
from trainers.inputs import data_overrides
from trainers.sources import Source
from trainers.train import make_config, train

AVERAGE_LAST = 0.25   # avg.pt: the weights averaged over the last quarter's epoch ends (bench/paired_spread.py)
WARMUP_SHARE = 0.125   # linear warm-up over this share of a run's epochs (MMAction2's SlowOnly: 34 of 256): it halved
                       # the SlowOnly students' seed spread on the demo worlds (docs/experiments.md)


@dataclass
class RunJob:
    """One training run: cfg on sources (the first is the target), scored on `splits` of `test` (a whole manifest
    with its root); the first split's top1 / mean_class_acc head the result, every split's metrics are kept."""

    run_dir: Path
    cfg: dict[str, Any]
    sources: list[Source]
    test: Source
    splits: tuple[str, ...] = ("test",)
    outputs: bool = False            # write predictions.parquet + confusion.png under run_dir/eval_<split>
    device: str | None = None
    replace_stale: bool = False      # a folder holding another run (other config or rows) is emptied, not refused


def run_key(cfg: Mapping[str, Any], sources: Sequence[Source]) -> str:
    """What a run is: its config, each source's options and the exact rows it trains on."""
    parts = [({k: v for k, v in s.describe().items() if k not in ("manifest", "root")},
              sorted(map(str, s.manifest["item_id"]))) for s in sources]
    blob = json.dumps({"cfg": cfg, "sources": parts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def write_json(path: Path, obj: Mapping[str, Any]) -> None:
    """Atomic JSON write (temporary file, then rename)."""
    write_text(path, json.dumps(obj, indent=1, default=str))


def finished(job: RunJob, key: str | None = None) -> dict[str, Any] | None:
    """The result row of a job whose folder holds it finished (None when not); a folder holding another run is an
    error, or emptied when the job says replace_stale."""
    run_dir = Path(job.run_dir)
    spec, done = run_dir / "run.json", run_dir / "result.json"
    if spec.exists() and json.loads(spec.read_text())["key"] != (key or run_key(job.cfg, job.sources)):
        if not job.replace_stale:
            raise ConfigError(f"{run_dir} holds a run with other settings or rows; use another output folder")
        shutil.rmtree(run_dir)
        return None
    if done.exists():
        row = json.loads(done.read_text())
        if (run_dir / row["checkpoint"]).exists():
            return row
    return None


def tested_checkpoint(run_dir: str | Path) -> Path:
    """The checkpoint a run is scored and used as: avg.pt (its last epochs averaged) when it has one, else last.pt."""
    avg = Path(run_dir) / "avg.pt"
    return avg if avg.exists() else Path(run_dir) / "last.pt"


def train_and_test(job: RunJob, console: Console | None = None, progress: bool = False) -> tuple[dict[str, Any], bool]:
    """Train + score one job (or read it back when finished): (result row, whether it was reused)."""
    run_dir, con = Path(job.run_dir), console or Console(quiet=True)
    key = run_key(job.cfg, job.sources)
    row = finished(job, key)
    if row is not None:
        return row, True
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(run_dir / "run.json", {"key": key, "sources": [s.describe() for s in job.sources]})
    for web in job.sources[1:]:   # which auxiliary rows this run added, one item_id a line
        (run_dir / f"{web.name}_items.txt").write_text("".join(f"{i}\n" for i in web.manifest["item_id"]))
    result = train(job.cfg, job.sources, run_dir, resume=(run_dir / "last.pt").exists(), device=job.device,
                   console=con, progress=progress)
    metrics, seconds, tested = {}, result.seconds, tested_checkpoint(run_dir)
    for split in job.splits:
        ev = evaluate_checkpoint(tested, job.test.manifest, split, data_root=job.test.root, device=job.device,
                                 out=run_dir / f"eval_{split}" if job.outputs else None)
        if not ev.metrics.get("n"):
            raise ConfigError(f"the target has no usable rows in split {split!r} to test on")
        metrics[split] = {k: v for k, v in ev.metrics.items() if isinstance(v, (int, float))}
        seconds += ev.metrics["seconds"]
    head = metrics[job.splits[0]]
    row = {"top1": float(head["top1"]), "mean_class_acc": float(head["mean_class_acc"]),
           "test_clips": int(head["n"]), "seconds": round(seconds, 3), "checkpoint": tested.name,
           "metrics": metrics}
    write_json(run_dir / "result.json", row)
    return row, False


class Later:
    """A call queued with WorkerPool.later: submitted behind the next run_jobs batch, or when its result is asked."""

    def __init__(self, pool: WorkerPool, fn: Callable[..., Any], args: tuple):
        self._pool, self._call, self._future = pool, (fn, args), None

    def submit(self) -> None:
        if self._future is None:
            fn, args = self._call
            self._future = self._pool.executor().submit(fn, *args)

    def result(self) -> Any:
        self.submit()
        return self._future.result()


class WorkerPool:
    """`workers` spawned processes of one torch thread each, started on first use and kept for every run_jobs call
    given this pool (a loop of several stages pays the start, ~6 s on 2 cores, once); a context manager."""

    def __init__(self, workers: int):
        self.workers, self._executor, self._later = workers, None, []

    @property
    def started(self) -> bool:
        return self._executor is not None

    def executor(self) -> ProcessPoolExecutor:
        if self._executor is None:
            self._executor = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                                 initializer=_one_thread, initargs=(os.getpid(),))
        return self._executor

    def later(self, fn: Callable[..., Any], *args: Any) -> Later:
        """Run fn(*args) (picklable) in a worker behind the next batch of jobs given to run_jobs, so it fills the
        cores that batch leaves idle without delaying it (the demo's BMN + detector beside the two teachers)."""
        call = Later(self, fn, args)
        self._later.append(call)
        return call

    def submit_later(self) -> None:
        """Submit the calls queued with later()."""
        for call in self._later:
            call.submit()
        self._later = []

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True, cancel_futures=True)
            self._executor = None

    def __enter__(self) -> WorkerPool:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _one_thread(driver: int) -> None:
    """A worker's set-up: an exit as soon as the driver (pid `driver`) is gone (killed: no pool shutdown reaches it,
    and a worker in the middle of a run would otherwise train on alone), and one torch thread."""
    import threading
    import time

    import torch

    def watch() -> None:
        while os.getppid() == driver:
            time.sleep(1.0)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="driver-watch").start()
    torch.set_num_threads(1)


def _job_in_worker(job: RunJob) -> tuple[dict[str, Any], bool]:
    return train_and_test(job)


def run_jobs(jobs: Sequence[RunJob], workers: int = 1,
             on_done: Callable[[int, dict[str, Any], bool], None] | None = None,
             pool: WorkerPool | None = None) -> list[dict[str, Any]]:
    """Every job's result row, in job order. workers > 1: that many spawned processes of one torch thread each
    (`pool`'s, whose size then stands for workers, else a pool of this call; none when every job is finished
    already); on_done(index, row, reused) is called as each finishes. The first failure is raised after the others
    stop."""
    workers = pool.workers if pool is not None else workers
    rows: list[dict[str, Any] | None] = [finished(job) for job in jobs]
    todo = [i for i, row in enumerate(rows) if row is None]
    if on_done:
        for i, row in enumerate(rows):
            if row is not None:
                on_done(i, row, True)
    if workers <= 1 or len(jobs) <= 1 or not todo:   # the layout does not depend on what is left: a resumed run
        for i in todo:                                  # computes as an uninterrupted one
            rows[i], reused = train_and_test(jobs[i])
            if on_done:
                on_done(i, rows[i], reused)
        return rows  # type: ignore[return-value]
    own = WorkerPool(min(workers, len(todo))) if pool is None else None
    futures = {(pool or own).executor().submit(_job_in_worker, jobs[i]): i for i in todo}
    if pool is not None:
        pool.submit_later()
    try:
        for fut in as_completed(futures):
            i = futures[fut]
            rows[i], reused = fut.result()
            if on_done:
                on_done(i, rows[i], reused)
    except BaseException:
        for fut in futures:
            fut.cancel()
        raise
    finally:
        if own is not None:
            own.close()
    return rows  # type: ignore[return-value]


def run_config(model: str | Path, tiny: bool, epochs: int, batch_size: int, lr: float, size: int, seed: int,
                schedule: Mapping[str, Any] | None, data: Mapping[str, Any] | None) -> dict[str, Any]:
    """A bundled model's config for one demo run (teacher, student or curve point): AdamW warmed up over the
    first WARMUP_SHARE of the run, no flips (left/right is a class here), `size` crops of frames resized to `size`
    (unless data says otherwise), frame interval 2 for 3D models."""
    cfg = make_config(model, tiny=tiny, overrides={"schedule": {
        "epochs": epochs, "batch_size": batch_size, "lr": lr, "optimizer": "adamw", "grad_clip": None, "seed": seed,
        "warmup_epochs": epochs * WARMUP_SHARE, "average_last": AVERAGE_LAST, **(schedule or {})}})
    knobs = {"size": size, "scale": size, "flip": 0.0, "frame_interval": None if is_2d(cfg["model"]) else 2,
             **(data or {})}
    cfg["data"] = {**cfg.get("data", {}), **data_overrides(cfg["model"], **knobs)}
    return cfg
