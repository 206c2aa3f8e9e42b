"""The loop for the other two tasks (temporal localization, spatio-temporal detection): the same `schedule:`
section, optimizer, per-iteration learning rate, gradient clipping, metrics.jsonl, curve.png and self-describing
checkpoints as `trainers.train`, over task-specific batches and losses.

`fit(...)` writes under out/: last.pt (with optimizer state and epoch: `resume=True` continues at the next
epoch), best.pt (best validation value of `best_metric`), metrics.jsonl, curve.png, config.yaml.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from torch import nn

from trainers.checkpoint import read_checkpoint, save_checkpoint
from trainers.config import ConfigError
from trainers.plots import plot_curve
from trainers.schedule import Schedule, make_optimizer, set_lr
from trainers.train import MetricsLog


@dataclass
class FitResult:
    out: Path
    last: Path
    best: Path | None
    metrics: dict[str, float]          # validation metrics of the best epoch
    history: list[dict]                # metrics.jsonl entries
    seconds: float


def fit(model: nn.Module, cfg: Mapping[str, Any], batches: Callable[[int], Iterable[Any]], steps_per_epoch: int,
        loss_fn: Callable[[nn.Module, Any], Mapping[str, torch.Tensor]], out: str | Path, meta: Mapping[str, Any],
        evaluate: Callable[[nn.Module], dict[str, float]] | None = None, best_metric: str = "loss",
        resume: bool = False, device: torch.device | str = "cpu", console: Console | None = None,
        progress: bool = True) -> FitResult:
    """Train `model` for schedule.epochs over `batches(epoch)`; loss_fn returns {'loss': total, part: value, ...}.

    evaluate(model) -> metrics after every eval_every epochs; best.pt keeps the highest `best_metric`.
    """
    t_start = time.perf_counter()
    s = Schedule.from_config(cfg.get("schedule"))
    out, con = Path(out), console or Console(quiet=not progress)
    last_path, best_path = out / "last.pt", out / "best.pt"
    if last_path.exists() and not resume:
        raise ConfigError(f"{out} already holds a run (last.pt); resume it or choose another output folder")
    device = torch.device(device)
    torch.manual_seed(s.seed)
    model.to(device)
    optimizer = make_optimizer(model, s)
    epoch, best = 0, {"value": None, "metrics": {}}
    if resume and last_path.exists():
        payload = read_checkpoint(last_path)
        model.load_state_dict(payload["state_dict"])
        optimizer.load_state_dict(payload["train"]["optimizer"])
        epoch, best = int(payload["train"]["epoch"]), dict(payload["train"]["best"])
        torch.set_rng_state(payload["train"]["rng"])
    out.mkdir(parents=True, exist_ok=True)
    log = MetricsLog(out / "metrics.jsonl", epoch * steps_per_epoch if epoch else None)
    (out / "config.yaml").write_text(yaml.safe_dump({**dict(cfg), "schedule": s.as_dict()}, sort_keys=False))
    full_meta = {**dict(meta), "model": cfg["model"], "schedule": s.as_dict()}

    def checkpoint(path: Path, with_state: bool, metrics: Mapping[str, float]) -> None:
        st = {"epoch": epoch, "optimizer": optimizer.state_dict(), "best": best,
              "rng": torch.get_rng_state()} if with_state else None
        save_checkpoint(path, model, {**full_meta, "epoch": epoch, "metrics": dict(metrics)}, st)

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  TextColumn("{task.fields[info]}"), console=con, disable=not progress) as bar:
        task = bar.add_task("train", total=s.epochs * steps_per_epoch, completed=epoch * steps_per_epoch, info="")
        while epoch < s.epochs:
            model.train()
            parts: dict[str, list[float]] = {}
            t0 = time.perf_counter()
            for step, batch in enumerate(batches(epoch)):
                g_step = epoch * steps_per_epoch + step
                lr = set_lr(optimizer, s, g_step, steps_per_epoch)
                losses = loss_fn(model, batch)
                optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                if s.grad_clip:
                    torch.nn.utils.clip_grad_norm_(model.parameters(), s.grad_clip)
                optimizer.step()
                for k, v in losses.items():
                    parts.setdefault(k, []).append(float(v.detach()))
                if (step + 1) % s.log_every == 0 or step + 1 == steps_per_epoch:
                    log.write(event="train", epoch=epoch, step=step + 1, global_step=g_step + 1, lr=lr,
                              **{f"loss/{k}": float(np.mean(v)) for k, v in parts.items()},
                              seconds=time.perf_counter() - t0)
                    parts = {}
                loss = float(losses["loss"].detach())
                bar.update(task, advance=1, info=f"epoch {epoch + 1}/{s.epochs} loss {loss:.3f}")
            epoch += 1
            metrics: dict[str, float] = {}
            if evaluate is not None and (epoch % s.eval_every == 0 or epoch == s.epochs):
                model.eval()
                with torch.no_grad():
                    metrics = evaluate(model)
                model.train()
                log.write(event="val", epoch=epoch, global_step=epoch * steps_per_epoch, **metrics)
                value = metrics.get(best_metric)
                if value is not None and np.isfinite(value) and (best["value"] is None or value > best["value"]):
                    best = {"value": float(value), "epoch": epoch, "metrics": metrics}
                    checkpoint(best_path, False, metrics)
                con.log(f"epoch {epoch}: " + ", ".join(f"{k} {v:.3f}" for k, v in metrics.items()
                                                       if isinstance(v, float)))
            checkpoint(last_path, True, metrics or best["metrics"])
    plot_curve([e for e in log.entries() if e.get("event") != "val"], out / "curve.png")  # losses; val in jsonl
    return FitResult(out, last_path, best_path if best_path.exists() else None, dict(best["metrics"]),
                     log.entries(), time.perf_counter() - t_start)
