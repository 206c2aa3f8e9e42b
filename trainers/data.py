"""Datasets straight over manifests: rows -> decoded frames (curate.media) -> the frame pipeline -> model input.

A sample is addressed by a key `(row, seed)`: the row to load and the seed of its own random generator, so what
a sample looks like depends only on its key (not on worker, order or how often the run was resumed). Video rows
are decoded at the SampleFrames indices; a row whose file is longer than its `start_s`/`end_s` segment is read
inside that window. Image rows become one-frame segments (`frame`, 2D models), static repeats or moving-camera
pseudo-videos (`curate.media.pseudo`). Only rows with `status == 'ok'` are used; the others are counted.
"""
from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from curate import media
from curate.media.pseudo import PSEUDO_MODES, moving_clip, static_clip
from trainers.config import ConfigError
from trainers.transforms import Pipeline

LEVELS = ("label", "element", "set", "event")
MAX_RETRIES = 10


# ----------------------------------------------------------------------------------------------- labels

@dataclass(frozen=True)
class LabelSpace:
    """Class index <-> raw id at one hierarchy level; `parents[level][index]` maps a class to its set/event id."""

    level: str
    ids: tuple[int, ...]
    names: tuple[str, ...]
    parents: dict[str, dict[int, int]] = field(default_factory=dict)

    @property
    def num_classes(self) -> int:
        return len(self.ids)

    def column(self) -> str:
        return "label_id" if self.level == "label" else f"{self.level}_id"

    def index(self, df: pd.DataFrame) -> np.ndarray:
        """Class index of every row (-1 where the row's id is null or not a class of this space)."""
        lookup = {raw: i for i, raw in enumerate(self.ids)}
        col = df[self.column()] if self.column() in df else pd.Series([None] * len(df))
        return np.array([lookup.get(int(v), -1) if pd.notna(v) else -1 for v in col], dtype=np.int64)

    @classmethod
    def from_manifest(cls, df: pd.DataFrame, level: str = "label", names: list[str] | None = None) -> "LabelSpace":
        """Classes of a manifest (all rows, every status, so train and test agree). level 'label' keeps label_id as
        the index (0..max, or 0..len(names) - 1 when the names of every class are given, present or not);
        hierarchy levels number their sorted distinct ids."""
        if level not in LEVELS:
            raise ConfigError(f"label level {level!r} is not one of {list(LEVELS)}")
        col = "label_id" if level == "label" else f"{level}_id"
        name_col = "label" if level == "label" else level
        if col not in df or df[col].notna().sum() == 0:
            raise ConfigError(f"the manifest has no {col} values to train on at level {level!r}")
        known = df[df[col].notna()]
        top = int(known[col].max()) + 1
        if level == "label" and names and top > len(names):
            raise ConfigError(f"label_id {top - 1} has no name among the {len(names)} class names given")
        ids = list(range(len(names) if names else top)) if level == "label" else \
            sorted(int(v) for v in known[col].unique())
        by_id = {int(k): str(v) for k, v in known.groupby(col)[name_col].first().items() if pd.notna(v)}
        class_names = list(names) if names else [by_id.get(i, str(i)) for i in ids]
        if len(class_names) != len(ids):
            raise ConfigError(f"{len(class_names)} class names given for {len(ids)} classes at level {level!r}")
        parents = {}
        if level in ("label", "element"):
            for up in ("set", "event"):
                rows = known[known[f"{up}_id"].notna()] if f"{up}_id" in known else known.iloc[:0]
                pairs = {int(a): int(b) for a, b in rows.groupby(col)[f"{up}_id"].first().items()}
                if pairs:
                    parents[up] = {i: pairs[raw] for i, raw in enumerate(ids) if raw in pairs}
        return cls(level, tuple(ids), tuple(class_names), parents)

    def to_dict(self) -> dict[str, Any]:
        return {"level": self.level, "ids": list(self.ids), "names": list(self.names),
                "parents": {k: {str(i): p for i, p in v.items()} for k, v in self.parents.items()}}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LabelSpace":
        parents = {k: {int(i): int(p) for i, p in v.items()} for k, v in d.get("parents", {}).items()}
        return cls(d["level"], tuple(d["ids"]), tuple(d["names"]), parents)


# ----------------------------------------------------------------------------------------------- manifests

# ----------------------------------------------------------------------------------------------- frames

class FrameCache:
    """Decoded segments kept in memory (least recently used dropped beyond max_bytes); shared by every dataset of
    the process, so several models trained in one process decode each clip once."""

    def __init__(self, max_bytes: int = 0):
        self.max_bytes, self.bytes = int(max_bytes), 0
        self._items: OrderedDict[tuple, np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def grow(self, max_bytes: int) -> None:
        self.max_bytes = max(self.max_bytes, int(max_bytes))

    def get(self, key: tuple, load) -> np.ndarray:
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = load()
        if value.nbytes <= self.max_bytes // 4:
            with self._lock:
                self._items[key] = value
                self.bytes += value.nbytes
                while self.bytes > self.max_bytes:
                    self.bytes -= self._items.popitem(last=False)[1].nbytes
        return value


CACHE = FrameCache()


@dataclass(frozen=True)
class Item:
    path: str
    media: str
    first: int          # first frame of the segment inside the file
    count: int | None   # frames in the segment (None: probe the file)
    fps: float | None


def _item(row: Mapping[str, Any], root: Path) -> Item:
    path, kind = str(root / row["path"]), row.get("media") or "video"
    fps = float(row["fps"]) if pd.notna(row.get("fps")) else None
    frames = int(row["frames"]) if pd.notna(row.get("frames")) else None
    s, e = row.get("start_s"), row.get("end_s")
    if kind == "video" and fps and frames and pd.notna(s) and pd.notna(e):
        file_s = frames / fps
        if abs(file_s - (e - s)) > 1.5 / fps and e <= file_s + 1.0 / fps:  # a window of a longer file
            first = int(math.floor(s * fps + 1e-6))
            return Item(path, kind, first, max(1, min(frames, int(math.ceil(e * fps - 1e-6))) - first), fps)
    return Item(path, kind, 0, 1 if kind == "image" else frames, fps)


class ClipDataset(torch.utils.data.Dataset):
    """Rows of one manifest as model inputs; `dataset[(row, seed)] -> (input, class index)`.

    `pipelines` holds one Pipeline per input stream (key None for single-input models; several give a dict input).
    `cache_bytes` > 0 keeps decoded segments in the process-wide CACHE.
    """

    def __init__(self, rows: pd.DataFrame, root: str | Path, pipelines: Mapping[str | None, Pipeline],
                 labels: np.ndarray | None = None, pseudo: str = "static", pseudo_strength: float = 1.0,
                 cache_bytes: int = 0):
        if pseudo not in PSEUDO_MODES:
            raise ConfigError(f"pseudo must be one of {list(PSEUDO_MODES)}, got {pseudo!r}")
        self.items = [_item(r, Path(root)) for r in rows.to_dict("records")]
        self.item_ids = rows["item_id"].tolist() if "item_id" in rows else [str(i) for i in range(len(rows))]
        self.labels = np.full(len(rows), -1, np.int64) if labels is None else np.asarray(labels, np.int64)
        self.pipelines, self.pseudo, self.pseudo_strength = dict(pipelines), pseudo, pseudo_strength
        self.cache_bytes = int(cache_bytes)
        if self.cache_bytes:
            CACHE.grow(self.cache_bytes)
        self.failures: dict[str, str] = {}

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, key: tuple[int, tuple]) -> tuple[Any, int]:
        row, seed = key
        for attempt in range(MAX_RETRIES):
            i = (row + attempt) % len(self.items)
            try:
                return self.load(i, seed), int(self.labels[i])
            except media.MediaError as exc:
                if self.item_ids[i] not in self.failures:
                    warnings.warn(f"skipping {self.items[i].path}: {exc}", stacklevel=2)
                self.failures[self.item_ids[i]] = str(exc)
        raise RuntimeError(f"{MAX_RETRIES} rows in a row failed to decode, starting at {self.items[row].path}")

    def load(self, i: int, seed: tuple | int) -> Any:
        """Input of row i: an array [V, C, T, H, W], or a dict of them for multi-stream models."""
        rng = np.random.default_rng(seed)
        out = {name: self._one(self.items[i], p, np.random.default_rng(rng.integers(2 ** 63)))
               for name, p in self.pipelines.items()}
        return out[None] if list(out) == [None] else out

    def _one(self, item: Item, pipeline: Pipeline, rng: np.random.Generator) -> np.ndarray:
        if item.media == "image":
            return self._image(item, pipeline, rng)
        count = item.count if item.count is not None else media.probe(item.path).frames
        r = pipeline.indices(count, item.fps, rng)
        inds = np.asarray(r["frame_inds"]) + item.first
        if not self.cache_bytes:
            return pipeline.finish(r, media.read_frames(item.path, inds), rng)
        fixed, rest, key = pipeline.split_fixed   # the segment is cached already resized
        seg = CACHE.get(("video", item.path, item.first, count, key),
                        lambda: fixed.prepare(media.read_frames(item.path, range(item.first, item.first + count))))
        return rest.finish(r, seg[inds - item.first], rng)

    def _image(self, item: Item, pipeline: Pipeline, rng: np.random.Generator) -> np.ndarray:
        if self.cache_bytes and self.pseudo != "moving":   # static / frame: resizing the image = resizing each copy
            fixed, pipeline, key = pipeline.split_fixed
            image = CACHE.get(("image", item.path, key),
                              lambda: fixed.prepare(media.read_image(item.path)[None])[0])
        elif self.cache_bytes:
            image = CACHE.get(("image", item.path), lambda: media.read_image(item.path))
        else:
            image = media.read_image(item.path)
        if self.pseudo == "frame":
            pipeline = pipeline.with_sampler(clip_len=1, frame_interval=1, num_clips=1).with_format(num_segments=None)
            r = pipeline.indices(1, None, rng)
            return pipeline.finish(r, image[None], rng)
        s = pipeline.sampler
        length = max(s.clip_len * s.frame_interval * s.num_clips, s.clip_len)
        r = pipeline.indices(length, None, rng)
        if self.pseudo == "static":
            frames = static_clip(image, len(r["frame_inds"]))
        else:
            frames = moving_clip(image, r["frame_inds"], rng, length=length, strength=self.pseudo_strength)
        return pipeline.finish(r, frames, rng)


# ----------------------------------------------------------------------------------------------- batches

@dataclass
class Group:
    """Samples of one source with one input shape, stacked: x [n, V, C, T, H, W] (or a dict of those), y [n]."""

    source: int
    x: Any
    y: torch.Tensor

    def __len__(self) -> int:
        return len(self.y)

    def to(self, device: torch.device | str) -> "Group":
        def move(t: torch.Tensor) -> torch.Tensor:
            return t.to(device, non_blocking=True)

        x = {k: move(v) for k, v in self.x.items()} if isinstance(self.x, dict) else move(self.x)
        return Group(self.source, x, move(self.y))


def _shape(x: Any) -> tuple:
    return tuple(sorted((k, v.shape) for k, v in x.items())) if isinstance(x, dict) else x.shape


def collate_groups(batch: list[tuple[int, Any, int]]) -> list[Group]:
    """[(source, input, label)] -> one Group per (source, input shape), in order of first appearance."""
    groups: dict[tuple, list] = {}
    for src, x, y in batch:
        groups.setdefault((src, _shape(x)), []).append((x, y))
    out = []
    for (src, _), items in groups.items():
        xs = [x for x, _ in items]
        x = ({k: torch.from_numpy(np.stack([d[k] for d in xs])) for k in xs[0]} if isinstance(xs[0], dict)
             else torch.from_numpy(np.stack(xs)))
        out.append(Group(src, x, torch.tensor([y for _, y in items], dtype=torch.long)))
    return out


class MixedDataset(torch.utils.data.Dataset):
    """Several ClipDatasets behind one loader: `mixed[(source, row, seed)] -> (source, input, label)`."""

    def __init__(self, datasets: list[ClipDataset]):
        self.datasets = datasets

    def __len__(self) -> int:
        return sum(len(d) for d in self.datasets)

    def __getitem__(self, key: tuple[int, int, tuple]) -> tuple[int, Any, int]:
        src, row, seed = key
        x, y = self.datasets[src][(row, seed)]
        return src, x, y


def make_loader(datasets: list[ClipDataset], batch_sampler, workers: int = 0, seed: int = 0
                ) -> torch.utils.data.DataLoader:
    """One loader over all sources; batches are lists of Groups. Its own torch generator keeps the global RNG (and
    so dropout after a resume) untouched by loader creation."""
    return torch.utils.data.DataLoader(
        MixedDataset(datasets), batch_sampler=batch_sampler, collate_fn=collate_groups, num_workers=workers,
        persistent_workers=workers > 0, generator=torch.Generator().manual_seed(seed),
        pin_memory=torch.cuda.is_available())
