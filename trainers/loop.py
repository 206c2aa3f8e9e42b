"""The one training loop, for every task (recognition, temporal localization, spatio-temporal detection): the task
gives the model, its batches, its loss and its validation; the loop owns the schedule (per-iteration learning rate,
gradient clipping), bf16 AMP on CUDA, DDP under torchrun, checkpoints, exact resume, metrics.jsonl and curve.png.

`fit(task, schedule, out)` writes under out/:
  last.pt        model + training state (optimizer, position in the epoch, every rank's RNG state): `resume=True`
                 continues from it to the same final weights as an uninterrupted run (same seed, CPU)
  best.pt        the best model on validation so far (by task.best_metric), no training state
  avg.pt         with schedule.average_last: the weights averaged over the last epochs' ends
  metrics.jsonl  one JSON object per line: train (loss per part, lr, clips/s), val, checkpoint, resume events
  curve.png      the learning curve
  config.yaml    task.config
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from torch import nn

from trainers import distributed as ddp
from trainers.checkpoint import read_checkpoint, save_checkpoint
from trainers.config import ConfigError
from trainers.evaluate import autocast
from trainers.plots import plot_curve
from trainers.schedule import Schedule, make_optimizer, set_lr

PLOT_EVERY_S = 30.0   # curve.png is redrawn at the end of an epoch at most this often, and after the last one


@dataclass
class Task:
    """What a task gives the loop. batches(epoch, step) yields this rank's batches of `epoch` from iteration `step`
    on (the same ones whether or not the run was resumed there); loss(model, batch, global_step) returns the loss to
    backpropagate and its parts for the log (part name -> value, the same names on every rank); evaluate(model)
    runs on rank 0 only, under eval mode and no_grad."""

    model: nn.Module
    steps_per_epoch: int
    batches: Callable[[int, int], Iterable[Any]]
    loss: Callable[[nn.Module, Any, int], tuple[torch.Tensor, Mapping[str, float]]]
    parts: Sequence[str]                                   # the names loss() may report, in log order
    meta: Mapping[str, Any]                                # checkpoint metadata
    fingerprint: str                                       # what must not change across a resume
    config: Mapping[str, Any]                              # written to config.yaml
    evaluate: Callable[[nn.Module], dict[str, float]] | None = None
    best_metric: str = "top1"
    count: Callable[[Any], int] = len                      # clips in a batch (clips/s in the log)
    notes: Sequence[Mapping[str, Any]] = ()                # metrics.jsonl entries of a run's start (not on resume)
    train_mode: Callable[[nn.Module], None] | None = None  # after model.train() (e.g. frozen BatchNorm back to eval)
    scale: float = 1.0                                     # loss() is this many times the logged loss (DDP sums)


@dataclass
class FitResult:
    out: Path
    last: Path
    best: Path | None
    metrics: dict[str, float]          # validation metrics of the best epoch (empty without validation)
    epochs: int
    seconds: float
    history: list[dict] = field(default_factory=list)   # metrics.jsonl entries (rank 0)


class MetricsLog:
    """metrics.jsonl; on resume, lines past the resumed iteration are dropped (they are about to be redone)."""

    def __init__(self, path: Path, resume_step: int | None, enabled: bool = True):
        self.path, self.enabled = path, enabled
        if not enabled:
            return
        if resume_step is not None and path.exists():
            keep = [ln for ln in path.read_text().splitlines() if ln.strip()
                    and json.loads(ln).get("global_step", 0) <= resume_step]
            path.write_text("".join(ln + "\n" for ln in keep))
        elif resume_step is None:
            path.write_text("")

    def write(self, **entry: Any) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as fh:
            fh.write(json.dumps({k: (round(v, 6) if isinstance(v, float) else v) for k, v in entry.items()}) + "\n")

    def entries(self) -> list[dict]:
        return [json.loads(ln) for ln in self.path.read_text().splitlines() if ln.strip()] if self.enabled else []


def share(idx: np.ndarray, rank: ddp.Rank) -> tuple[np.ndarray, float]:
    """This rank's strided share of a global batch's indices and the factor that turns the mean loss over the share
    into its part of the global batch's mean (DDP then averages the gradients over ranks); a rank left without any
    index takes the first one with factor 0, so every rank steps together."""
    part = idx[rank.rank::rank.world]
    return (part, len(part) * rank.world / len(idx)) if len(part) else (idx[:1], 0.0)


def run(build: Callable[[ddp.Rank, torch.device], Task], s: Schedule, out: str | Path, *,
        device: str | torch.device | None = None, resume: bool = False, progress: bool = True) -> FitResult:
    """fit(build(rank, device)) in a trainers.distributed session (every rank calls this under torchrun)."""
    with ddp.session(device) as (rank, dev):
        return fit(build(rank, dev), s, out, rank=rank, device=dev, resume=resume, progress=progress)


def fingerprint(s: Schedule, **what: Any) -> str:
    """A short hash of what must not change across a resume: `what` (model, data, ...) and the schedule but for the
    number of epochs and the logging knobs."""
    sched = {k: v for k, v in s.as_dict().items()
             if k not in ("epochs", "eval_every", "log_every", "save_every", "workers", "sync_bn")}
    blob = json.dumps({**what, "schedule": sched}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()[:16]


def running_average(avg: dict[str, Any], state: Mapping[str, torch.Tensor]) -> dict[str, Any]:
    """avg ({'n', 'state'}) with one more state dict in it: float tensors averaged, the others (counters) the last."""
    n = avg["n"] + 1
    if avg["state"] is None:
        return {"n": 1, "state": {k: v.detach().clone() for k, v in state.items()}}
    out = {k: (a + (state[k].detach() - a) / n if a.is_floating_point() else state[k].detach().clone())
           for k, a in avg["state"].items()}
    return {"n": n, "state": out}


def _rng_state() -> dict[str, Any]:
    state = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def _set_rng_state(state: Mapping[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def fit(task: Task, s: Schedule, out: str | Path, *, rank: ddp.Rank, device: torch.device, resume: bool = False,
        console: Console | None = None, progress: bool = True) -> FitResult:
    """Train task.model for s.epochs; rank and device from trainers.distributed.setup (every rank calls this)."""
    t_start = time.perf_counter()
    out, con = Path(out), console or Console(quiet=not progress)
    progress = progress and rank.main
    last_path, best_path = out / "last.pt", out / "best.pt"
    if last_path.exists() and not resume:
        raise ConfigError(f"{out} already holds a run (last.pt); pass resume=True / --resume to continue it, "
                          "or choose another output folder")
    amp = device.type == "cuda" if s.amp is None else bool(s.amp)
    model = task.model.to(device)
    optimizer = make_optimizer(model, s)
    spe = task.steps_per_epoch
    epoch, step, best = 0, 0, {"value": None, "epoch": None, "metrics": {}}
    avg_from = s.epochs - max(1, round(s.epochs * s.average_last)) if s.average_last > 0 else None
    avg: dict[str, Any] = {"n": 0, "state": None}
    resume_step, note = None, {}
    if rank.active:  # dropout and other randomness in the step differ per rank (the data does not: keys are seeded)
        torch.manual_seed(s.seed + 7919 * (rank.rank + 1))
    if resume and last_path.exists():
        payload = read_checkpoint(last_path)
        st = payload["train"]
        if st is None or st.get("fingerprint") != task.fingerprint:
            raise ConfigError(f"{last_path} was written by a run with another model, data, schedule or sources; "
                              "use a new output folder")
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(st["optimizer"])
        epoch, step, best = int(st["epoch"]), int(st["step"]), dict(st["best"])
        avg = st.get("avg") or avg
        states = st.get("rng_ranks") or [st["rng"]]
        _set_rng_state(states[rank.rank] if len(states) == rank.world else states[0])
        if len(states) != rank.world:
            note = {"note": f"world size {len(states)} -> {rank.world}: the data is the same, random masks differ"}
        resume_step = epoch * spe + step
    net = ddp.wrap(model, rank, device, s.sync_bn)
    out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out / "metrics.jsonl", resume_step, enabled=rank.main)
    if resume_step is not None:
        log.write(event="resume", epoch=epoch, step=step, global_step=resume_step, world=rank.world, **note)
    else:
        for entry in task.notes:
            log.write(**entry)
    if rank.main:
        (out / "config.yaml").write_text(yaml.safe_dump(dict(task.config), sort_keys=False))

    def checkpoint(path: Path, with_state: bool, metrics: Mapping[str, float] | None = None) -> None:
        """Training-state checkpoints are collective (every rank's RNG state goes in); rank 0 writes."""
        st = None
        if with_state:
            rngs = ddp.gather(_rng_state(), rank)
            st = {"epoch": epoch, "step": step, "optimizer": optimizer.state_dict(), "rng": rngs[0],
                  "best": best, "fingerprint": task.fingerprint, **({"rng_ranks": rngs} if rank.active else {}),
                  **({"avg": avg} if avg_from is not None else {})}
        if rank.main:
            save_checkpoint(path, model, {**task.meta, "epoch": epoch, "step": step,
                                          "metrics": dict(metrics or best["metrics"])}, st)

    running: dict[str, list[float]] = {}
    plotted = -PLOT_EVERY_S
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TimeRemainingColumn(), TextColumn("{task.fields[info]}"), console=con, disable=not progress,
                  transient=False) as bar:
        row = bar.add_task("train", total=s.epochs * spe, completed=min(epoch * spe + step, s.epochs * spe), info="")
        while epoch < s.epochs:
            net.train()
            if task.train_mode is not None:
                task.train_mode(model)
            t0, items = time.perf_counter(), 0
            for batch in task.batches(epoch, step):
                g_step = epoch * spe + step
                lr = set_lr(optimizer, s, g_step, spe)
                with autocast(device, amp):
                    loss, parts = task.loss(net, batch, g_step)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                if s.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
                optimizer.step()
                step += 1
                k_parts = len(task.parts)
                values = ([float(loss.detach())] + [float(parts.get(k, 0.0)) for k in task.parts]
                          + [float(k in parts) for k in task.parts] + [float(task.count(batch))])
                if rank.active:   # the global batch's loss and parts: every rank's share summed
                    values = ddp.all_sum(values, rank, device)
                logged, present, n = [v / task.scale for v in values[:1 + k_parts]], values[1 + k_parts:-1], values[-1]
                items += int(n)
                for k, v, there in zip(task.parts, logged[1:], present):
                    if there:
                        running.setdefault(k, []).append(v)
                if step % s.log_every == 0 or step == spe:
                    elapsed = time.perf_counter() - t0
                    log.write(event="train", epoch=epoch, step=step, global_step=g_step + 1, lr=lr, loss=logged[0],
                              **{f"loss/{k}": float(np.mean(v)) for k, v in running.items()},
                              clips_per_s=items / max(elapsed, 1e-9))
                    running = {}
                bar.update(row, advance=1, info=f"epoch {epoch + 1}/{s.epochs} loss {logged[0]:.3f} lr {lr:.2e}")
                if s.save_every and step % s.save_every == 0 and step < spe:
                    checkpoint(last_path, True)
                    log.write(event="checkpoint", epoch=epoch, step=step, global_step=g_step + 1)
            epoch, step = epoch + 1, 0
            if avg_from is not None and epoch > avg_from:
                avg = running_average(avg, model.state_dict())
            if task.evaluate is not None and rank.main and (epoch % s.eval_every == 0 or epoch == s.epochs):
                model.eval()
                with torch.no_grad():
                    metrics = task.evaluate(model)
                log.write(event="val", epoch=epoch, global_step=epoch * spe, **metrics)
                value = metrics.get(task.best_metric)
                if value is not None and np.isfinite(value) and (best["value"] is None or value > best["value"]):
                    best = {"value": float(value), "epoch": epoch, "metrics": metrics}
                    checkpoint(best_path, False, metrics)
                con.log(f"epoch {epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                                                       if isinstance(v, float)))
            checkpoint(last_path, True)
            log.write(event="checkpoint", epoch=epoch, step=0, global_step=epoch * spe)
            if rank.main and (epoch == s.epochs or time.perf_counter() - plotted > PLOT_EVERY_S):
                plot_curve(log.entries(), out / "curve.png")
                plotted = time.perf_counter()
    if avg_from is not None and rank.main and avg["state"] is not None:
        averaged = copy.deepcopy(model)
        averaged.load_state_dict(avg["state"])
        save_checkpoint(out / "avg.pt", averaged, {**task.meta, "epoch": epoch, "step": 0, "metrics": {},
                                                   "averaged_epochs": avg["n"]}, None)
    ddp.barrier(rank)   # every rank returns after rank 0's files are written
    return FitResult(out, last_path, best_path if best_path.exists() else None, dict(best["metrics"]), epoch,
                     time.perf_counter() - t_start, log.entries())
