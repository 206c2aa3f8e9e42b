"""Teacher scoring (OmniSource §4): every usable row of a manifest through the teacher for its media type.

Images go through a 2D teacher, videos through a 3D teacher (any checkpoint written by `curate train`). Each row
gets `teacher_score` (probability of its own label), `teacher_pred` and `teacher_top5` (label ids of the
manifest's class list) and `teacher_sha`; the penultimate embedding and the class probabilities go to a
side Parquet file keyed by (item_id, teacher_sha) (curate/clean/sidefile.py). Rows already scored by the same
checkpoint are skipped, and results are committed shard by shard (curate.core.executor: in this process, spawned
processes or Ray workers), so a killed run or worker loses only the shards in flight. A teacher whose classes differ
from the manifest's is matched by class name, or through a mapping file (curate/clean/classes.py). A teacher handed
to another process travels as its checkpoint path and hash and is loaded there once per worker process.
"""
from __future__ import annotations

import hashlib
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from curate import media
from curate.clean.classes import ClassMatch, manifest_classes, match_classes
from curate.clean.sidefile import write_embeddings
from curate.core.executor import ExecutorSpec, RowWriter, ShardContext, ShardResult, split, worker_cached

if TYPE_CHECKING:
    from trainers.sources import Holdout

TOP_K = 5


@dataclass
class Teacher:
    """A loaded checkpoint: model in eval mode, its meta, the weights hash and the device it runs on."""

    path: Path
    model: torch.nn.Module
    meta: dict[str, Any]
    device: torch.device

    @property
    def sha(self) -> str:
        return str(self.meta["sha256"])

    @property
    def classes(self) -> list[str]:
        return list(self.meta["classes"])

    @property
    def is_2d(self) -> bool:
        return next(iter(self.meta["input"].values())).get("input_format") != "NCTHW"

    @property
    def unheld_sources(self) -> list[str]:
        """The sources beyond its first (the target) that it trained on without leaving a fold out: rows of those
        it may have seen, so its probabilities for them are in-sample."""
        return [str(s.get("name")) for s in self.meta.get("sources", [])[1:] if not s.get("holdout")]

    @property
    def holdout(self) -> Holdout | None:
        """The fold its training left out (a cross-fitted teacher scores only those rows), or None."""
        from trainers.sources import Holdout

        found = {str(s["holdout"]) for s in self.meta.get("sources", []) if s.get("holdout")}
        if len(found) > 1:
            raise ValueError(f"{self.path}: its sources hold out different folds ({sorted(found)}), so which rows it "
                             "has not seen is not one fold")
        return Holdout.parse(found.pop()) if found else None

    def __reduce__(self):
        """Pickled (to a spawned process or a Ray worker) as its checkpoint path and hash: the worker loads it once."""
        return worker_teacher, (str(self.path), self.sha)


def worker_teacher(path: str, sha: str) -> Teacher:
    """The teacher at path, loaded once per process (on its GPU when it has one); its hash must still be sha."""
    teacher = worker_cached(("teacher", path, sha), lambda: load_teacher(path))
    if teacher.sha != sha:
        raise ValueError(f"{path} changed on disk since scoring started (sha {teacher.sha[:12]}, not {sha[:12]})")
    return teacher


def pick_device(device: str | torch.device | None = None) -> torch.device:
    """The given device, else cuda when present, else cpu."""
    return torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))


def load_teacher(path: str | Path, device: str | torch.device | None = None) -> Teacher:
    """A Teacher from a self-describing checkpoint (weights_only load, hash verified)."""
    from trainers.checkpoint import load_checkpoint

    dev = pick_device(device)
    model, meta = load_checkpoint(path, dev)
    return Teacher(Path(path), model, meta, dev)


@dataclass
class Ensemble:
    """Teachers of the same classes scoring together: class probabilities combined by geometric mean, embeddings
    from the first member that scored the row. One member is that teacher alone (same sha, same scores). views
    (clips, crops) overrides every member's own test views, e.g. (1, 10): TenCrop, five crops and their mirror
    images. Cross-fitted members (trained with a `holdout` source) score only the rows of the fold they left out;
    they come as whole sets, one checkpoint per fold of a (folds, seed) split, so every row is scored by a member
    that never trained on it."""

    members: list[Teacher]
    views: tuple[int, int] | None = None

    def __post_init__(self) -> None:
        if not self.members:
            raise ValueError("an ensemble needs at least one teacher")
        for t in self.members[1:]:
            if t.classes != self.members[0].classes:
                raise ValueError(f"ensemble members must share their classes: {t.path} has {len(t.classes)} classes "
                                 f"that differ from those of {self.members[0].path}")
        splits: dict[tuple[int, int], set[int]] = {}
        for t in self.members:
            if t.holdout is not None:
                splits.setdefault((t.holdout.folds, t.holdout.seed), set()).add(t.holdout.fold)
        for (folds, seed), have in splits.items():
            if len(have) < folds:
                raise ValueError(f"cross-fitted teachers of the {folds}-fold split with seed {seed} lack fold(s) "
                                 f"{sorted(set(range(folds)) - have)}: pass one checkpoint per fold, or the rows "
                                 "of a missing fold would be scored by none of them")

    @property
    def sha(self) -> str:
        """What the scores depend on: the members' weights and, when overridden, the views."""
        if len(self.members) == 1 and self.views is None:
            return self.members[0].sha
        views = "" if self.views is None else "@{}x{}".format(*self.views)
        return hashlib.sha256(("+".join(sorted(t.sha for t in self.members)) + views).encode()).hexdigest()

    @property
    def classes(self) -> list[str]:
        return self.members[0].classes

    def in_sample(self) -> list[str]:
        """'checkpoint (sources)' of every member that trained on web sources without a holdout (its scores of
        those rows are in-sample); empty when every row is scored by models that never trained on it."""
        return [f"{t.path} ({', '.join(t.unheld_sources)})" for t in self.members if t.unheld_sources]

    def score(self, rows: pd.DataFrame, root: str | Path, batch_size: int = 16, workers: int = 0,
              progress: Callable[[int], None] | None = None
              ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, str]]:
        """forward() of every member over the rows it may score, combined; a row any member fails to decode fails."""
        rows = rows.reset_index(drop=True)
        ticker = next((i for i, t in enumerate(self.members) if t.holdout is None), None)
        outs = []
        for i, t in enumerate(self.members):
            mine = np.arange(len(rows)) if t.holdout is None else np.flatnonzero(t.holdout.held_out(rows))
            out = forward(t, loader(ScoreDataset(rows.iloc[mine], root, t, self.views), batch_size, workers),
                          progress if i == ticker else None)
            outs.append(tuple({int(mine[r]): v for r, v in part.items()} for part in out))
        if ticker is None and progress:
            progress(len(rows))
        if len(outs) == 1:
            return outs[0]
        failed = {r: e for _, _, bad in outs for r, e in bad.items()}
        probs, embs = {}, {}
        for r in range(len(rows)):
            mine = [o for o in outs if r in o[0]]
            if r in failed or not mine:
                continue
            logp = np.mean([np.log(np.maximum(o[0][r], 1e-12)) for o in mine], axis=0)
            p = np.exp(logp - logp.max())
            probs[r], embs[r] = p / p.sum(), mine[0][1][r]
        return probs, embs, failed


# ----------------------------------------------------------------------------------------------- forward pass

class ScoreDataset(torch.utils.data.Dataset):
    """Rows as teacher inputs; a row that fails to decode gives (None, error) instead of another row's frames."""

    def __init__(self, rows: pd.DataFrame, root: str | Path, teacher: Teacher, views: tuple[int, int] | None = None):
        from trainers.data import LabelSpace
        from trainers.evaluate import eval_dataset

        space = LabelSpace.from_dict(teacher.meta["labels"])
        self.clips = eval_dataset(rows.reset_index(drop=True), root, teacher.meta["data"], space, views)

    def __len__(self) -> int:
        return len(self.clips)

    def __getitem__(self, i: int) -> tuple[int, Any, str | None]:
        try:
            return i, self.clips.load(i, (0, i)), None
        except media.MediaError as exc:
            return i, None, f"{exc.code}: {exc}"


def _collate(batch: list[tuple[int, Any, str | None]]) -> tuple[list[int], torch.Tensor | None, dict[int, str]]:
    ok = [(i, x) for i, x, _ in batch if x is not None]
    failed = {i: err for i, x, err in batch if x is None}
    x = torch.from_numpy(np.stack([x for _, x in ok])) if ok else None
    return [i for i, _ in ok], x, failed


def loader(dataset: torch.utils.data.Dataset, batch_size: int, workers: int) -> torch.utils.data.DataLoader:
    """Batches in row order; decoding happens in `workers` processes."""
    return torch.utils.data.DataLoader(dataset, batch_size=max(1, batch_size), shuffle=False, num_workers=workers,
                                       collate_fn=_collate, pin_memory=torch.cuda.is_available())


@torch.no_grad()
def forward(teacher: Teacher, batches, progress: Callable[[int], None] | None = None
            ) -> tuple[dict[int, np.ndarray], dict[int, np.ndarray], dict[int, str]]:
    """({row: class probabilities}, {row: view-averaged embedding}, {row: decode error}) in one pass per batch."""
    from trainers.evaluate import autocast

    model, dev = teacher.model, teacher.device
    probs, embs, failed = {}, {}, {}
    for rows, x, bad in batches:
        failed.update(bad)
        if x is not None:
            x = x.to(dev, non_blocking=True)
            n, v = x.shape[:2]
            with autocast(dev, amp=True):
                e = model.embed(x)
                logits = model.cls_head.classify(e).float().reshape(n, v, -1)
            p = logits.softmax(-1).mean(1) if model.average_clips == "prob" else logits.mean(1).softmax(-1)
            e = e.float().reshape(n, v, -1).mean(1)
            for k, r in enumerate(rows):
                probs[r], embs[r] = p[k].cpu().numpy(), e[k].cpu().numpy()
        if progress:
            progress(len(rows) + len(bad))
    return probs, embs, failed


# ----------------------------------------------------------------------------------------------- scoring a manifest

@dataclass
class ScoreReport:
    scored: dict[str, int] = field(default_factory=dict)     # media -> rows scored in this run
    reused: dict[str, int] = field(default_factory=dict)     # media -> rows already scored by the same checkpoint
    failed: int = 0                                          # rows that failed to decode (status failed)
    no_teacher: int = 0                                      # usable rows of a media type without a teacher
    unmatched_labels: dict[str, list[str]] = field(default_factory=dict)   # media -> classes the teacher lacks
    unmatched_teacher: dict[str, list[str]] = field(default_factory=dict)  # media -> teacher classes not here
    seconds: float = 0.0
    run: ShardResult | None = None                           # how the shards went (failed ones stay unscored)

    def rows_per_s(self) -> float:
        return sum(self.scored.values()) / self.seconds if self.seconds else 0.0


def inspection_only(df: pd.DataFrame) -> pd.Series:
    """Rows written only to be looked at (mp4 pseudo-videos of images): never scored, filtered or counted."""
    return df["source"].eq("pseudo").fillna(False).astype(bool)


def scorable(df: pd.DataFrame) -> pd.Series:
    """Rows a teacher looks at: status ok with a file and a label."""
    return (df["status"] == "ok") & df["path"].notna() & df["label_id"].notna() & ~inspection_only(df)


def apply_scores(df: pd.DataFrame, index: list[int], probs: np.ndarray, match: ClassMatch, sha: str) -> None:
    """Write teacher columns of rows `index` (positions in df) from teacher probabilities [n, C_teacher]."""
    order = np.argsort(-probs, axis=1, kind="stable")[:, :TOP_K]
    labels = df["label_id"].to_numpy()[index].astype(np.int64)
    own = np.array([match.to_teacher.get(int(lab), -1) for lab in labels])
    score = np.where(own >= 0, probs[np.arange(len(index)), np.maximum(own, 0)], np.nan).astype(np.float32)
    cols = {c: df.columns.get_loc(c) for c in ("teacher_score", "teacher_pred", "teacher_top5", "teacher_sha")}
    for k, pos in enumerate(index):
        df.iat[pos, cols["teacher_score"]] = score[k]
        df.iat[pos, cols["teacher_pred"]] = int(match.to_label[order[k, 0]])
        df.iat[pos, cols["teacher_top5"]] = [int(match.to_label[t]) for t in order[k]]
        df.iat[pos, cols["teacher_sha"]] = sha


SCORED = ("teacher_score", "teacher_pred", "teacher_top5", "teacher_sha", "status", "error")


def label_probs(probs: np.ndarray, match: ClassMatch, num_labels: int) -> np.ndarray:
    """A teacher's class probabilities over the manifest's label ids 0..num_labels-1 (0 where it lacks the class)."""
    out = np.zeros(num_labels, np.float32)
    for lab, t in match.to_teacher.items():
        out[lab] = probs[t]
    return out


def score_shard(shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    """One shard of rows of one media through its teacher (a shard function for curate.core.executor): the rows with
    their teacher columns, failed decodes as `failed`, and the `embedding` and `probs` (over the manifest's label
    ids) columns the driver takes off."""
    o = ctx.options
    kind = shard["media"].iloc[0]
    teacher, match = o["teachers"][kind], o["matches"][kind]
    rows = shard.reset_index(drop=True).copy()
    rows["teacher_top5"] = rows["teacher_top5"].astype(object)
    probs, embs, failed = teacher.score(rows, o["root"], o["batch_size"], o["decode_workers"], o.get("tick"))
    good = sorted(probs)
    if good:
        apply_scores(rows, good, np.stack([probs[r] for r in good]), match, teacher.sha)
    for r, err in failed.items():
        rows.loc[r, ["status", "error"]] = ["failed", err]
    return rows.assign(embedding=[embs.get(r) for r in range(len(rows))],
                       probs=[label_probs(probs[r], match, o["num_labels"]) if r in probs else None
                              for r in range(len(rows))])


def score_manifest(df: pd.DataFrame, root: str | Path, teachers: Mapping[str, Teacher | Ensemble],
                   mapping: Mapping[str, str] | None = None, batch_size: int = 16, workers: int = 0,
                   embeddings: str | Path | None = None, commit: Callable[[pd.DataFrame], None] | None = None,
                   progress: Callable[[int, int], None] | None = None, executor: ExecutorSpec | None = None
                   ) -> tuple[pd.DataFrame, ScoreReport]:
    """Score every usable row with the teacher (or ensemble) for its media ('image' / 'video'), in shards of one
    media; commit(rows) after each shard with the shard's rows (scored or failed), so a manifest folder commits in
    O(shard).

    executor: where shards run (default: this process, 256 rows a shard). In this process shards run one at a time
    through the teachers as given, decoding in `workers` DataLoader processes; shards on spawned processes or Ray
    decode in their own process, and the teachers go there as checkpoint paths (loaded once per worker, on its GPU
    when it has one)."""
    t0 = time.perf_counter()
    executor = executor or ExecutorSpec(shard_size=256)
    if executor.local:
        executor = replace(executor, workers=1)
    teachers = {kind: t if isinstance(t, Ensemble) else Ensemble([t]) for kind, t in teachers.items()}
    df = df.reset_index(drop=True).copy()
    df["teacher_top5"] = df["teacher_top5"].astype(object)
    report = ScoreReport()
    labels = manifest_classes(df)
    num_labels = max(labels, default=-1) + 1
    ok = scorable(df)
    report.no_teacher = int((ok & ~df["media"].isin(list(teachers))).sum())
    shards, matches = [], {}
    for kind, teacher in teachers.items():
        match = matches[kind] = match_classes(teacher.classes, labels, mapping)
        report.unmatched_labels[kind], report.unmatched_teacher[kind] = list(match.unmatched_labels), list(
            match.unmatched_teacher)
        mine = ok & (df["media"] == kind) & df["label_id"].isin(list(match.to_teacher))
        done = mine & (df["teacher_sha"] == teacher.sha).fillna(False)
        report.reused[kind], report.scored[kind] = int(done.sum()), 0
        shards += split(df[mine & ~done], executor.shard_size)
    rows, total, seen = RowWriter(df), sum(len(s) for s in shards), [0]

    def on_part(part: pd.DataFrame) -> None:
        kind, vecs, probs = part["media"].iloc[0], part.pop("embedding"), part.pop("probs")
        rows.put(part, SCORED)
        if embeddings is not None:
            have = [(i, v, p) for i, v, p in zip(part["item_id"], vecs, probs) if v is not None]
            write_embeddings(embeddings, teachers[kind].sha, {i: v for i, v, _ in have},
                             {i: p for i, _, p in have if p is not None})
        good = int(part["teacher_sha"].notna().sum())
        report.scored[kind] += good
        report.failed += len(part) - good
        if commit:
            commit(part)
        if not executor.local:
            tick(len(part))

    def tick(n: int) -> None:
        seen[0] += n
        if progress:
            progress(seen[0], total)

    options = {"root": str(root), "teachers": teachers, "matches": matches, "batch_size": batch_size,
               "decode_workers": workers if executor.local else 0, "tick": tick if executor.local else None,
               "num_labels": num_labels}
    report.run = executor.run(score_shard, shards, gpu=True, on_part=on_part, options=options)
    report.seconds = time.perf_counter() - t0
    return df, report


def teachers_from_args(image: Sequence[str | Path], video: Sequence[str | Path], device: str | None = None,
                       views: Mapping[str, str | None] | None = None) -> dict[str, Ensemble]:
    """{'image': 2D teacher(s), 'video': 3D teacher(s)} from checkpoint paths; several paths make an ensemble, and
    a checkpoint named for both media is loaded once. views: media -> 'CLIPSxCROPS' replacing the checkpoints'
    own test views."""
    from trainers.inputs import parse_views

    views = views or {}
    out: dict[str, Ensemble] = {}
    loaded: dict[str, Teacher] = {}
    for kind, paths in (("image", image), ("video", video)):
        members = []
        for path in paths:
            key = str(Path(path).resolve())
            loaded[key] = loaded.get(key) or load_teacher(path, device)
            members.append(loaded[key])
        if members:
            out[kind] = Ensemble(members, parse_views(views[kind]) if views.get(kind) else None)
    return out
