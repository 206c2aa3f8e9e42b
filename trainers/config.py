"""The unified config: `{model: {type, backbone, cls_head}, data: ..., schedule: ...}` in YAML.

A model is built from plain dicts: `type` picks a builder from the dicts in `trainers.models`; every other key
is a keyword argument of that builder. Wrong names and keys fail with the list of valid ones.
"""
from __future__ import annotations

import copy
import inspect
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from torch import nn

from trainers.models import BACKBONES, FUSIONS, HEADS, RECOGNIZERS


class ConfigError(ValueError):
    """A config that cannot be built; the message names the key path and lists the valid choices."""


def build_from(registry: Mapping[str, Callable[..., Any]], cfg: Mapping[str, Any], where: str, **defaults: Any) -> Any:
    """Call registry[cfg['type']] with the rest of cfg as keyword arguments (defaults fill absent keys)."""
    if not isinstance(cfg, Mapping):
        raise ConfigError(f"{where}: expected a mapping with a 'type' key, got {cfg!r}")
    cfg = dict(cfg)
    name = cfg.pop("type", None)
    if name not in registry:
        raise ConfigError(f"{where}.type: {name!r} is not one of {sorted(registry)}")
    builder = registry[name]
    params = inspect.signature(builder).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    valid = [k for k, p in params.items() if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY) and k != "self"]
    unknown = [k for k in cfg if k not in valid] if not takes_any else []
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {unknown} for {name}; valid keys: {valid}")
    missing = [k for k, p in params.items() if k in valid and p.default is p.empty and k not in cfg
               and k not in defaults]
    if missing:
        raise ConfigError(f"{where}: {name} needs {missing}")
    kwargs = {k: v for k, v in defaults.items() if k in valid and k not in cfg}
    try:
        return builder(**kwargs, **cfg)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where} ({name}): {exc}") from exc


def build_model(cfg: Mapping[str, Any], num_classes: int | None = None, where: str = "model") -> nn.Module:
    """Recognizer from `{type, backbone, cls_head}`; num_classes overrides the head's when given.

    A fusion type (e.g. TwoStream) holds whole recognizer configs under its stream keys instead.
    """
    cfg = copy.deepcopy(dict(cfg))
    if cfg.get("type") in FUSIONS:
        return build_fusion(cfg, num_classes, where)
    unknown = set(cfg) - {"type", "backbone", "cls_head"}
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; valid keys: ['type', 'backbone', 'cls_head']")
    if cfg.get("type") not in RECOGNIZERS:
        raise ConfigError(f"{where}.type: {cfg.get('type')!r} is not one of {sorted(RECOGNIZERS) + sorted(FUSIONS)}")
    backbone = build_from(BACKBONES, cfg.get("backbone") or {}, f"{where}.backbone")
    head_cfg = dict(cfg.get("cls_head") or {})
    average_clips = head_cfg.pop("average_clips", "prob")
    if num_classes is not None:
        head_cfg["num_classes"] = num_classes
    head = build_from(HEADS, head_cfg, f"{where}.cls_head", in_channels=getattr(backbone, "out_channels", None))
    return RECOGNIZERS[cfg["type"]](backbone, head, average_clips=average_clips)


def build_fusion(cfg: Mapping[str, Any], num_classes: int | None, where: str) -> nn.Module:
    """`{type: TwoStream, rgb: <model cfg>, flow: <model cfg>, coefficients: ...}`: streams built, then fused."""
    streams = {k: build_model(v, num_classes, f"{where}.{k}") for k, v in fusion_streams(cfg).items()}
    return build_from(FUSIONS, {**cfg, **streams}, where)


def fusion_streams(model: Mapping[str, Any]) -> dict[str, Mapping[str, Any]]:
    """The stream configs of a fusion model (e.g. TwoStream's rgb and flow); empty for a single recognizer."""
    if model.get("type") not in FUSIONS:
        return {}
    return {k: v for k, v in model.items() if isinstance(v, Mapping) and "type" in v}


def is_2d(model: Mapping[str, Any]) -> bool:
    """Does the model take frames (2D CNNs: TSN, TSM, flow nets, a two-stream model of those), not 3D clips?"""
    streams = fusion_streams(model)
    return all(is_2d(s) for s in streams.values()) if streams else model.get("type") == "Recognizer2D"


def bundled_recognizers() -> list[str]:
    """The names of every bundled recognition config (recipes/models; not the localizers and detectors)."""
    names = []
    for path in sorted(MODEL_DIR.glob("*.yaml")):
        model = load_yaml_config(path).get("model", {})
        if model.get("type") in {*RECOGNIZERS, *FUSIONS}:
            names.append(path.stem)
    return names


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def load_yaml_config(path: str | Path) -> dict[str, Any]:
    """A model/training config file (yaml.safe_load; `_base_: other.yaml` merges a base config first)."""
    from curate.core.files import FileFormatError, read_yaml

    path = Path(path)
    try:
        cfg = read_yaml(path) or {}
    except FileFormatError as exc:
        raise ConfigError(str(exc)) from exc
    if not isinstance(cfg, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    base = cfg.pop("_base_", None)
    if base:
        cfg = merge(load_yaml_config(path.parent / base), cfg)
    return cfg


MODEL_DIR = Path(__file__).parent / "configs"   # the repository's recipes/models, shipped inside the package


def load_model_config(name_or_path: str | Path, tiny: bool = False) -> dict[str, Any]:
    """A config from recipes/models/<name>.yaml (or a path); tiny=True merges its `tiny:` section over it."""
    path = Path(name_or_path)
    if not path.suffix:
        path = MODEL_DIR / f"{name_or_path}.yaml"
    if not path.exists():
        names = sorted(p.stem for p in MODEL_DIR.glob("*.yaml"))
        raise ConfigError(f"no model config {str(name_or_path)!r}; bundled configs: {names}")
    cfg = load_yaml_config(path)
    small = cfg.pop("tiny", None) or {}
    return merge(cfg, small) if tiny else cfg


def assign(cfg: Mapping[str, Any], sets: Sequence[str]) -> dict[str, Any]:
    """cfg with `section.key=value` assignments (`--set`; values parsed as YAML) merged in, in order."""
    import yaml

    out = dict(cfg)
    for assignment in sets:
        key, eq, value = assignment.partition("=")
        if not eq or not key.strip():
            raise ConfigError(f"--set wants KEY.PATH=VALUE, got {assignment!r}")
        node: dict[str, Any] = {}
        leaf = node
        parts = key.strip().split(".")
        for part in parts[:-1]:
            leaf = leaf.setdefault(part, {})
        leaf[parts[-1]] = yaml.safe_load(value)
        out = merge(out, node)
    return out


def merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursive dict merge: mappings merge key by key, everything else is replaced."""
    out = copy.deepcopy(dict(base))
    for k, v in override.items():
        out[k] = merge(out[k], v) if isinstance(v, Mapping) and isinstance(out.get(k), Mapping) else copy.deepcopy(v)
    return out
