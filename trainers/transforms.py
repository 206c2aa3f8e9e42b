"""The frame pipeline: named steps in config, one plain dict name -> step, and the default pipelines of a model.

A pipeline is a list of `{type: Step, ...}` dicts. It starts with `SampleFrames` (which frames: MMAction2's
semantics, `curate.core.sampling`), the dataset then decodes exactly those frames, and the remaining steps work on
`imgs`, a uint8 array [views, frames, H, W, 3] (one view until ThreeCrop/TenCrop make more; every crop box is
shared by all frames of a view). It ends with `FormatShape`, which writes `input` in the recognizers' layout
[V, C, T, H, W] (see trainers/models/recognizers.py). Each step is a frozen dataclass with `apply(r, rng)`; the
rng is the sample's own generator, so augmentation is reproducible and independent of worker assignment.
"""
from __future__ import annotations

import dataclasses
import functools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from curate.core.sampling import SampleFrames
from trainers.config import ConfigError, build_from

IMAGENET_MEAN = (123.675, 116.28, 103.53)
IMAGENET_STD = (58.395, 57.12, 57.375)
FORMATS = ("NCHW", "NCTHW", "NCHW_Flow")


def _resize(imgs: np.ndarray, h: int, w: int) -> np.ndarray:
    """[V, F, H, W, 3] -> [V, F, h, w, 3] (area averaging to shrink, bilinear to enlarge)."""
    import cv2

    v, f, hh, ww, c = imgs.shape
    if (hh, ww) == (h, w):
        return imgs
    interp = cv2.INTER_AREA if h * w < hh * ww else cv2.INTER_LINEAR
    out = np.empty((v, f, h, w, c), dtype=imgs.dtype)
    for i in range(v):
        for j in range(f):
            out[i, j] = cv2.resize(np.ascontiguousarray(imgs[i, j]), (w, h), interpolation=interp)
    return out


def _crop(imgs: np.ndarray, y: int, x: int, h: int, w: int) -> np.ndarray:
    return imgs[:, :, y:y + h, x:x + w]


def _size2(size: int | Sequence[int]) -> tuple[int, int]:
    return (int(size), int(size)) if isinstance(size, (int, np.integer)) else (int(size[0]), int(size[1]))


@dataclass(frozen=True)
class SampleFramesStep(SampleFrames):
    """Frame indices (MMAction2 SampleFrames); the dataset decodes these frames next."""

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        r["frame_inds"] = self(r["total_frames"], r.get("fps"), rng)
        r["clip_len"], r["num_clips"] = self.clip_len, self.num_clips * (2 if self.twice_sample and self.test_mode else 1)
        return r


@dataclass(frozen=True)
class Resize:
    """scale: an int makes the shorter side that long (aspect kept); [h, w] resizes to exactly that."""

    scale: int | Sequence[int]

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        h, w = r["imgs"].shape[2:4]
        if isinstance(self.scale, (int, np.integer)):
            s = int(self.scale)
            nh, nw = (s, max(1, round(w * s / h))) if h <= w else (max(1, round(h * s / w)), s)
        else:
            nh, nw = _size2(self.scale)
        r["imgs"] = _resize(r["imgs"], nh, nw)
        return r


@dataclass(frozen=True)
class RandomRescale:
    """Shorter side drawn uniformly from scale_range (TimeSformer / PySlowFast jitter), aspect kept."""

    scale_range: Sequence[int] = (256, 320)

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        return Resize(int(rng.integers(self.scale_range[0], self.scale_range[1] + 1))).apply(r, rng)


@dataclass(frozen=True)
class RandomCrop:
    """A size x size box at a random place."""

    size: int

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        h, w = r["imgs"].shape[2:4]
        s = min(self.size, h, w)
        y, x = int(rng.integers(h - s + 1)), int(rng.integers(w - s + 1))
        r["imgs"] = _resize(_crop(r["imgs"], y, x, s, s), self.size, self.size)
        return r


@dataclass(frozen=True)
class RandomResizedCrop:
    """A box of random area fraction and aspect ratio (Inception crop), resized to size x size."""

    size: int
    area_range: Sequence[float] = (0.08, 1.0)
    aspect_ratio_range: Sequence[float] = (3 / 4, 4 / 3)

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        h, w = r["imgs"].shape[2:4]
        log_ratio = np.log(self.aspect_ratio_range)
        for _ in range(10):
            area = rng.uniform(*self.area_range) * h * w
            ratio = math.exp(rng.uniform(*log_ratio))
            ch, cw = round(math.sqrt(area / ratio)), round(math.sqrt(area * ratio))
            if 0 < ch <= h and 0 < cw <= w:
                y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
                break
        else:  # fall back to the centre square
            ch = cw = min(h, w)
            y, x = (h - ch) // 2, (w - cw) // 2
        r["imgs"] = _resize(_crop(r["imgs"], y, x, ch, cw), self.size, self.size)
        return r


@dataclass(frozen=True)
class MultiScaleCrop:
    """TSN's corner/centre crop: box sides from scales x the shorter side (aspect gap <= max_wh_scale_gap), placed
    at one of 5 fixed spots (or anywhere with random_crop), resized to size x size."""

    size: int
    scales: Sequence[float] = (1, 0.875, 0.75, 0.66)
    max_wh_scale_gap: int = 1
    random_crop: bool = False

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        h, w = r["imgs"].shape[2:4]
        base = min(h, w)
        sides = [int(base * s) for s in self.scales]
        pairs = [(sh, sw) for i, sh in enumerate(sides) for j, sw in enumerate(sides)
                 if abs(i - j) <= self.max_wh_scale_gap]
        ch, cw = pairs[int(rng.integers(len(pairs)))]
        if self.random_crop:
            y, x = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
        else:
            dy, dx = (h - ch) // 4, (w - cw) // 4
            spots = [(0, 0), (0, 4 * dx), (4 * dy, 0), (4 * dy, 4 * dx), (2 * dy, 2 * dx)]
            y, x = spots[int(rng.integers(len(spots)))]
        r["imgs"] = _resize(_crop(r["imgs"], y, x, ch, cw), self.size, self.size)
        return r


@dataclass(frozen=True)
class CenterCrop:
    size: int | Sequence[int]

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        h, w = r["imgs"].shape[2:4]
        ch, cw = min(_size2(self.size)[0], h), min(_size2(self.size)[1], w)
        r["imgs"] = _crop(r["imgs"], (h - ch) // 2, (w - cw) // 2, ch, cw)
        return r


def _boxes(h: int, w: int, ch: int, cw: int, kind: str) -> list[tuple[int, int]]:
    if kind == "three":  # along the longer side: start, centre, end
        if w >= h:
            return [((h - ch) // 2, x) for x in (0, (w - cw) // 2, w - cw)]
        return [(y, (w - cw) // 2) for y in (0, (h - ch) // 2, h - ch)]
    return [(0, 0), (0, w - cw), (h - ch, 0), (h - ch, w - cw), ((h - ch) // 2, (w - cw) // 2)]


@dataclass(frozen=True)
class ThreeCrop:
    """Three size x size views along the longer side (test time): views x 3."""

    size: int | Sequence[int]

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        imgs = r["imgs"]
        h, w = imgs.shape[2:4]
        ch, cw = min(_size2(self.size)[0], h), min(_size2(self.size)[1], w)
        r["imgs"] = np.concatenate([_crop(imgs, y, x, ch, cw) for y, x in _boxes(h, w, ch, cw, "three")])
        return r


@dataclass(frozen=True)
class TenCrop:
    """Four corners and the centre, each also flipped (test time): views x 10."""

    size: int | Sequence[int]

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        imgs = r["imgs"]
        h, w = imgs.shape[2:4]
        ch, cw = min(_size2(self.size)[0], h), min(_size2(self.size)[1], w)
        crops = np.concatenate([_crop(imgs, y, x, ch, cw) for y, x in _boxes(h, w, ch, cw, "ten")])
        r["imgs"] = np.concatenate([crops, crops[:, :, :, ::-1]])
        return r


@dataclass(frozen=True)
class Flip:
    """Horizontal flip of the whole sample with probability ratio."""

    ratio: float = 0.5

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        if rng.random() < self.ratio:
            r["imgs"] = r["imgs"][:, :, :, ::-1]
        return r


@dataclass(frozen=True)
class Normalize:
    """(pixels - mean) / std per channel on the 0-255 scale -> float32."""

    mean: Sequence[float] = IMAGENET_MEAN
    std: Sequence[float] = IMAGENET_STD

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        mean, std = np.asarray(self.mean, np.float32), np.asarray(self.std, np.float32)
        r["imgs"] = (r["imgs"].astype(np.float32) - mean) / std
        return r


@dataclass(frozen=True)
class FormatShape:
    """imgs [V, F, H, W, C] -> input [V', C, T, H, W].

    NCTHW: each of the num_clips clips is a view (T = clip_len). NCHW: frames are segments of one view
    (T = F); num_segments splits F into F / num_segments temporal views, view j taking frames j, j+k, ...
    NCHW_Flow: each segment of clip_len frames becomes clip_len - 1 optical-flow fields stacked as channels
    (x1, y1, x2, y2, ...; trainers.flow, normalised there), segments on T.
    """

    input_format: str
    num_segments: int | None = None
    bound: float = 20.0

    def __post_init__(self) -> None:
        if self.input_format not in FORMATS:
            raise ValueError(f"input_format must be one of {list(FORMATS)}, got {self.input_format!r}")

    def apply(self, r: dict, rng: np.random.Generator) -> dict:
        imgs = r["imgs"]
        v, f, h, w, c = imgs.shape
        if self.input_format == "NCTHW":
            n, t = r["num_clips"], r["clip_len"]
            x = imgs.reshape(v * n, t, h, w, c).transpose(0, 4, 1, 2, 3)
        elif self.input_format == "NCHW":
            k = f // self.num_segments if self.num_segments and f % self.num_segments == 0 else 1
            x = imgs.reshape(v, f // k, k, h, w, c).transpose(0, 2, 5, 1, 3, 4).reshape(v * k, c, f // k, h, w)
        else:
            from trainers.flow import flow_stack

            segs, t = r["num_clips"], r["clip_len"]
            if t < 2:
                raise ValueError("NCHW_Flow needs clip_len >= 2 (flow between consecutive frames)")
            stacks = [flow_stack(view.reshape(segs, t, h, w, c), bound=self.bound) for view in imgs]
            x = np.stack(stacks)  # [V, 2(t-1), segs, h, w]
            k = segs // self.num_segments if self.num_segments and segs % self.num_segments == 0 else 1
            x = x.reshape(v, x.shape[1], segs // k, k, h, w).transpose(0, 3, 1, 2, 4, 5)
            x = x.reshape(v * k, -1, segs // k, h, w)
        r["input"] = np.ascontiguousarray(x, dtype=np.float32)
        return r


STEPS = {
    "SampleFrames": SampleFramesStep,
    "Resize": Resize,
    "RandomRescale": RandomRescale,
    "RandomCrop": RandomCrop,
    "RandomResizedCrop": RandomResizedCrop,
    "MultiScaleCrop": MultiScaleCrop,
    "CenterCrop": CenterCrop,
    "ThreeCrop": ThreeCrop,
    "TenCrop": TenCrop,
    "Flip": Flip,
    "Normalize": Normalize,
    "FormatShape": FormatShape,
}


@dataclass(frozen=True)
class Pipeline:
    """SampleFrames, then (after the caller decodes those frames) the pixel steps, ending with FormatShape."""

    sampler: SampleFramesStep
    steps: tuple

    def indices(self, total_frames: int, fps: float | None, rng: np.random.Generator) -> dict:
        """The first stage: which frames to decode (`frame_inds`), plus what FormatShape needs later."""
        return self.sampler.apply({"total_frames": int(total_frames), "fps": fps}, rng)

    def finish(self, r: dict, frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The second stage: decoded frames [F, H, W, 3] -> model input [V, C, T, H, W] float32."""
        r["imgs"] = np.asarray(frames)[None]
        for step in self.steps:
            r = step.apply(r, rng)
        return r["input"]

    @functools.cached_property
    def split_fixed(self) -> tuple["Pipeline", "Pipeline", str]:
        """(the leading Resize steps, which treat every frame alike and draw nothing at random; the rest; a cache key
        naming the first): a dataset may run the first on a whole decoded segment once and cache the result."""
        k = 0
        while k < len(self.steps) and isinstance(self.steps[k], Resize):
            k += 1
        return (dataclasses.replace(self, steps=self.steps[:k]), dataclasses.replace(self, steps=self.steps[k:]),
                repr(self.steps[:k]))

    def prepare(self, frames: np.ndarray) -> np.ndarray:
        """Frames [F, H, W, 3] through this pipeline's steps (fixed ones only: no rng, no FormatShape)."""
        r = {"imgs": np.asarray(frames)[None]}
        for step in self.steps:
            r = step.apply(r, None)
        return r["imgs"][0]

    def with_sampler(self, **changes: Any) -> "Pipeline":
        return dataclasses.replace(self, sampler=dataclasses.replace(self.sampler, **changes))

    def with_format(self, **changes: Any) -> "Pipeline":
        steps = tuple(dataclasses.replace(s, **changes) if isinstance(s, FormatShape) else s for s in self.steps)
        return dataclasses.replace(self, steps=steps)


def build_pipeline(cfg: Sequence[Mapping[str, Any]], where: str = "pipeline") -> Pipeline:
    """A Pipeline from `[{type: SampleFrames, ...}, ..., {type: FormatShape, ...}]`; bad names/keys list the valid ones."""
    if not isinstance(cfg, Sequence) or isinstance(cfg, (str, bytes)) or not cfg:
        raise ConfigError(f"{where}: expected a non-empty list of steps, got {cfg!r}")
    steps = tuple(build_from(STEPS, step, f"{where}[{i}]") for i, step in enumerate(cfg))
    if not isinstance(steps[0], SampleFramesStep):
        raise ConfigError(f"{where}: the first step must be SampleFrames (it picks the frames to decode), "
                          f"got {cfg[0].get('type')!r}")
    if not isinstance(steps[-1], FormatShape):
        raise ConfigError(f"{where}: the last step must be FormatShape, got {cfg[-1].get('type')!r}")
    if any(isinstance(s, (SampleFramesStep, FormatShape)) for s in steps[1:-1]):
        raise ConfigError(f"{where}: SampleFrames comes first and FormatShape last, each once")
    return Pipeline(steps[0], steps[1:])
