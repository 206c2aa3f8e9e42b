"""Self-describing checkpoints: one `torch.save` file of plain tensors and dicts, loadable with weights_only=True.

```
{"format": "curate-checkpoint/1",
 "meta": {"model": <model config>, "classes": [...], "labels": <LabelSpace.to_dict()>, "data": <resolved data
          config>, "input": <clip geometry, size, mean/std, format per stream>, "metrics": {...}, "epoch": ...,
          "sha256": <hash of the weights and the model config>, ...},
 "state_dict": {name: tensor},
 "train": <optimizer, position, RNG states> or None}
```
`load_checkpoint(path) -> (model, meta)` rebuilds the model from the file alone (local `pretrained:` paths in the
stored config are dropped: the weights come from the file).
"""
from __future__ import annotations

import copy
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curate.core.files import atomic_path
from trainers.config import build_model

FORMAT = "curate-checkpoint/1"


class CheckpointError(ValueError):
    """A file that is not a usable curate checkpoint (wrong format, corrupt, hash mismatch)."""


def weights_hash(state_dict: Mapping[str, torch.Tensor], model_cfg: Mapping[str, Any]) -> str:
    """sha256 over the model config (canonical JSON) and every tensor's name, dtype, shape and bytes."""
    h = hashlib.sha256(json.dumps(model_cfg, sort_keys=True, default=str).encode())
    for name in sorted(state_dict):
        t = state_dict[name].detach().cpu().contiguous()
        h.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def _strip_pretrained(cfg: Any) -> Any:
    if isinstance(cfg, Mapping):
        return {k: _strip_pretrained(v) for k, v in cfg.items() if k != "pretrained"}
    if isinstance(cfg, list):
        return [_strip_pretrained(v) for v in cfg]
    return cfg


def save_checkpoint(path: str | Path, model: nn.Module, meta: Mapping[str, Any],
                    train_state: Mapping[str, Any] | None = None) -> str:
    """Write atomically (temp file, fsync, rename); returns the weights hash stored in meta['sha256']."""
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    meta = copy.deepcopy(dict(meta))
    meta["model"] = _strip_pretrained(meta["model"])
    meta["sha256"] = weights_hash(state, meta["model"])
    payload = {"format": FORMAT, "meta": meta, "state_dict": state, "train": train_state}
    with atomic_path(path, durable=True) as tmp:
        torch.save(payload, tmp)
    return meta["sha256"]


def read_checkpoint(path: str | Path, verify: bool = True) -> dict[str, Any]:
    """The raw payload (weights_only load); verify=True recomputes the hash of the weights."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"checkpoint {path} does not exist")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # pickle / zip errors come in many types
        raise CheckpointError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a curate checkpoint (expected format {FORMAT!r})")
    if verify:
        got = weights_hash(payload["state_dict"], payload["meta"]["model"])
        if got != payload["meta"].get("sha256"):
            raise CheckpointError(f"{path}: weights do not match the stored hash (corrupt or edited file)")
    return payload


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu", verify: bool = True
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """(model in eval mode on device, meta) from the file alone."""
    payload = read_checkpoint(path, verify)
    meta = payload["meta"]
    model = build_model(meta["model"], num_classes=len(meta["classes"]))
    model.load_state_dict(payload["state_dict"], strict=True)
    return model.to(device).eval(), meta
