"""The `data:` section of a model config: a few knobs (sampling, size, normalisation, views) and the pipelines
they make, with defaults read off the model itself, so a config without a `data:` section still trains.

```yaml
data:
  clip_len: 8          # SampleFrames clip_len x frame_interval x num_clips (MMAction2's 8x8x1 notation)
  frame_interval: 8
  num_clips: 1         # segments for 2D models
  input_format: NCTHW  # NCHW (2D), NCTHW (3D), NCHW_Flow (flow stream)
  size: 224            # crop side
  scale: 256           # shorter side before cropping
  mean: [123.675, 116.28, 103.53]
  std: [58.395, 57.12, 57.375]
  train_crop: random_resized   # or multiscale (TSN)
  flip: 0.5
  views: [1, 1]        # test views: temporal clips x spatial crops (1 centre, 3 ThreeCrop, 10 TenCrop)
  pseudo: static       # images as: frame (2D, one-frame segment), static (repeated), moving (camera path)
  train_pipeline: [...]  # optional: explicit steps (trainers.transforms.STEPS) instead of the knobs
  test_pipeline: [...]
```
A two-stream model holds one such section per stream: `data: {streams: {rgb: {...}, flow: {...}}}`.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from trainers.config import ConfigError, fusion_streams, is_2d, merge
from trainers.transforms import FORMATS, IMAGENET_MEAN, IMAGENET_STD, Pipeline, build_pipeline

KNOBS = ("clip_len", "frame_interval", "num_clips", "input_format", "size", "scale", "mean", "std", "train_crop",
         "flip", "views", "pseudo", "pseudo_strength", "train_pipeline", "test_pipeline")
TRAIN_CROPS = ("multiscale", "random_resized", "random")
CROPS = {1: "CenterCrop", 3: "ThreeCrop", 10: "TenCrop"}


def default_data(model: Mapping[str, Any]) -> dict[str, Any]:
    """Knobs read off a model config: 2D -> 1x1x8 segments (num_segments of TSM), flow (10 input channels) -> 6x1x8
    frames, 3D -> clip_len = the backbone's num_frames (else 8) over 64 frames; size = its img_size (else 224)."""
    streams = fusion_streams(model)
    if streams:
        return {"streams": {k: default_data(v) for k, v in streams.items()}}
    backbone = model.get("backbone") or {}
    size = int(backbone.get("img_size") or 224)
    data: dict[str, Any] = {"size": size, "scale": round(size * 256 / 224), "mean": list(IMAGENET_MEAN),
                            "std": list(IMAGENET_STD), "flip": 0.5, "views": [1, 1], "pseudo_strength": 1.0}
    if is_2d(model):
        segments = int(backbone.get("num_segments") or 8)
        flow = int(backbone.get("in_channels") or 3) != 3
        data.update(clip_len=(int(backbone["in_channels"]) // 2 + 1) if flow else 1, frame_interval=1,
                    num_clips=segments, input_format="NCHW_Flow" if flow else "NCHW", train_crop="multiscale",
                    pseudo="frame" if not flow and "num_segments" not in backbone else "static")
    else:
        clip_len = int(backbone.get("num_frames") or 8)
        data.update(clip_len=clip_len, frame_interval=max(1, 64 // clip_len), num_clips=1, input_format="NCTHW",
                    train_crop="random_resized", pseudo="static")
    return data


def resolve_data(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The config's `data:` merged over the model's defaults; unknown knobs fail with the list of valid ones."""
    data = merge(default_data(cfg["model"]), cfg.get("data") or {})
    for name, section in streams(data).items():
        where = "data" if name is None else f"data.streams.{name}"
        unknown = sorted(set(section) - set(KNOBS))
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {unknown}; valid keys: {list(KNOBS)}")
        if section.get("input_format") not in FORMATS:
            raise ConfigError(f"{where}.input_format: {section.get('input_format')!r} is not one of {list(FORMATS)}")
        if section.get("train_crop") not in TRAIN_CROPS:
            raise ConfigError(f"{where}.train_crop: {section.get('train_crop')!r} is not one of {list(TRAIN_CROPS)}")
        if int(section["views"][1]) not in CROPS:
            raise ConfigError(f"{where}.views: crops must be one of {sorted(CROPS)}, got {section['views'][1]}")
    return data


def streams(data: Mapping[str, Any]) -> dict[str | None, dict[str, Any]]:
    """{None: data} for one input, {stream name: data} for a fused model's inputs."""
    if "streams" in data:
        extra = sorted(set(data) - {"streams"})
        if extra:
            raise ConfigError(f"data: a two-stream config holds only 'streams', got also {extra}")
        return {k: dict(v) for k, v in data["streams"].items()}
    return {None: dict(data)}


def parse_views(text: str | tuple | list) -> tuple[int, int]:
    """'10x3' -> (10 temporal clips, 3 crops)."""
    try:
        clips, crops = (int(v) for v in (text.lower().split("x") if isinstance(text, str) else text))
    except (ValueError, AttributeError) as exc:
        raise ConfigError(f"views must look like CLIPSxCROPS (e.g. 10x3), got {text!r}") from exc
    if clips < 1 or crops not in CROPS:
        raise ConfigError(f"views: need clips >= 1 and crops in {sorted(CROPS)}, got {clips}x{crops}")
    return clips, crops


def pipeline_config(data: Mapping[str, Any], train: bool, views: tuple[int, int] | None = None) -> list[dict]:
    """The step list for training or testing: the explicit one when the config gives it, else made from the knobs."""
    explicit = data.get("train_pipeline" if train else "test_pipeline")
    if explicit:
        return [dict(s) for s in explicit]
    fmt, size, scale = data["input_format"], int(data["size"]), int(data["scale"])
    clip = dict(clip_len=int(data["clip_len"]), frame_interval=int(data["frame_interval"]))
    segments = int(data["num_clips"])
    norm = [] if fmt == "NCHW_Flow" else [{"type": "Normalize", "mean": list(data["mean"]), "std": list(data["std"])}]
    if train:
        crop = {"multiscale": {"type": "MultiScaleCrop", "size": size},
                "random_resized": {"type": "RandomResizedCrop", "size": size},
                "random": {"type": "RandomCrop", "size": size}}[data["train_crop"]]
        return [{"type": "SampleFrames", **clip, "num_clips": segments}, {"type": "Resize", "scale": scale}, crop,
                {"type": "Flip", "ratio": float(data["flip"])}, *norm, {"type": "FormatShape", "input_format": fmt}]
    clips, crops = views or parse_views(data["views"])
    two_d = fmt != "NCTHW"
    sample = {"type": "SampleFrames", **clip, "num_clips": segments * clips if two_d else clips, "test_mode": True}
    shape = {"type": "FormatShape", "input_format": fmt, **({"num_segments": segments} if two_d else {})}
    resize = {"type": "Resize", "scale": size if crops == 3 else scale}
    return [sample, resize, {"type": CROPS[crops], "size": size}, *norm, shape]


def build_pipelines(data: Mapping[str, Any], train: bool, views: tuple[int, int] | None = None
                    ) -> dict[str | None, Pipeline]:
    """One Pipeline per input stream (key None for single-input models)."""
    return {name: build_pipeline(pipeline_config(d, train, views), f"data{'.' + name if name else ''}."
                                 f"{'train' if train else 'test'}_pipeline")
            for name, d in streams(data).items()}


def input_spec(data: Mapping[str, Any]) -> dict[str, Any]:
    """What a checkpoint's user needs to know about its input, per stream (clip geometry, size, normalisation)."""
    keys = ("clip_len", "frame_interval", "num_clips", "input_format", "size", "scale", "mean", "std", "views")
    return {name or "input": {k: d.get(k) for k in keys} for name, d in streams(data).items()}


def data_overrides(model: Mapping[str, Any], **knobs: Any) -> dict[str, Any]:
    """A `data:` override setting knobs (None values skipped) for every input stream of the model; a new size moves
    the pre-crop scale along (256/224 of it) unless a scale is given too."""
    knobs = {k: v for k, v in knobs.items() if v is not None}
    if "size" in knobs and "scale" not in knobs:
        knobs["scale"] = round(int(knobs["size"]) * 256 / 224)
    if not knobs:
        return {}
    streams = fusion_streams(model)
    return {"streams": {k: dict(knobs) for k in streams}} if streams else dict(knobs)
