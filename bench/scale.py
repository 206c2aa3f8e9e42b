"""Shard throughput of a CPU-bound curation stage through curate.core.executor's Ray path: 1 worker vs 2 workers, the
ratio measured in the same run.

The stage: for every video row, probe the file (curate.media.probe) and decode every frame at 112 px on one thread
(curate.media.read_frames) -- the decoding half of teacher scoring (curate/clean/teacher.py was not on main when this
was written; --gpu adds the model half). Rows: the demo world's target clips and web videos (bench/out/scale/,
made once), repeated --repeat times. Each setting starts its own local Ray cluster with that many CPUs (--gpu:
GPUs), runs one warm-up shard per worker (worker start-up and imports are not the stage), then times every shard.

--gpu: teacher-like scoring instead (decode 8 frames, a tiny TSN forward on ctx.device), run_shards(gpu=True), so
each task asks Ray for a GPU; 1 vs 2 GPUs. Needs a machine with 2 GPUs.

Run: PYTHONPATH=. python bench/scale.py [--repeat 3] [--shard-size 8] [--gpu]
"""
from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

import numpy as np
import pandas as pd

from curate import media
from curate.core import manifest as mf
from curate.core.executor import ShardContext, run_shards

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "scale"
WORLD = dict(num_classes=4, seed=0, train_per_class=3, val_per_class=4, test_per_class=4, web_images_per_class=2,
             feed_images_per_class=2, feed_videos_per_class=3, untrimmed_per_class=2, near_copies=4,
             routines_per_event=1, scenes=2, broken=0)


def decode_shard(shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    """Probe and decode every frame of each row (one thread: the work is what scales, not FFmpeg's threads)."""
    root = Path(ctx.options["root"])
    frames = []
    for rel in shard["path"]:
        p = media.probe(root / rel)
        frames.append(len(media.read_frames(root / rel, range(p.frames), size=112, threads=1)))
    return shard.assign(frames=frames)


def score_shard(shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    """Teacher-like scoring: 8 frames per row through a tiny TSN on the task's device."""
    import torch

    from trainers.config import build_model
    from trainers.train import make_config

    cfg = make_config("tsn_r50", tiny=True)
    model = build_model(cfg["model"], num_classes=4).to(ctx.device).eval()
    root, scores = Path(ctx.options["root"]), []
    for rel in shard["path"]:
        n = media.probe(root / rel).frames
        x = media.read_frames(root / rel, np.linspace(0, n - 1, 8).round().astype(int), size=(112, 112))
        x = torch.from_numpy(x).permute(0, 3, 1, 2).float().div(255).reshape(1, 8, 3, 1, 112, 112).to(ctx.device)
        with torch.no_grad():
            scores.append(float(model(x).softmax(-1).max()))
    return shard.assign(teacher_score=scores)


def rows(repeat: int) -> tuple[pd.DataFrame, Path]:
    from curate.demo.synth import make_world

    world = make_world(OUT / "world", workers=2, **WORLD) if not (OUT / "world" / "truth").exists() else None
    root = OUT / "world"
    web = mf.read(root / "truth" / "web.parquet")
    df = pd.concat([mf.read(root / "manifests" / "target.parquet"),
                    web[(web["media"] == "video") & (web["status"] == "ok")]], ignore_index=True)
    del world
    return pd.concat([df] * repeat, ignore_index=True), root


def measure(fn, df: pd.DataFrame, root: Path, workers: int, shard_size: int, gpu: bool) -> float:
    """rows/s with a fresh local Ray cluster of `workers` CPUs (or GPUs)."""
    import ray

    ray.init(num_cpus=workers if not gpu else 2 * workers, num_gpus=workers if gpu else 0, include_dashboard=False,
             log_to_driver=False, runtime_env={"env_vars": {"PYTHONPATH": str(ROOT)}})
    try:
        opts = {"root": str(root)}
        run_shards(fn, df.head(workers), 1, "ray", gpu=gpu, options=opts)              # warm workers
        r = run_shards(fn, df, shard_size, "ray", gpu=gpu, options=opts)
        assert not r.failed, r.failed
        return r.rows / r.seconds
    finally:
        ray.shutdown()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--shard-size", type=int, default=8)
    ap.add_argument("--gpu", action="store_true", help="teacher-like scoring on 1 vs 2 GPUs")
    a = ap.parse_args()
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")   # a throwaway local cluster
    df, root = rows(a.repeat)
    fn = score_shard if a.gpu else decode_shard
    unit = "GPU" if a.gpu else "CPU"
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs; {len(df)} rows, "
          f"shards of {a.shard_size}; stage: {fn.__name__}")
    rate = {w: measure(fn, df, root, w, a.shard_size, a.gpu) for w in (1, 2)}
    for w, v in rate.items():
        print(f"  {w} Ray worker{'s' if w > 1 else ''} (1 {unit} each): {v:7.2f} rows/s")
    print(f"  2 vs 1 workers: {rate[2] / rate[1]:.2f}x")


if __name__ == "__main__":
    main()
