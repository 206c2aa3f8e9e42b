"""Transfer: start a model from one of our checkpoints trained on another label set (`curate train --init CKPT`).

The backbone's weights are copied by name; the classification head is re-initialised for the new classes, except
that classifier rows of classes present in both label sets (same name) are copied. Everything that is not loaded is
listed in the report, never dropped silently.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from trainers.checkpoint import CheckpointError, read_checkpoint

HEAD_MARK = "cls_head."


@dataclass
class InitReport:
    path: str
    sha256: str
    loaded: int = 0                                        # tensors copied whole
    head_reinit: list[str] = field(default_factory=list)   # head tensors left at their fresh initialisation
    shared_classes: int = 0                                # classifier rows copied for classes in both label sets
    mismatched: list[str] = field(default_factory=list)    # backbone tensors whose shapes differ (not loaded)
    missing: list[str] = field(default_factory=list)       # in the model, not in the checkpoint
    unexpected: list[str] = field(default_factory=list)    # in the checkpoint, not in the model

    def as_dict(self) -> dict:
        return {k: v for k, v in self.__dict__.items()}

    def lines(self) -> list[str]:
        """Human-readable summary, one fact per line."""
        out = [f"init from {self.path} (sha256 {self.sha256[:12]}): {self.loaded} tensors loaded"]
        if self.head_reinit:
            out.append(f"head re-initialised for the new classes: {', '.join(self.head_reinit)}"
                       + (f" ({self.shared_classes} classes shared by name kept their rows)" if self.shared_classes
                          else ""))
        for what in ("mismatched", "missing", "unexpected"):
            keys = getattr(self, what)
            if keys:
                out.append(f"{what} ({len(keys)}): {', '.join(keys[:8])}{' ...' if len(keys) > 8 else ''}")
        return out


def is_head(name: str) -> bool:
    return name.startswith(HEAD_MARK) or f".{HEAD_MARK}" in name


@torch.no_grad()
def init_from_checkpoint(model: nn.Module, path: str | Path, classes: Sequence[str]) -> InitReport:
    """Copy `path`'s weights into `model` (built for `classes`); see the module docstring for the rules."""
    payload = read_checkpoint(path)
    meta, src = payload["meta"], payload["state_dict"]
    old_classes = list(meta["classes"])
    same_labels = old_classes == list(classes)
    report = InitReport(str(path), meta["sha256"])
    own = model.state_dict()
    report.missing = sorted(k for k in own if k not in src and not is_head(k))
    report.unexpected = sorted(k for k in src if k not in own and not is_head(k))
    shared = [(old_classes.index(c), i) for i, c in enumerate(classes) if c in old_classes]
    for name, dst in own.items():
        if name not in src:
            if is_head(name):
                report.head_reinit.append(name)
            continue
        value = src[name]
        if is_head(name) and not same_labels:
            report.head_reinit.append(name)
            rows = value.shape[:1] == (len(old_classes),) and dst.shape[:1] == (len(classes),) \
                and value.shape[1:] == dst.shape[1:]
            if rows and shared:  # classifier weight/bias: one row per class
                old_idx, new_idx = zip(*shared)
                dst[list(new_idx)] = value[list(old_idx)].to(dst.dtype)
                report.shared_classes = len(shared)
            continue
        if value.shape != dst.shape:
            report.mismatched.append(f"{name} {tuple(value.shape)}→{tuple(dst.shape)}")
            continue
        dst.copy_(value.to(dst.dtype))
        report.loaded += 1
    if report.loaded == 0:
        raise CheckpointError(f"{path}: no tensor matches this model by name and shape (checkpoint model "
                              f"{meta['model'].get('type')}/{meta['model'].get('backbone', {}).get('type')}); "
                              "--init needs the same architecture")
    model.load_state_dict(own)
    return report


def backbone_parameters(model: nn.Module) -> list[nn.Parameter]:
    return [p for n, p in model.named_parameters() if not is_head(n)]


def freeze_backbone(model: nn.Module) -> None:
    """No gradients for the backbone; its BatchNorm layers keep their statistics (see `keep_frozen_eval`)."""
    for p in backbone_parameters(model):
        p.requires_grad_(False)


def keep_frozen_eval(model: nn.Module) -> None:
    """After model.train(): put modules whose parameters are all frozen (backbone norms) back in eval mode."""
    for m in model.modules():
        params = list(m.parameters(recurse=False))
        if params and not any(p.requires_grad for p in params) and isinstance(m, nn.modules.batchnorm._NormBase):
            m.eval()
