"""Throughput of the heavy curation stages on curate.core.executor's Ray path: 1 worker vs 2 workers, each rate
measured in the same run (the ratio is the claim; absolute rates depend on the machine).

Stages, as `curate filter` and `curate dedup` run them:
  score   curate.clean.teacher.score_manifest over the demo world's target clips and web videos (repeated --repeat
          times) with a tiny TSN teacher trained for one epoch here (the weights do not matter for the speed): each
          Ray task decodes its shard and runs the teacher, loaded once per worker;
  dedup   curate.clean.clusters.within_pairs over --vectors random 512-d unit vectors with planted near-copies: the
          k-means plan in the driver, the clusters' exact products in Ray tasks (the plan memory-mapped from a folder).
Each setting starts its own local Ray cluster with that many CPUs (--gpu: GPUs, for a machine with 2; the teacher
then runs on each task's GPU and the products too) and warms its workers on a small run first.

Run: PYTHONPATH=. python bench/scale.py [--stages score dedup] [--repeat 3] [--vectors 200000] [--gpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from bench.dedup import planted_found, unit
from curate.core import manifest as mf
from curate.core.executor import ExecutorSpec

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "scale"
WORLD = dict(num_classes=4, seed=0, train_per_class=3, val_per_class=4, test_per_class=4, web_images_per_class=2,
             feed_images_per_class=2, feed_videos_per_class=3, untrimmed_per_class=2, near_copies=4,
             routines_per_event=1, scenes=2, broken=0)


def world_rows(repeat: int) -> tuple[pd.DataFrame, Path]:
    """The world's target clips and usable web videos, repeated (new item ids), and its root."""
    from curate.demo.synth import make_world

    root = OUT / "world"
    if not (root / "truth").exists():
        make_world(root, workers=2, **WORLD)
    target, web = mf.read(root / "manifests" / "target.parquet"), mf.read(root / "truth" / "web.parquet")
    web = web[(web["media"] == "video") & web["kind"].isin(["feed_video", "target_source"])]
    df = pd.concat([target, web[target.columns]], ignore_index=True)
    df = df[df["label_id"].notna() & (df["status"] == "ok")]
    copies = [df.assign(item_id=[f"{k:02d}{i[2:]}" for i in df["item_id"]]) for k in range(repeat)]
    return pd.concat(copies, ignore_index=True), root


def teacher_checkpoint(root: Path) -> Path:
    """A tiny TSN trained one epoch on the world's train clips (made once)."""
    from trainers.sources import Source
    from trainers.train import make_config, train

    out = OUT / "teacher"
    if not (out / "last.pt").exists():
        cfg = make_config("tsn_r50", tiny=True, overrides={"schedule": dict(epochs=1, batch_size=4, eval_every=1)})
        train(cfg, [Source("target", root / "manifests" / "target.parquet", split="train", root=root)], out,
              progress=False)
    return out / "last.pt"


def vectors(n: int, seed: int = 0) -> np.ndarray:
    """n random 512-d unit vectors; rows 1000..1999 are near-copies (cosine ~0.975) of rows 2000..2999."""
    rng = np.random.default_rng(seed)
    x = unit(rng.normal(size=(n, 512)))
    x[1000:2000] = unit(x[2000:3000] + 0.01 * rng.normal(size=(1000, 512)))
    return x


def score_rate(df: pd.DataFrame, root: Path, ckpt: Path, spec: ExecutorSpec) -> float:
    from curate.clean.teacher import load_teacher, score_manifest

    teacher = load_teacher(ckpt, "cpu")
    score_manifest(df.head(spec.workers * spec.shard_size), root, {"video": teacher}, executor=spec)  # warm
    _, rep = score_manifest(df, root, {"video": teacher}, executor=spec)
    assert not rep.run.failed and rep.scored["video"] == len(df), (rep.run.failed, rep.scored)
    return rep.scored["video"] / rep.run.seconds


def dedup_rate(x: np.ndarray, spec: ExecutorSpec) -> tuple[float, float]:
    """(vectors/s end to end, share of planted copies found)."""
    from curate.clean.clusters import within_pairs

    with tempfile.TemporaryDirectory(dir=OUT) as folder:
        within_pairs(x[:20_000], np.arange(20_000), 0.9, executor=spec, folder=folder)              # warm
        t0 = time.perf_counter()
        pairs, run, _ = within_pairs(x, np.arange(len(x)), 0.9, executor=spec, folder=folder)
        seconds = time.perf_counter() - t0
    assert not run.failed, run.failed
    return len(x) / seconds, planted_found(pairs)


def with_cluster(workers: int, gpu: bool, fn):
    """fn() on a fresh local Ray cluster of `workers` CPUs (or GPUs)."""
    import ray

    ray.init(num_cpus=workers if not gpu else 2 * workers, num_gpus=workers if gpu else 0, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        return fn()
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--stages", nargs="+", choices=["score", "dedup"], default=["score", "dedup"])
    ap.add_argument("--repeat", type=int, default=3, help="copies of the world's video rows to score")
    ap.add_argument("--shard-size", type=int, default=16, help="rows per scoring shard")
    ap.add_argument("--vectors", type=int, default=200_000, help="vectors for the dedup search")
    ap.add_argument("--gpu", action="store_true", help="1 vs 2 GPUs (a machine with 2)")
    a = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # a throwaway local cluster
    OUT.mkdir(parents=True, exist_ok=True)
    unit = "GPU" if a.gpu else "CPU"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; 1 vs 2 Ray workers (1 {unit} each)")
    if "score" in a.stages:
        df, root = world_rows(a.repeat)
        ckpt = teacher_checkpoint(root)
        rate = {w: with_cluster(w, a.gpu, lambda w=w: score_rate(df, root, ckpt, ExecutorSpec(
            "ray", shard_size=a.shard_size, workers=w))) for w in (1, 2)}
        print(f"  score: {len(df)} video rows, shards of {a.shard_size}: " + ", ".join(
            f"{w} worker{'s' * (w > 1)} {v:.2f} rows/s" for w, v in rate.items()) + f"; 2 vs 1: {rate[2] / rate[1]:.2f}x",
              flush=True)
    if "dedup" in a.stages:
        x = vectors(a.vectors)
        got = {w: with_cluster(w, a.gpu, lambda w=w: dedup_rate(x, ExecutorSpec("ray", workers=w))) for w in (1, 2)}
        print(f"  dedup: {len(x):,} vectors x 512, all pairs at cosine >= 0.9: " + ", ".join(
            f"{w} worker{'s' * (w > 1)} {v:,.0f} vectors/s (planted found {p:.3f})" for w, (v, p) in got.items())
              + f"; 2 vs 1: {got[2][0] / got[1][0]:.2f}x", flush=True)


if __name__ == "__main__":
    main()
