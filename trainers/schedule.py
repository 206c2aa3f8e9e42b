"""The `schedule:` section: optimizer (SGD / AdamW), per-iteration learning rate (linear warm-up, then cosine,
step or constant), and the loop's other knobs. Unknown keys fail with the list of valid ones."""
from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any

import torch
from torch import nn

from trainers.config import ConfigError

OPTIMIZERS = ("sgd", "adamw")
POLICIES = ("cosine", "step", "constant")


@dataclass
class Schedule:
    epochs: int = 10
    batch_size: int = 8                 # target clips per iteration (auxiliary sources add theirs)
    optimizer: str = "sgd"
    lr: float = 0.01
    momentum: float = 0.9
    nesterov: bool = False
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    no_decay_keys: tuple[str, ...] = ("pos_embed", "cls_token", "time_embed")  # no weight decay (TimeSformer)
    policy: str = "cosine"
    milestones: tuple[float, ...] = ()  # epochs where the step policy multiplies the lr by gamma
    gamma: float = 0.1
    min_lr: float = 0.0                 # cosine floor
    warmup_epochs: float = 0.0          # linear from warmup_factor x lr to lr
    warmup_factor: float = 0.1
    grad_clip: float | None = 40.0      # max total gradient norm (None: off)
    label_smoothing: float = 0.0
    mixup_alpha: float = 0.0            # cross-dataset mixup between the target and mixup_source (0: off)
    mixup_source: str | None = None     # auxiliary source name (default: the first auxiliary source)
    amp: bool | None = None             # bf16 autocast; None = on for CUDA, off on CPU
    eval_every: int = 1                 # epochs between evaluations on the validation split
    save_every: int = 0                 # iterations between mid-epoch resume checkpoints (0: epoch ends only)
    log_every: int = 10                 # iterations between metric log lines
    workers: int = 0                    # DataLoader worker processes
    sync_bn: bool = True                # under torchrun on GPU: BatchNorm statistics over the global batch
    seed: int = 0
    level: str = "label"                # label, element, set or event: which hierarchy level is the class
    best_metric: str = "top1"           # top1, top5 or mean_class_acc: what best.pt keeps the best of
    average_last: float = 0.0           # > 0: avg.pt, the weights (and BN statistics) averaged over the epoch ends of
                                        # this last share of the run (0.25: the last quarter)
    freeze_backbone: bool = False       # transfer: train the head only (backbone norms keep their statistics)
    backbone_lr_mult: float = 1.0       # transfer: backbone lr = lr x this (e.g. 0.1 when fine-tuning)

    @classmethod
    def from_config(cls, cfg: Mapping[str, Any] | None) -> "Schedule":
        cfg = dict(cfg or {})
        valid = [f.name for f in fields(cls)]
        unknown = sorted(set(cfg) - set(valid))
        if unknown:
            raise ConfigError(f"schedule: unknown key(s) {unknown}; valid keys: {valid}")
        for key in ("betas", "no_decay_keys", "milestones"):
            if key in cfg and cfg[key] is not None:
                cfg[key] = tuple(cfg[key])
        s = cls(**cfg)
        for name, value, choices in (("optimizer", s.optimizer, OPTIMIZERS), ("policy", s.policy, POLICIES),
                                     ("best_metric", s.best_metric, ("top1", "top5", "mean_class_acc"))):
            if value not in choices:
                raise ConfigError(f"schedule.{name}: {value!r} is not one of {list(choices)}")
        if s.epochs < 1 or s.batch_size < 1:
            raise ConfigError(f"schedule: epochs and batch_size must be >= 1, got {s.epochs}, {s.batch_size}")
        return s

    def as_dict(self) -> dict[str, Any]:
        return {f.name: (list(v) if isinstance(v := getattr(self, f.name), tuple) else v) for f in fields(self)}


def lr_factor(s: Schedule, step: int, steps_per_epoch: int) -> float:
    """Multiplier of the base lr at iteration `step` (0-based, counted over the whole run)."""
    total = s.epochs * steps_per_epoch
    warm = int(round(s.warmup_epochs * steps_per_epoch))
    if step < warm:
        return s.warmup_factor + (1 - s.warmup_factor) * step / warm
    if s.policy == "constant":
        return 1.0
    if s.policy == "step":
        return s.gamma ** sum(step >= m * steps_per_epoch for m in s.milestones)
    progress = (step - warm) / max(1, total - warm)
    floor = s.min_lr / s.lr if s.lr else 0.0
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: nn.Module, s: Schedule) -> torch.optim.Optimizer:
    """SGD or AdamW; parameters whose name contains a no_decay_key get no weight decay, backbone parameters
    (everything outside the classification head) get lr x backbone_lr_mult; frozen parameters are left out."""
    from trainers.transfer import is_head

    buckets: dict[tuple[bool, bool], list[nn.Parameter]] = {}
    for name, p in model.named_parameters():
        if p.requires_grad:
            key = (any(k in name for k in s.no_decay_keys), is_head(name))
            buckets.setdefault(key, []).append(p)
    groups = [{"params": params, "weight_decay": 0.0 if no_decay else s.weight_decay,
               "lr_mult": 1.0 if head else s.backbone_lr_mult}
              for (no_decay, head), params in sorted(buckets.items())]
    if s.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=s.lr, momentum=s.momentum, nesterov=s.nesterov)
    return torch.optim.AdamW(groups, lr=s.lr, betas=s.betas)


def set_lr(optimizer: torch.optim.Optimizer, s: Schedule, step: int, steps_per_epoch: int) -> float:
    lr = s.lr * lr_factor(s, step, steps_per_epoch)
    for g in optimizer.param_groups:
        g["lr"] = lr * g.get("lr_mult", 1.0)
    return lr
