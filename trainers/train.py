"""Recognition training: sources -> mixed batches -> the summed weighted loss, one optimizer step per iteration
(the loop itself is trainers.loop.fit).

`train(cfg, sources, out)` writes under out/:
  last.pt        model + training state (optimizer, position in the epoch, RNG states): `resume=True` continues
                 from it to the same final weights as an uninterrupted run (same seed, CPU)
  best.pt        the best model on the validation split so far (by schedule.best_metric), no training state
  metrics.jsonl  one JSON object per line: train (loss per source, lr, clips/s), val, checkpoint, resume events
  curve.png      the learning curve
  config.yaml    the resolved config and sources
Both checkpoints load with `trainers.checkpoint.load_checkpoint` (a teacher for `curate filter`).
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from rich.console import Console
from torch import nn

from curate.core.manifest import media_paths, split_counts, usable_rows
from trainers import distributed as ddp
from trainers.checkpoint import read_checkpoint
from trainers.config import ConfigError, build_model
from trainers.data import ClipDataset, Group, LabelSpace, make_loader
from trainers.evaluate import eval_dataset, predict, scores_metrics
from trainers.inputs import build_pipelines, input_spec, resolve_data, streams
from trainers.loop import FitResult, Task, fingerprint, fit
from trainers.schedule import Schedule
from trainers.sources import MixedBatchSampler, RankShard, SequentialBatchSampler, Source, Stream, load_source
from trainers.transfer import freeze_backbone, init_from_checkpoint, keep_frozen_eval

CONFIG_KEYS = ("model", "data", "schedule")
DEFAULT_CACHE_BYTES = 512 << 20


@dataclass
class TrainResult(FitResult):
    labels: LabelSpace | None = None
    skipped: dict[str, dict[str, int]] = field(default_factory=dict)   # per source: rows skipped by status
    rows: dict[str, int] = field(default_factory=dict)                 # per source: rows used


def make_config(model: str | Path, tiny: bool = False, sets: Sequence[str] = (),
                overrides: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """A model config (bundled name or YAML path, `tiny:` merged when asked) with `section.key=value` assignments
    (values parsed as YAML) and a nested overrides mapping applied on top, in that order."""
    from trainers.config import assign, load_model_config, merge

    return merge(assign(load_model_config(model, tiny=tiny), sets), overrides or {})


def _build_source(src: Source, space: LabelSpace, pipes, data: Mapping[str, Any], cache_bytes: int
                  ) -> tuple[ClipDataset, dict[str, int]]:
    df, path = load_source(src)
    rows, skipped = usable_rows(df, src.split)
    if rows.empty:
        where = f"{path}" if path is not None else "its rows"
        option = "--split / --val-split" if src.name in ("target", "val") else f"the split= key of --source {src.name}"
        raise ConfigError(f"source {src.name!r}: no usable rows (status ok, with a file) in split {src.split!r} of "
                          f"{where}; its splits: {split_counts(df)}; choose one with {option}"
                          + ("" if src.name != "target" or not (df["split"] == "web").any() else
                             ", or merge it with a target first (curate merge TARGET WEB -o OMNI)"))
    labels = space.index(rows)
    if (labels < 0).any():
        skipped["no class"] = int((labels < 0).sum())
        rows, labels = rows[labels >= 0].reset_index(drop=True), labels[labels >= 0]
    files = rows.assign(path=media_paths(rows, path, src.root))
    first = next(iter(streams(data).values()))
    ds = ClipDataset(files, ".", pipes, labels, pseudo=src.pseudo or first["pseudo"],
                     pseudo_strength=float(first["pseudo_strength"]), cache_bytes=cache_bytes)
    return ds, skipped


def _loss(model, groups: list[Group], weights: Sequence[float], s: Schedule, num_classes: int, mix_src: int | None,
          lam: float, device: torch.device, denom: Mapping[int, int] | None = None
          ) -> tuple[torch.Tensor, dict[int, float]]:
    """sum_s weight_s * mean CE over source s; groups of equal input shape share one forward pass. denom: the
    clips per source of the whole (global) batch when these groups are one rank's part of it."""
    groups = [g.to(device) for g in groups]
    targets = [F.one_hot(g.y, num_classes).float() for g in groups]
    if mix_src is not None:  # cross-dataset mixup: first k target clips blended with k clips of mix_src
        t = next((i for i, g in enumerate(groups) if g.source == 0), None)
        a = next((i for i, g in enumerate(groups) if g.source == mix_src and t is not None
                  and _same_shape(g.x, groups[t].x)), None)
        if t is not None and a is not None:
            k = min(len(groups[t]), len(groups[a]))

            def blend(u: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
                return torch.cat([lam * u[:k] + (1 - lam) * v[:k], u[k:]])

            x = groups[t].x
            x = {n: blend(x[n], groups[a].x[n]) for n in x} if isinstance(x, dict) else blend(x, groups[a].x)
            groups[t] = Group(0, x, groups[t].y)
            targets[t] = torch.cat([lam * targets[t][:k] + (1 - lam) * targets[a][:k], targets[t][k:]])
    sums: dict[int, torch.Tensor] = {}
    counts: dict[int, int] = {}
    for members in _by_shape(groups):
        x = _cat([groups[i].x for i in members])
        n = sum(len(groups[i]) for i in members)
        lone = not isinstance(x, dict) and x.shape[0] * x.shape[1] * x.shape[3] == 1
        # BatchNorm needs two values per channel: a lone frame is doubled
        logits = model(x.expand(2, *x.shape[1:]) if lone else x)[:1 if lone else None]
        logits = logits.float().reshape(n, -1, num_classes).mean(dim=1)
        ce = F.cross_entropy(logits, torch.cat([targets[i] for i in members]), reduction="none",
                             label_smoothing=s.label_smoothing)
        lo = 0
        for i in members:
            src, m = groups[i].source, len(groups[i])
            sums[src] = sums.get(src, 0) + ce[lo:lo + m].sum()
            counts[src] = counts.get(src, 0) + m
            lo += m
    per_source = {src: sums[src] / (denom or counts)[src] for src in sums}
    total = sum(weights[src] * v for src, v in per_source.items())
    return total, {src: float(v.detach()) for src, v in per_source.items()}


def _same_shape(a, b) -> bool:
    if isinstance(a, dict):
        return all(a[k].shape[1:] == b[k].shape[1:] for k in a)
    return a.shape[1:] == b.shape[1:]


def _by_shape(groups: list[Group]) -> list[list[int]]:
    out: dict[Any, list[int]] = {}
    for i, g in enumerate(groups):
        key = tuple((k, tuple(v.shape[1:])) for k, v in sorted(g.x.items())) if isinstance(g.x, dict) \
            else tuple(g.x.shape[1:])
        out.setdefault(key, []).append(i)
    return list(out.values())


def _cat(xs: list):
    if isinstance(xs[0], dict):
        return {k: torch.cat([x[k] for x in xs]) for k in xs[0]}
    return torch.cat(xs) if len(xs) > 1 else xs[0]


def train(cfg: Mapping[str, Any], sources: Sequence[Source], out: str | Path, *, val: Source | None = None,
          resume: bool = False, classes: list[str] | None = None, init: str | Path | None = None,
          device: str | torch.device | None = None,
          cache_bytes: int = DEFAULT_CACHE_BYTES, console: Console | None = None, progress: bool = True
          ) -> TrainResult:
    """Train cfg's model on sources (the first is the target, the rest auxiliary; see trainers.sources).

    val: the validation rows (default: the target manifest's 'val' split when it has usable rows).
    resume: continue the run in out/ from last.pt (a finished run returns at once); without it an existing run in
    out/ is an error rather than silently overwritten.
    Under torchrun every rank calls this with the same arguments (trainers.distributed): schedule.batch_size stays
    the global batch, and the run gives the loss curve of one process.
    init: a checkpoint to start from (transfer to this label set: backbone loaded, head re-initialised; see
    trainers.transfer), with schedule.freeze_backbone / backbone_lr_mult.
    """
    with ddp.session(device) as (rank, device):
        return _train(cfg, sources, Path(out), val, resume, classes, init, device, rank, cache_bytes,
                      console or Console(quiet=not progress), progress and rank.main)


def _train(cfg: Mapping[str, Any], sources: Sequence[Source], out: Path, val: Source | None, resume: bool,
           classes: list[str] | None, init: str | Path | None, device: torch.device, rank: ddp.Rank, cache_bytes: int,
           con: Console, progress: bool) -> TrainResult:
    unknown = sorted(set(cfg) - set(CONFIG_KEYS))
    if unknown:
        raise ConfigError(f"config: unknown top-level key(s) {unknown}; valid keys: {list(CONFIG_KEYS)}")
    s = Schedule.from_config(cfg.get("schedule"))
    data = resolve_data(cfg)
    init_sha = read_checkpoint(init, verify=False)["meta"]["sha256"] if init else None
    key = fingerprint(s, model=cfg["model"], data=cfg.get("data"), sources=[src.describe() for src in sources],
                      init=init_sha)
    if (out / "last.pt").exists() and not resume:
        raise ConfigError(f"{out} already holds a run (last.pt); pass resume=True / --resume to continue it, "
                          "or choose another output folder")

    target_df, _ = load_source(sources[0])
    space = LabelSpace.from_manifest(target_df, s.level, classes)
    pipes = build_pipelines(data, train=True)
    datasets, skipped = [], {}
    for src in sources:
        ds, skipped[src.name] = _build_source(src, space, pipes, data, cache_bytes)
        datasets.append(ds)
    streams_ = [Stream(len(ds), ds.labels, s.batch_size if i == 0 else src.batch_size(s.batch_size),
                       src.power) for i, (ds, src) in enumerate(zip(datasets, sources))]
    sampler = MixedBatchSampler(streams_, s.seed)
    shard = RankShard(sampler, rank.rank, rank.world) if rank.active else None
    loader = make_loader(datasets, shard or sampler, s.workers, s.seed)
    weights = [float(src.weight) for src in sources]
    mix_src = None
    if s.mixup_alpha > 0 and len(sources) > 1:
        names = [src.name for src in sources]
        if s.mixup_source and s.mixup_source not in names[1:]:
            raise ConfigError(f"schedule.mixup_source: {s.mixup_source!r} is not one of {names[1:]}")
        mix_src = names.index(s.mixup_source) if s.mixup_source else 1

    if val is None and "split" in target_df and (usable_rows(target_df, "val")[0].shape[0] > 0):
        val = Source("val", sources[0].manifest, split="val", root=sources[0].root)
    evaluate = None
    if val is not None and rank.main:
        vdf, vpath = load_source(val)
        vrows, skipped["val"] = usable_rows(vdf, val.split)
        vds = eval_dataset(vrows.assign(path=media_paths(vrows, vpath, val.root)), ".", data, space,
                           cache_bytes=cache_bytes)
        val_loader = make_loader([vds], SequentialBatchSampler(len(vds), s.batch_size), s.workers, s.seed)
        amp = device.type == "cuda" if s.amp is None else bool(s.amp)

        def evaluate(model: nn.Module) -> dict[str, float]:
            scores, labels = predict(model, val_loader, device, amp)
            return scores_metrics(scores, labels, space, vrows)

    torch.manual_seed(s.seed)
    model = build_model(cfg["model"], num_classes=space.num_classes)
    init_report = init_from_checkpoint(model, init, space.names) if init else None
    if s.freeze_backbone:
        freeze_backbone(model)
    meta = {"model": cfg["model"], "classes": list(space.names), "labels": space.to_dict(), "data": data,
            "input": input_spec(data), "schedule": s.as_dict(), "sources": [src.describe() for src in sources],
            "fingerprint": key, "init": init_report.as_dict() if init_report else None}
    if init_report and rank.main and (not resume or not (out / "last.pt").exists()):
        for line in init_report.lines():
            con.print(line)
    spe = sampler.steps_per_epoch

    def batches(epoch: int, step: int):
        sampler.set_epoch(epoch, step)
        return loader

    def loss(net: nn.Module, groups: list[Group], g_step: int) -> tuple[torch.Tensor, dict[str, float]]:
        lam = float(np.random.default_rng([s.seed, 7, g_step]).beta(s.mixup_alpha, s.mixup_alpha)) \
            if mix_src is not None else 1.0
        counts, padding = (shard.batch(g_step // spe, g_step % spe)[1:] if shard else (None, False))
        total, parts = _loss(net, groups, weights, s, space.num_classes, mix_src, lam, device, counts)
        if padding:
            total, parts = total * 0, {}
        # DDP averages gradients over ranks while each rank's loss is its share of the global batch's: scale up
        return total * rank.world, {sources[k].name: v * rank.world for k, v in parts.items()}

    task = Task(model, spe, batches, loss, [src.name for src in sources], meta, key,
                {**dict(cfg), "data": data, "schedule": s.as_dict(), "world": rank.world, "sources": meta["sources"]},
                evaluate, s.best_metric, count=lambda groups: sum(len(g) for g in groups),
                train_mode=keep_frozen_eval if s.freeze_backbone else None,
                scale=float(rank.world),
                notes=[{"event": "init", "global_step": 0, **init_report.as_dict()}] if init_report else ())
    res = fit(task, s, out, rank=rank, device=device, resume=resume, console=con, progress=progress)
    return TrainResult(**vars(res), labels=space, skipped=skipped,
                       rows={src.name: len(ds) for src, ds in zip(sources, datasets)})
