"""Near-duplicate removal (OmniSource §3): web rows too close to a target val/test row, and copies inside the web.

Items become frame-level vectors (a video gives `frames` evenly spread frames, an image one), L2-normalised, so
inner product = cosine similarity; faiss searches them. Embedders: `pixels` (a small thumbnail per frame with
each channel standardised: robust to re-encoding, small crops and colour shifts) or `teacher` (the checkpoint's
penultimate embedding of the whole item). A web row whose best frame pair with any val/test row reaches the
threshold is rejected `duplicate_of_val` with `dup_of`/`dup_sim`; web rows close to each other are collapsed to
the one the teacher scored highest (the others: `near_duplicate`). Against val/test the index is exact (flat) up to
FLAT_MAX indexed vectors and IVF beyond; inside the web the search is exact up to WITHIN_EXACT_MAX vectors and
clustered beyond (curate/clean/clusters.py: k-means, then exact comparisons inside each cluster and the clusters
its vectors probe), on the GPUs when faiss sees any; the choices are reported. Items are embedded in shards through
curate.core.executor (threads here, spawned processes or Ray workers), each shard's vectors committed to the side
file as it finishes, and the clustered search runs there too. Checked rows keep `dup_sim` (their best
similarity), so a rerun checks only new rows and embeds only items missing from the side file.
"""
from __future__ import annotations

import math
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import pandas as pd

from curate import media
from curate.clean.clusters import within_pairs
from curate.clean.sidefile import read_embeddings, write_embeddings
from curate.clean.teacher import ScoreDataset, Teacher, forward, loader
from curate.core.executor import ExecutorSpec, ShardContext, ShardResult

FLAT_MAX = 200_000          # val/test vectors up to this many: exact search; beyond: IVF
WITHIN_EXACT_MAX = 20_000   # web vectors up to this many: exact search among them; beyond: clusters (clusters.py)


@dataclass(frozen=True)
class PixelEmbedder:
    """side x side x 3 thumbnails of `frames` frames per video, each channel standardised."""

    side: int = 16
    frames: int = 4

    @property
    def key(self) -> str:
        return f"pixels-{self.side}x{self.frames}"

    def __call__(self, rows: pd.DataFrame, root: Path) -> dict[str, np.ndarray]:
        return {r["item_id"]: self.vectors(root / r["path"], r) for r in rows.to_dict("records")}

    def vectors(self, path: Path, row: Mapping) -> np.ndarray:
        if row.get("media") == "image":
            frames = media.read_image(path)[None]
        else:
            n = int(row["frames"]) if pd.notna(row.get("frames")) else media.probe(path).frames
            first, last = 0, n - 1
            if pd.notna(row.get("start_s")) and pd.notna(row.get("end_s")) and pd.notna(row.get("fps")):
                first = min(n - 1, int(float(row["start_s"]) * float(row["fps"])))
                last = max(first, min(n - 1, math.ceil(float(row["end_s"]) * float(row["fps"])) - 1))
            frames = media.read_frames(path, np.unique(np.linspace(first, last, self.frames).round().astype(int)))
        out = []
        for f in frames:
            t = cv2.resize(f, (self.side, self.side), interpolation=cv2.INTER_AREA).astype(np.float32)
            t = (t - t.mean(axis=(0, 1))) / (t.std(axis=(0, 1)) + 1.0)
            out.append(t.reshape(-1))
        return normalise(np.stack(out))


@dataclass
class TeacherEmbedder:
    """The teacher's penultimate embedding of each item (one vector per item)."""

    teacher: Teacher
    batch_size: int = 16
    workers: int = 0

    @property
    def key(self) -> str:
        return self.teacher.sha

    def __call__(self, rows: pd.DataFrame, root: Path) -> dict[str, np.ndarray]:
        out = {}
        for _, part in rows.groupby("media"):  # images and videos make inputs of different shapes
            part = part.reset_index(drop=True)
            _, embs, _ = forward(self.teacher, loader(ScoreDataset(part, root, self.teacher), self.batch_size,
                                                      self.workers))
            out.update({part.at[i, "item_id"]: normalise(e[None]) for i, e in embs.items()})
        return out


def normalise(v: np.ndarray) -> np.ndarray:
    v = np.asarray(v, np.float32)
    return v / np.maximum(np.linalg.norm(v, axis=-1, keepdims=True), 1e-12)


def embed_shard(shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    """A shard's item vectors (a shard function for curate.core.executor): item_id and [k, D] `embedding`."""
    vecs = ctx.options["embed"](shard, Path(ctx.options["root"]))
    return pd.DataFrame({"item_id": list(vecs), "embedding": list(vecs.values())})


def item_vectors(rows: pd.DataFrame, root: Path, embed, cache: Path | None, executor: ExecutorSpec | None = None
                 ) -> tuple[dict[str, np.ndarray], ShardResult | None]:
    """({item_id: [k, D] unit vectors}, how the embedding shards went): from the cache when there, else computed in
    shards on executor (default: here, 64 rows a shard), each shard's vectors cached as it finishes."""
    have = read_embeddings(cache, embed.key) if cache else {}
    todo = rows[~rows["item_id"].isin(list(have))]
    new: dict[str, np.ndarray] = {}

    def on_part(part: pd.DataFrame) -> None:
        got = dict(zip(part["item_id"], part["embedding"]))
        if cache and got:
            write_embeddings(cache, embed.key, {k: v.reshape(-1) for k, v in got.items()})
        new.update(got)

    run = (executor or ExecutorSpec()).run(embed_shard, todo, gpu=isinstance(embed, TeacherEmbedder), on_part=on_part,
                                           options={"embed": embed, "root": str(root)}) if len(todo) else None
    dim = next(iter(new.values())).shape[-1] if new else None
    out = {}
    for iid in rows["item_id"]:
        if iid in new:
            out[iid] = new[iid]
        elif iid in have:
            out[iid] = have[iid].reshape(-1, dim or _dim(embed, have[iid]))
    return out, run


def _dim(embed, flat: np.ndarray) -> int:
    return embed.side * embed.side * 3 if isinstance(embed, PixelEmbedder) else len(flat)


# ----------------------------------------------------------------------------------------------- faiss

def build_index(vectors: np.ndarray, kind: str = "auto", gpu: bool | None = None):
    """(faiss index over unit vectors with inner-product metric, description): flat below FLAT_MAX, else IVF;
    moved to every GPU faiss sees (gpu=None: when there are any)."""
    import faiss

    n, d = vectors.shape
    kind = ("flat" if n <= FLAT_MAX else "ivf") if kind == "auto" else kind
    if kind == "flat":
        index, desc = faiss.IndexFlatIP(d), "exact (IndexFlatIP)"
    elif kind == "ivf":
        nlist = max(1, min(int(math.sqrt(n)), n // 40))
        index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(0)
        index.train(vectors[rng.choice(n, min(n, 40 * nlist), replace=False)])  # k-means on a sample: seconds
        index.nprobe = min(nlist, 32)
        desc = f"IVF{nlist},Flat nprobe {index.nprobe}"
    else:
        raise ValueError(f"index kind must be auto, flat or ivf, got {kind!r}")
    gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if (gpu is None and gpus > 0) or gpu:
        index = faiss.index_cpu_to_all_gpus(index)
        desc += f" on {gpus} GPU(s)"
    else:
        desc += " on CPU"
    index.add(vectors)
    return index, desc


def nearest(index_vecs: dict[str, np.ndarray], query_vecs: dict[str, np.ndarray], k: int = 1, kind: str = "auto"
            ) -> tuple[dict[str, list[tuple[str, float]]], str]:
    """For each query item: its k nearest indexed items by best frame-pair cosine, best first; and the index used."""
    owners = [iid for iid, v in index_vecs.items() for _ in range(len(v))]
    if not owners or not query_vecs:
        return {q: [] for q in query_vecs}, "empty"
    index, desc = build_index(np.concatenate(list(index_vecs.values())), kind)
    qown = [iid for iid, v in query_vecs.items() for _ in range(len(v))]
    sims, ids = index.search(np.concatenate(list(query_vecs.values())), min(len(owners), k * 8))
    best: dict[str, dict[str, float]] = {q: {} for q in query_vecs}
    for q, srow, irow in zip(qown, sims, ids):
        for s, i in zip(srow, irow):
            if i >= 0:
                o = owners[i]
                best[q][o] = max(best[q].get(o, -1.0), float(s))
    return {q: sorted(d.items(), key=lambda t: -t[1])[:k] for q, d in best.items()}, desc


# ----------------------------------------------------------------------------------------------- the stage

@dataclass
class DedupReport:
    checked: int = 0
    against: int = 0
    of_val: int = 0
    within: int = 0
    index: str = ""                    # the val/test search
    within_index: str = ""             # the search inside the web
    seconds: float = 0.0
    hits: list[tuple[str, str, float]] = field(default_factory=list)   # (web item, matched item, cosine)
    runs: dict[str, ShardResult] = field(default_factory=dict)         # embedding and search shards: how they went

    @property
    def failed_shards(self) -> int:
        return sum(len(r.failed) for r in self.runs.values())


def dedup_manifest(web: pd.DataFrame, target: pd.DataFrame, web_root: str | Path, target_root: str | Path,
                   embed, threshold: float, within: bool = True, cache: str | Path | None = None,
                   index_kind: str = "auto", progress: Callable[[str], None] | None = None,
                   executor: ExecutorSpec | None = None) -> tuple[pd.DataFrame, DedupReport]:
    """Reject web rows whose cosine to a target val/test row reaches threshold (duplicate_of_val), then collapse
    near-duplicates inside the web (near_duplicate); rows already checked (dup_sim set) are not checked again.

    index_kind: auto, flat, ivf or cluster (inside the web; val/test then get auto). executor: where items are
    embedded and the clustered search runs (its files go next to cache, which every worker must then reach). Rows
    whose shard failed stay unchecked (dup_sim unset), and so do all pending rows when a search shard failed."""
    t0 = time.perf_counter()
    web = web.reset_index(drop=True).copy()
    report = DedupReport()
    usable = (web["status"] == "ok") & web["path"].notna()
    pending = web[usable & web["dup_sim"].isna()]
    report.checked = len(pending)
    if pending.empty:
        return web, report
    cache = Path(cache) if cache else None
    evals = target[target["split"].isin(["val", "test"]) & (target["status"] == "ok") & target["path"].notna()]
    report.against = len(evals)
    if progress:
        progress(f"embedding {len(evals)} val/test rows")
    tvec, report.runs["embed val/test"] = item_vectors(evals, Path(target_root), embed, cache, executor)
    if progress:
        progress(f"embedding {len(pending)} web rows")
    wvec, report.runs["embed web"] = item_vectors(web[usable], Path(web_root), embed, cache, executor)
    report.runs = {k: v for k, v in report.runs.items() if v is not None}
    pvec = {i: wvec[i] for i in pending["item_id"] if i in wvec}
    near, report.index = nearest(tvec, pvec, kind="auto" if index_kind == "cluster" else index_kind)
    pos = {iid: i for i, iid in enumerate(web["item_id"])}
    for iid, hits in near.items():
        if not hits:
            continue
        other, sim = hits[0]
        i = pos[iid]
        web.at[i, "dup_sim"] = sim
        if sim >= threshold:
            web.at[i, "dup_of"] = other
            web.loc[i, ["status", "error"]] = ["rejected", f"duplicate_of_val: cosine {sim:.3f} to {other}"]
            report.of_val += 1
            report.hits.append((iid, other, sim))
    if within:
        if progress:
            progress("searching inside the web")
        edges = _within_edges(web, wvec, pending, threshold, index_kind, executor, cache, report)
        if edges is None:     # a search shard failed: what is pending stays pending
            web.loc[web["item_id"].isin(pending["item_id"]) & (web["status"] == "ok"), "dup_sim"] = np.nan
        else:
            _collapse(web, edges, report)
    report.seconds = time.perf_counter() - t0
    return web, report


def _within_edges(web: pd.DataFrame, wvec: dict[str, np.ndarray], pending: pd.DataFrame, threshold: float,
                  index_kind: str, executor: ExecutorSpec | None, cache: Path | None, report: DedupReport
                  ) -> list[tuple[str, str, float]] | None:
    """(web item, other web item, cosine) at threshold or above, one item of each pair pending; None when a search
    shard failed."""
    alive = web.loc[(web["status"] == "ok") & web["item_id"].isin(list(wvec)), "item_id"].tolist()
    if len(alive) < 2:
        return []
    vecs = {i: wvec[i] for i in alive}
    mine = set(pending["item_id"])
    size = sum(len(v) for v in vecs.values())
    kind = ("flat" if size <= WITHIN_EXACT_MAX else "cluster") if index_kind == "auto" else index_kind
    if kind != "cluster":
        near, report.within_index = nearest(vecs, {i: vecs[i] for i in alive if i in mine}, k=8, kind=kind)
        return [(q, o, s) for q, hits in near.items() for o, s in hits if o != q and s >= threshold]
    owners = np.array([i for i, v in vecs.items() for _ in range(len(v))])
    with tempfile.TemporaryDirectory(prefix=".dedup-search-", dir=cache.parent if cache else None) as folder:
        pairs, report.runs["search"], report.within_index = within_pairs(
            np.concatenate(list(vecs.values())), owners, threshold, 8, executor, folder)
    if report.runs["search"].failed:
        return None
    pairs = pairs[pairs["item_id"].isin(mine) | pairs["dup_of"].isin(mine)]
    return list(zip(pairs["item_id"], pairs["dup_of"], pairs["dup_sim"].astype(float)))


def _collapse(web: pd.DataFrame, edges: list[tuple[str, str, float]], report: DedupReport) -> None:
    """Groups of web rows joined by edges keep their best-scored row (ties: smallest item_id)."""
    parent: dict[str, str] = {}

    def root(i: str) -> str:
        parent.setdefault(i, i)
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    sim_of: dict[str, tuple[str, float]] = {}
    for q, other, sim in edges:
        parent[root(q)] = root(other)
        sim_of[q] = max(sim_of.get(q, (other, -1.0)), (other, sim), key=lambda t: t[1])
        sim_of[other] = max(sim_of.get(other, (q, -1.0)), (q, sim), key=lambda t: t[1])
    score = dict(zip(web["item_id"], web["teacher_score"].astype(float).fillna(-1.0)))
    groups: dict[str, list[str]] = {}
    for i in list(parent):
        groups.setdefault(root(i), []).append(i)
    pos = {iid: k for k, iid in enumerate(web["item_id"])}
    for members in groups.values():
        if len(members) < 2:
            continue
        keep = min(members, key=lambda i: (-score[i], i))
        for i in members:
            if i != keep:
                sim = sim_of[i][1]
                web.loc[pos[i], ["status", "error", "dup_of", "dup_sim"]] = [
                    "rejected", f"near_duplicate: cosine {sim:.3f} to web item {keep}", keep, sim]
                report.within += 1
                report.hits.append((i, keep, sim))
