"""Teacher scoring throughput: curate.clean.teacher.score_manifest (batched, decode in DataLoader workers, one forward for
scores + embeddings) vs a one-at-a-time loop (trainers.evaluate.score_rows on each row alone), same rows, same
checkpoint, same run; the ratio is printed and the scores of both are checked to agree.

Rows: the demo world's web images and web videos plus its target clips (bench/out/filter/, made once). Teacher: a
tiny TSN trained 2 epochs on the world's train split (throughput does not depend on how well it learnt).

--gpu (written, not run here: this machine has no GPU): a SlowOnly-R50-sized 3D teacher (8x8, 224², bf16 autocast)
scoring the world's videos on cuda, clips/s next to the decode-only rate of the same clips through the same
DataLoader (model skipped), i.e. how far the GPU is from being fed.

Run: PYTHONPATH=. python bench/filter.py [--repeat 2] [--workers 2] [--gpu]
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from curate.clean.teacher import ScoreDataset, load_teacher, loader, score_manifest
from curate.core import manifest as mf
from curate.demo.synth import make_world

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "filter"
WORLD = dict(num_classes=4, seed=0, train_per_class=3, val_per_class=4, test_per_class=4, web_images_per_class=20,
             feed_images_per_class=4, feed_videos_per_class=8, untrimmed_per_class=1, near_copies=0,
             routines_per_event=1, scenes=1, broken=0)


def teacher_checkpoint(world, model: str, size: int, epochs: int) -> Path:
    from trainers.inputs import data_overrides
    from trainers.sources import Source
    from trainers.train import make_config, train

    out = OUT / f"teacher_{model}_{size}"
    if (out / "last.pt").exists():
        return out / "last.pt"
    cfg = make_config(model, tiny=size <= 64, overrides={"schedule": dict(epochs=epochs, batch_size=4, lr=1e-2,
                                                                          optimizer="adamw", eval_every=epochs)})
    cfg["data"] = data_overrides(cfg["model"], size=size, flip=0.0)
    return train(cfg, [Source("target", world.target_manifest, split="train", root=world.root)], out,
                 progress=False).last


def rows_of(world) -> pd.DataFrame:
    truth = mf.read(world.truth_web, validate_rows=False)
    web = truth[truth["kind"].isin(["web_image", "feed_image", "feed_video"]) & (truth["status"] == "ok")]
    return pd.concat([web[list(mf.COLUMNS)], mf.read(world.target_manifest)], ignore_index=True)


def naive(teacher, rows: pd.DataFrame, root: Path) -> np.ndarray:
    """One row at a time: a loader, a decode and a forward per row (what a first script does)."""
    from trainers.evaluate import score_rows

    return np.stack([score_rows(teacher.model, teacher.meta, rows.iloc[[i]], root, batch_size=1)[0]
                     for i in range(len(rows))])


def cpu_bench(args) -> None:
    world = make_world(OUT / "world", workers=2, **WORLD)
    ckpt = teacher_checkpoint(world, "tsn_r50", 32, 2)
    teacher = load_teacher(ckpt, "cpu")
    rows = rows_of(world)
    print(f"{len(rows)} rows ({(rows['media'] == 'image').sum()} images, {(rows['media'] == 'video').sum()} videos), "
          f"tiny TSN at 32², {os.cpu_count()} CPUs, torch threads {torch.get_num_threads()}, {platform.processor()}")
    best = {"batched": 0.0, "naive": 0.0}
    for r in range(args.repeat):
        t0 = time.perf_counter()
        scored, _ = score_manifest(rows, world.root, {"image": teacher, "video": teacher}, batch_size=16,
                                   workers=args.workers)
        batched = len(rows) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        per_item = naive(teacher, rows, world.root)
        loop = len(rows) / (time.perf_counter() - t0)
        own = per_item[np.arange(len(rows)), rows["label_id"].astype(int).to_numpy()]
        diff = float(np.abs(own - scored["teacher_score"].astype(float).to_numpy()).max())
        print(f"run {r + 1}: batched {batched:.1f} items/s, one-at-a-time {loop:.1f} items/s, "
              f"ratio {batched / loop:.2f}x, max score difference {diff:.2e}")
        best = {"batched": max(best["batched"], batched), "naive": max(best["naive"], loop)}
    print(f"best of {args.repeat}: batched {best['batched']:.1f} items/s vs one-at-a-time {best['naive']:.1f} items/s "
          f"= {best['batched'] / best['naive']:.2f}x")


def gpu_bench(args) -> None:
    if not torch.cuda.is_available():
        raise SystemExit("--gpu needs a CUDA device")
    world = make_world(OUT / "world", workers=min(8, os.cpu_count() or 1), **WORLD)
    ckpt = teacher_checkpoint(world, "slowonly_r50", 224, 1)
    teacher = load_teacher(ckpt, "cuda")
    rows = rows_of(world)
    videos = pd.concat([rows[rows["media"] == "video"]] * args.repeat, ignore_index=True)
    ds = ScoreDataset(videos, world.root, teacher)
    t0 = time.perf_counter()
    for _ in loader(ds, 16, args.workers):
        pass
    decode = len(videos) / (time.perf_counter() - t0)
    score_manifest(videos.head(16), world.root, {"video": teacher}, batch_size=16, workers=args.workers)  # warm-up
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    score_manifest(videos, world.root, {"video": teacher}, batch_size=16, workers=args.workers)
    torch.cuda.synchronize()
    scored = len(videos) / (time.perf_counter() - t0)
    print(f"{torch.cuda.get_device_name()}: SlowOnly-R50 8x8 224² bf16 {scored:.1f} clips/s; decode-only "
          f"{decode:.1f} clips/s ({args.workers} workers); scoring at {scored / decode:.2f}x of the decode rate")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=2)
    p.add_argument("--workers", type=int, default=2, help="DataLoader decode workers of the batched pipeline")
    p.add_argument("--gpu", action="store_true", help="SlowOnly-R50-sized teacher on cuda vs decode-only")
    args = p.parse_args()
    gpu_bench(args) if args.gpu else cpu_bench(args)


if __name__ == "__main__":
    main()
