"""Published weights in and out: MMAction2 and torchvision checkpoints as curate checkpoints, and back to MMAction2.

`import_weights(src, fmt, name)` reads a published file without running any of its pickled code, renames its
tensors onto the bundled model (`trainers.mmaction2` for MMAction2's families, `TORCHVISION` for torchvision's
video models), and returns the model with the meta `save_checkpoint` writes: the classes, the source's test-time
views and normalisation as a resolved `data:` section, and where the weights came from. `export_mmaction2` gives
MMAction2's state dict back.
"""
from __future__ import annotations

import pickle
import re
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from curate.core.files import sha256_file
from curate.formats import CLASS_LISTS, class_list
from trainers.checkpoint import read_checkpoint
from trainers.config import ConfigError, assign, build_model, load_model_config, merge
from trainers.data import LabelSpace
from trainers.inputs import input_spec, resolve_data
from trainers.keymap import KeyMap, Rule, fit
from trainers.mmaction2 import FAMILIES, to_mmaction2

FORMATS = ("mmaction2", "torchvision")
LIST_BY_SIZE = {400: "kinetics400", 600: "kinetics600", 700: "kinetics700_2020"}   # the default class lists


class PublishedError(ValueError):
    """A file that cannot be read as published weights, or that does not fit the model named for it."""


class Skipped:
    """Stands in for a pickled object of a type weights_only does not load (mmengine's log buffers, numpy values):
    built from nothing, holding nothing, so none of the file's code runs."""

    def __init__(self, *args: Any, **kwargs: Any):
        pass

    def __setstate__(self, state: Any) -> None:
        pass


@dataclass(frozen=True)
class TorchvisionArch:
    classifier: str                 # the classifier's key prefix in torchvision's state dict
    dropout: float                  # torchvision's dropout before it
    clip: tuple[int, int, int]      # clip_len, frame interval at 30 fps, clips per video (torchvision's evaluation)


# Frame intervals from torchvision's evaluation frame rates (15 fps: 2, 7.5 fps: 4) on 30 fps video.
TORCHVISION = {
    **{a: TorchvisionArch("fc", 0.0, (16, 2, 5)) for a in ("r3d_18", "mc3_18", "r2plus1d_18")},
    **{a: TorchvisionArch("head.1", 0.5, (16, 4, 5)) for a in ("mvit_v1_b", "mvit_v2_s")},
    **{a: TorchvisionArch("head", 0.0, (32, 2, 12)) for a in ("swin3d_t", "swin3d_s", "swin3d_b")},
    "s3d": TorchvisionArch("classifier.1", 0.2, (128, 2, 1)),   # into the bundled S3D, layer for layer
}


@dataclass
class Published:
    """A published file as read: its weights, its own meta (plain values only) and what was left out, in words."""

    state_dict: dict[str, torch.Tensor]
    meta: dict[str, Any]
    skipped: list[str] = field(default_factory=list)


DROPPED = object()


def _plain(value: Any) -> Any:
    """value with everything but builtins (str, numbers, lists, dicts) dropped: what a checkpoint meta may hold."""
    if isinstance(value, Mapping):
        kept = {str(k): _plain(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v is not DROPPED}
    if isinstance(value, (list, tuple)):
        return [v for v in map(_plain, value) if v is not DROPPED]
    return value if value is None or isinstance(value, (str, int, float, bool)) else DROPPED


def _load(path: Path) -> tuple[Any, list[str]]:
    """(torch.load(weights_only=True) of path, the globals that stood in as `Skipped` to get there)."""
    try:
        return torch.load(path, map_location="cpu", weights_only=True), []
    except pickle.UnpicklingError as exc:
        if not zipfile.is_zipfile(path):   # the legacy format has no listing of its globals
            found = re.search(r"Unsupported global: GLOBAL [\w.]+", str(exc))
            raise PublishedError(f"{path}: weights_only refuses part of this legacy (non-zip) file "
                                 f"({found.group(0) if found else 'unsupported pickle'}), and what to skip cannot be "
                                 "listed in that format: where you trust the file, save its 'state_dict' alone and "
                                 "import that") from exc
    stand_ins = torch.serialization.get_unsafe_globals_in_checkpoint(path)
    with torch.serialization.safe_globals([(Skipped, name) for name in stand_ins]):
        return torch.load(path, map_location="cpu", weights_only=True), stand_ins


def read_published(path: str | Path) -> Published:
    """The weights of a published file: an MMAction2 1.x/0.x checkpoint ({'state_dict', 'meta', ...}) or a bare
    state dict. Always torch.load(weights_only=True); a file whose extras (mmengine's message_hub, numpy arrays)
    weights_only refuses is read with those objects' types standing in as empty `Skipped` placeholders, and only
    the weights and the plain parts of the meta are kept."""
    path = Path(path)
    try:
        payload, stand_ins = _load(path)
    except PublishedError:
        raise
    except Exception as exc:  # pickle / zip / format errors come in many types
        raise PublishedError(f"{path}: not a checkpoint weights_only can read ({type(exc).__name__}: {exc})") from exc
    if not isinstance(payload, Mapping):
        raise PublishedError(f"{path}: expected a state dict or a checkpoint dict, got {type(payload).__name__}")
    if isinstance(payload.get("state_dict"), Mapping):
        state, meta = payload["state_dict"], payload.get("meta") or {}
        skipped = [f"{k!r} (not weights)" for k in payload if k not in ("state_dict", "meta")]
    else:
        state, meta, skipped = payload, {}, []
    not_tensors = [k for k, v in state.items() if not isinstance(v, torch.Tensor)]
    if not_tensors or not state:
        raise PublishedError(f"{path}: its state dict holds " + (f"non-tensors: {', '.join(not_tensors[:5])}"
                                                                 if not_tensors else "nothing"))
    if stand_ins:
        skipped.append("objects of types weights_only does not load, read as empty placeholders: "
                       + ", ".join(stand_ins))
    meta = _plain(meta) if isinstance(meta, Mapping) else {}
    return Published({k.removeprefix("module."): v for k, v in state.items()}, meta, skipped)


def resolve_classes(spec: str | Path | None, count: int) -> tuple[list[str], str]:
    """(class names, where they came from): a file of names (one a line), a shipped list's name, or by default the
    shipped Kinetics list with `count` classes."""
    if spec is None:
        if count not in LIST_BY_SIZE:
            raise PublishedError(f"the classifier has {count} classes and no shipped list has that many: give "
                                 "--classes (a file of names, one a line, or one of " + ", ".join(CLASS_LISTS) + ")")
        spec = LIST_BY_SIZE[count]
    if str(spec) in CLASS_LISTS:
        names, origin = class_list(str(spec)), str(spec)
    elif Path(spec).is_file():
        names, origin = [n.strip() for n in Path(spec).read_text(encoding="utf-8").splitlines() if n.strip()], str(spec)
    else:
        raise PublishedError(f"--classes {spec!r} is neither a file nor a shipped list ({', '.join(CLASS_LISTS)})")
    if len(names) != count:
        raise PublishedError(f"{origin} names {len(names)} classes, the classifier has {count}")
    return names, origin


def torchvision_target(arch: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """(our model config, torchvision's test-time data knobs) for a torchvision video model: its clip geometry and
    its weights' preset (resize, crop, mean/std on the 0-255 scale)."""
    from torchvision.models import get_model_weights

    spec = TORCHVISION[arch]
    if arch == "s3d":
        model = merge(load_model_config("s3d")["model"], {"cls_head": {"pool_kernel": [2, 7, 7]}})
    else:
        model = {"type": "Recognizer3D", "backbone": {"type": "TorchvisionVideo", "arch": arch},
                 "cls_head": {"type": "I3DHead", "num_classes": 400, "dropout_ratio": spec.dropout}}
    preset = get_model_weights(arch).DEFAULT.transforms()   # metadata only: nothing is downloaded
    clip_len, interval, clips = spec.clip
    data = {"clip_len": clip_len, "frame_interval": interval, "num_clips": 1, "size": preset.crop_size[0],
            "scale": preset.resize_size[0], "views": [clips, 1], "mean": [round(255 * m, 4) for m in preset.mean],
            "std": [round(255 * s, 4) for s in preset.std]}
    return model, data


def torchvision_keymap(arch: str, model: nn.Module) -> KeyMap:
    if arch == "s3d":   # torchvision numbers the layers our S3D names; same order, same modules inside
        names = [n for n, _ in model.backbone.features.named_children()]
        return KeyMap((Rule("classifier.1.{t*}", "cls_head.fc_cls.{t*}"),
                       *(Rule(f"features.{i}.{{t*}}", f"backbone.features.{n}.{{t*}}") for i, n in enumerate(names))))
    return KeyMap((Rule(TORCHVISION[arch].classifier + ".{t*}", "cls_head.fc_cls.{t*}"),
                   Rule("{t*}", "backbone.net.{t*}")))


def convert(pub: Published, fmt: str, name: str, classes: str | Path | None = None, sets: Sequence[str] = ()
            ) -> tuple[nn.Module, dict[str, Any]]:
    """(model with the weights of `pub`, checkpoint meta without its `source`).

    fmt 'mmaction2' takes a bundled model name MMAction2 also has (`trainers.mmaction2.FAMILIES`), 'torchvision'
    one of `TORCHVISION`. sets: `model.x.y=v` / `data.k=v` assignments over the model config and the source's
    test-time knobs (a reduced model for tests, another clip length of the same weights).
    """
    if fmt == "mmaction2":
        if name not in FAMILIES:
            raise PublishedError(f"MMAction2 has no counterpart of {name!r}; models with one: {', '.join(FAMILIES)}")
        model_cfg, data = load_model_config(name)["model"], dict(FAMILIES[name].test)
        fc_key = FAMILIES[name].keymap.to_theirs("cls_head.fc_cls.weight")
    elif fmt == "torchvision":
        if name not in TORCHVISION:
            raise PublishedError(f"torchvision has no video model {name!r}; there are {', '.join(TORCHVISION)}")
        (model_cfg, data), fc_key = torchvision_target(name), TORCHVISION[name].classifier + ".weight"
    else:
        raise PublishedError(f"unknown source format {fmt!r}; formats: {', '.join(FORMATS)}")
    unknown = [s for s in sets if not s.startswith(("model.", "data."))]
    if unknown:
        raise ConfigError(f"--set takes model.* and data.* keys here, got {unknown}")
    cfg = assign({"model": model_cfg, "data": data}, sets)
    fc = pub.state_dict.get(fc_key)
    count = int(fc.shape[0]) if fc is not None else int(cfg["model"]["cls_head"]["num_classes"])
    names, origin = resolve_classes(classes, count)
    model = build_model(cfg["model"], num_classes=count)
    keymap = FAMILIES[name].keymap if fmt == "mmaction2" else torchvision_keymap(name, model)
    model.load_state_dict(fit(pub.state_dict, model.state_dict(), keymap, f"{fmt} weights for {name}"), strict=True)
    data = resolve_data(cfg)
    meta = {"model": cfg["model"], "classes": names,
            "labels": LabelSpace("label", tuple(range(count)), tuple(names)).to_dict(), "data": data,
            "input": input_spec(data), "source": {"format": fmt, "model": name, "classes": origin}}
    return model.eval(), meta


def import_weights(src: str | Path, fmt: str, name: str, classes: str | Path | None = None,
                   sets: Sequence[str] = ()) -> tuple[nn.Module, dict[str, Any]]:
    """`convert` of the file `src`; meta['source'] says where it came from: format, file name and sha256, model,
    the MMAction2 config or torchvision builder, the class list, what was skipped and the file's own meta."""
    pub = read_published(src)
    model, meta = convert(pub, fmt, name, classes, sets)
    config = FAMILIES[name].config if fmt == "mmaction2" else f"torchvision.models.video.{name}"
    meta["source"].update(file=Path(src).name, sha256=sha256_file(src), config=config, skipped=pub.skipped,
                          meta=pub.meta)
    return model, meta


def family_of(model_cfg: Mapping[str, Any]) -> str:
    """The MMAction2 family whose names a model config's weights take: same backbone type (and CSN mode /
    attention type)."""
    backbone = model_cfg.get("backbone") or {}
    for name in FAMILIES:
        theirs = load_model_config(name)["model"]["backbone"]
        if all(backbone.get(k) == theirs.get(k) for k in ("type", "bottleneck_mode", "attention_type")):
            return name
    raise PublishedError(f"MMAction2 has no counterpart of a {backbone.get('type')} backbone; families: "
                         + ", ".join(FAMILIES))


def export_mmaction2(ckpt: str | Path) -> tuple[dict[str, Any], str]:
    """(an MMAction2 1.x checkpoint dict {'state_dict', 'meta'}, the family) from one of our checkpoints."""
    payload = read_checkpoint(ckpt)
    meta = payload["meta"]
    source = meta.get("source") or {}
    name = source["model"] if source.get("format") == "mmaction2" else family_of(meta["model"])
    out_meta = {"dataset_meta": {"classes": list(meta["classes"])},
                "curate": {"sha256": meta["sha256"], "model": meta["model"], "family": name,
                           "config": FAMILIES[name].config}}
    return {"state_dict": to_mmaction2(payload["state_dict"], name), "meta": out_meta}, name
