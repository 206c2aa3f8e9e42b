"""Mixed-source training (OmniSource §6): a target manifest plus auxiliary ones in every iteration.

Semantics, exactly:
- The first source is the **target**. It defines the epoch: one epoch = ceil(len(target) / batch) iterations over
  a fresh permutation of its rows (seeded by seed and epoch). The last batch of an epoch may be smaller.
- Every iteration also takes `batch` rows from each **auxiliary** source (`share` x the target batch, rounded,
  at least 1, or `batch=N`). Auxiliary rows come from an endless stream of passes over the source; each pass is a
  permutation or, with `power=p`, len(source) draws with replacement where class c is drawn with probability
  proportional to n_c^p (p=1: as the data is, p=0: classes uniform; OmniSource used 0.2-0.5). The stream position
  is a pure function of the global iteration, so resuming needs no sampler state beyond (epoch, step).
- The loss of an iteration is one optimizer step on sum over sources of `weight` x (mean cross-entropy over that
  source's clips) — the paper's L = CE(B_T) + CE(B_A), not MMAction2 0.x's one-step-per-loader runner.
- Optional cross-dataset mixup (trainers.train): the first k = min(|B_T|, |B_A|) target clips are blended with the
  aux clips, x = lam x_T + (1 - lam) x_A, lam ~ Beta(alpha, alpha), target lam y_T + (1 - lam) y_A, inside the
  target's term.
Images and videos may share a source: samples are grouped by input shape (2D models take images as one-frame
segments) and a source's mean is over all its groups.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path

import numpy as np
import pandas as pd

from curate.core import manifest as mf
from trainers.config import ConfigError

SOURCE_KEYS = ("split", "weight", "share", "batch", "power", "pseudo", "root", "media", "origin", "holdout")


@dataclass(frozen=True)
class Holdout:
    """Rows of fold `fold` (of `folds`, assigned by curate.core.manifest.fold_of with `seed`) left out of training, so
    the model can score them as unseen: a cross-fitted teacher. Written FOLD/FOLDS[@SEED], e.g. 0/2@1."""

    fold: int
    folds: int
    seed: int = 0

    @classmethod
    def parse(cls, text: str) -> Holdout:
        head, _, seed = str(text).partition("@")
        fold, slash, folds = head.partition("/")
        try:
            out = cls(int(fold), int(folds), int(seed or 0))
        except ValueError:
            out = None
        if not slash or out is None or out.folds < 2 or not 0 <= out.fold < out.folds:
            raise ConfigError(f"holdout {text!r} is not FOLD/FOLDS[@SEED] with FOLDS >= 2 and 0 <= FOLD < FOLDS")
        return out

    def __str__(self) -> str:
        return f"{self.fold}/{self.folds}@{self.seed}"

    def held_out(self, df: pd.DataFrame) -> np.ndarray:
        """Which rows of df this holdout leaves out (and a cross-fitted teacher may therefore score)."""
        return mf.fold_of(df, self.folds, self.seed) == self.fold


@dataclass
class Source:
    """One manifest in a run. `manifest` is a Parquet path or an already loaded DataFrame."""

    name: str
    manifest: str | Path | pd.DataFrame
    split: str | None = None
    weight: float = 1.0
    share: float | None = None
    batch: int | None = None
    power: float | None = None
    pseudo: str | None = None
    root: str | Path | Mapping[str, str] | None = None   # one folder, or NAME -> folder (curate.core.manifest.media_paths)
    media: str | None = None
    origin: str | None = None        # only rows of this manifest `source` (e.g. web_image, feed_video, clip)
    holdout: str | None = None       # FOLD/FOLDS[@SEED]: that fold's rows are not trained on (Holdout)
    extra: dict = field(default_factory=dict)

    def batch_size(self, target_batch: int) -> int:
        if self.batch is not None:
            return int(self.batch)
        return max(1, round(target_batch * (1.0 if self.share is None else float(self.share))))

    def describe(self) -> dict:
        """Plain dict for logs and checkpoints (a DataFrame manifest is named by its row count)."""
        d = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in ("manifest", "extra")}
        m = self.manifest
        d["manifest"] = f"<DataFrame {len(m)} rows>" if isinstance(m, pd.DataFrame) else str(m)
        return {k: (str(v) if isinstance(v, Path) else v) for k, v in d.items()}


def parse_source(text: str, default_name: str | None = None) -> Source:
    """`NAME=PATH[:key=value,...]`, e.g. `web=omni.parquet:weight=1,share=0.5,power=0.5`; keys: SOURCE_KEYS."""
    name, sep, rest = text.partition("=")
    if not sep or not name.strip().isidentifier():
        name, rest = default_name or "target", text
    path, opts = rest, ""
    head, colon, tail = rest.rpartition(":")
    if colon and "=" in tail:
        path, opts = head, tail
    src = Source(name=name.strip(), manifest=Path(path))
    for pair in filter(None, (p.strip() for p in opts.split(","))):
        key, eq, value = pair.partition("=")
        if not eq or key not in SOURCE_KEYS:
            raise ConfigError(f"source {text!r}: {pair!r} is not KEY=VALUE with KEY in {list(SOURCE_KEYS)}")
        if key == "holdout":
            src.holdout = str(Holdout.parse(value))
            continue
        try:
            cast = {"weight": float, "share": float, "power": float, "batch": int}.get(key, str)
            setattr(src, key, cast(value))
        except ValueError as exc:
            raise ConfigError(f"source {text!r}: {key} needs a number, got {value!r}") from exc
    return src


def auxiliary_sources(df: pd.DataFrame, manifest: str | Path, root: str | Path | Mapping[str, str] | None = None
                      ) -> list[Source]:
    """OmniSource's auxiliary sources of a merged manifest: its rows outside the target splits (train, val, test),
    one source per split, manifest `source` and media (images train as frames for 2D models, as pseudo-videos for
    3D ones), each with the default mixing (share 1, weight 1, no class re-balancing), in a stable order."""
    aux = df[~df["split"].isin(["train", "val", "test"]) & df["split"].notna()]
    groups = aux.groupby(["split", "source", "media"]).size()
    twice = {s for s, n in groups.groupby(level=1).size().items() if n > 1}   # a source with two media or splits
    out = []
    for split, source, media in sorted(groups.index):
        name = source if source not in twice else f"{source}_{media}" + ("" if split == "web" else f"_{split}")
        out.append(Source(name, manifest, split=split, root=root, media=media, origin=source))
    return out


def load_source(src: Source) -> tuple[pd.DataFrame, Path | None]:
    """The source's manifest rows (filtered by media and origin if asked, holdout fold left out) and the path it
    came from."""
    if isinstance(src.manifest, pd.DataFrame):
        df, path = src.manifest, None
    else:
        path = Path(src.manifest)
        df = mf.read(path)
    if src.media:
        df = df[df["media"] == src.media]
    if src.origin:
        df = df[df["source"] == src.origin]
    if src.holdout:
        df = df[~Holdout.parse(src.holdout).held_out(df)]
    return df, path


# ----------------------------------------------------------------------------------------------- sampling

def balanced_draw(labels: np.ndarray, power: float, size: int, rng: np.random.Generator) -> np.ndarray:
    """`size` row indices drawn with replacement, class c with probability n_c^power / sum_c' n_c'^power."""
    classes, inverse, counts = np.unique(labels, return_inverse=True, return_counts=True)
    class_w = counts.astype(np.float64) ** power
    class_w /= class_w.sum()
    p = class_w[inverse] / counts[inverse]
    return rng.choice(len(labels), size=size, replace=True, p=p / p.sum())


@dataclass(frozen=True)
class Stream:
    """How one source is drawn: rows, their labels, rows per iteration, class-balance power (None: permutation)."""

    size: int
    labels: np.ndarray
    batch: int
    power: float | None = None


class MixedBatchSampler:
    """Yields, per iteration, the keys `(source, row, seed)` of the target batch and of every auxiliary batch.

    `set_epoch(epoch, start_step)` positions it; iterating gives the remaining iterations of that epoch.
    """

    def __init__(self, streams: Sequence[Stream], seed: int = 0):
        if not streams or streams[0].size == 0:
            raise ConfigError("the target source has no usable rows")
        for i, s in enumerate(streams):
            if s.size == 0:
                raise ConfigError(f"auxiliary source {i} has no usable rows")
        self.streams, self.seed = list(streams), int(seed)
        self.steps_per_epoch = math.ceil(streams[0].size / streams[0].batch)
        self.epoch, self.start_step = 0, 0
        self._orders: dict[tuple[int, int], np.ndarray] = {}

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.epoch, self.start_step = int(epoch), int(start_step)

    def __len__(self) -> int:
        return self.steps_per_epoch - self.start_step

    def _order(self, src: int, rnd: int) -> np.ndarray:
        """Rows of source src in round rnd (target: epoch; aux: pass), cached for the current rounds only."""
        key = (src, rnd)
        if key not in self._orders:
            self._orders = {k: v for k, v in self._orders.items() if k[0] != src}
            s, rng = self.streams[src], np.random.default_rng([self.seed, src, rnd])
            self._orders[key] = (rng.permutation(s.size) if s.power is None
                                 else balanced_draw(s.labels, s.power, s.size, rng))
        return self._orders[key]

    def batch(self, epoch: int, step: int) -> list[tuple[int, int, tuple]]:
        """The keys of iteration `step` of `epoch`."""
        t = self.streams[0]
        order = self._order(0, epoch)
        lo = step * t.batch
        keys = [(0, int(order[p]), (self.seed, 0, epoch, p)) for p in range(lo, min(lo + t.batch, t.size))]
        g = epoch * self.steps_per_epoch + step
        for src in range(1, len(self.streams)):
            s = self.streams[src]
            for pos in range(g * s.batch, (g + 1) * s.batch):
                rnd, off = divmod(pos, s.size)
                keys.append((src, int(self._order(src, rnd)[off]), (self.seed, src, rnd, off)))
        return keys

    def __iter__(self):
        for step in range(self.start_step, self.steps_per_epoch):
            yield self.batch(self.epoch, step)


class SequentialBatchSampler:
    """Evaluation: rows in order, fixed seeds (test pipelines are deterministic anyway)."""

    def __init__(self, size: int, batch: int, seed: int = 0):
        self.size, self.batch_rows, self.seed = size, max(1, batch), seed

    def __len__(self) -> int:
        return math.ceil(self.size / self.batch_rows)

    def __iter__(self):
        for lo in range(0, self.size, self.batch_rows):
            yield [(0, r, (self.seed, r)) for r in range(lo, min(lo + self.batch_rows, self.size))]


class RankShard:
    """One rank's part of every iteration of a MixedBatchSampler under data parallelism: of each source's keys, every
    `world`-th starting at `rank` (so the cross-dataset mixup pairs, target i with aux i, stay on one rank). The
    global batch, its order and every sample's seed are those of one process. A rank left without keys (a short
    last batch) gets the iteration's first key, which the loop weights 0, so every rank still runs forward and
    backward."""

    def __init__(self, sampler: MixedBatchSampler, rank: int, world: int):
        self.sampler, self.rank, self.world = sampler, int(rank), int(world)
        self.steps_per_epoch = sampler.steps_per_epoch

    def set_epoch(self, epoch: int, start_step: int = 0) -> None:
        self.sampler.set_epoch(epoch, start_step)

    def __len__(self) -> int:
        return len(self.sampler)

    def split(self, keys: list[tuple[int, int, tuple]]) -> tuple[list[tuple[int, int, tuple]], dict[int, int], bool]:
        """(this rank's keys, global clip count per source, whether the keys are padding)."""
        by_source: dict[int, list] = {}
        for key in keys:
            by_source.setdefault(key[0], []).append(key)
        mine = [k for ks in by_source.values() for k in ks[self.rank::self.world]]
        counts = {src: len(ks) for src, ks in by_source.items()}
        return (mine, counts, False) if mine else (keys[:1], counts, True)

    def batch(self, epoch: int, step: int) -> tuple[list[tuple[int, int, tuple]], dict[int, int], bool]:
        return self.split(self.sampler.batch(epoch, step))

    def __iter__(self):
        for step in range(self.sampler.start_step, self.steps_per_epoch):
            yield self.batch(self.sampler.epoch, step)[0]
