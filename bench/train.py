"""Training throughput: `trainers.train.train` (manifest rows decoded through curate.media, SampleFrames, crops,
the mixed-source sampler, bf16 autocast on CUDA, checkpoints and logs) next to a plain eager fp32 PyTorch loop
(random tensors already in memory, SGD, nothing else) for the same model and batch, same run, as a ratio.

Models: TSN-R50 (1x1x8: 8 segments) and SlowOnly-R50 8x8, full width. On CPU at a small frame size (default 64²);
with --gpu on cuda at 224² with model FLOPs utilisation (3 x forward FLOPs per clip, counted by
torch.utils.flop_counter, x clips/s over that GPU's bf16 matmul rate measured here).

Clips: the demo world's target clips (64² mp4, bench/out/train/, made once), resized to the crop size by the
pipeline, so the decode cost is that of 64² video at every size.

Run: PYTHONPATH=. python bench/train.py [--size 64] [--batch 4] [--steps 12] [--gpu]
"""
from __future__ import annotations

import argparse
import json
import platform
import shutil
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from curate.core import manifest as mf
from curate.demo.synth import make_world
from trainers.config import build_model
from trainers.inputs import data_overrides, resolve_data
from trainers.sources import Source
from trainers.train import make_config, train

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "train"
WORLD = dict(num_classes=4, seed=0, train_per_class=8, val_per_class=2, test_per_class=2, web_images_per_class=1,
             feed_images_per_class=1, feed_videos_per_class=1, untrimmed_per_class=1, near_copies=0,
             routines_per_event=1, scenes=1, broken=0)
MODELS = ("tsn_r50", "slowonly_r50")


def config(model: str, size: int, batch: int, epochs: int) -> dict:
    """The published model at full width, `size` crops, SGD as in its config, no flips, one view."""
    cfg = make_config(model, overrides={"schedule": {"epochs": epochs, "batch_size": batch, "warmup_epochs": 0,
                                                     "log_every": 1, "eval_every": epochs}})
    cfg["data"] = {**cfg.get("data", {}), **data_overrides(cfg["model"], size=size, flip=0.0), "views": [1, 1]}
    return cfg


def input_shape(cfg: dict) -> tuple[int, ...]:
    """One clip as the recognizers take it: [V=1, C, T, H, W]."""
    d = resolve_data(cfg)
    return 1, 3, int(d["clip_len"]) * int(d["num_clips"]), int(d["size"]), int(d["size"])


def ours(cfg: dict, target: Path, root: Path, run: Path, device: str) -> float:
    """Clips/s of the last epoch of trainers.train (the first epochs warm caches, allocator and autotuning)."""
    shutil.rmtree(run, ignore_errors=True)
    train(cfg, [Source("target", target, root=root)], run, device=device, progress=False)
    log = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    last = max(e["epoch"] for e in log if e["event"] == "train")
    return [e for e in log if e["event"] == "train" and e["epoch"] == last][-1]["clips_per_s"]


def plain(cfg: dict, batch: int, steps: int, device: str) -> float:
    """Clips/s of the textbook loop: model(x), cross-entropy, backward, SGD step, fp32, inputs already on device."""
    torch.manual_seed(0)
    model = build_model(cfg["model"], num_classes=WORLD["num_classes"]).to(device).train()
    opt = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    x = torch.randn(batch, *input_shape(cfg), device=device)
    y = torch.randint(0, WORLD["num_classes"], (batch,), device=device)

    def step() -> None:
        loss = F.cross_entropy(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(2):
        step()
    sync(device)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return steps * batch / (time.perf_counter() - t0)


def sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def train_flops_per_clip(cfg: dict) -> float:
    """3 x the forward FLOPs of one clip (backward ~ 2 x forward), counted on the meta device."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        model = build_model(cfg["model"], num_classes=WORLD["num_classes"])
        x = torch.empty(1, *input_shape(cfg))
    with FlopCounterMode(display=False) as counter:
        model(x)
    return 3.0 * counter.get_total_flops()


def bf16_matmul_rate(n: int = 8192, reps: int = 30) -> float:
    """FLOP/s of an n x n bf16 matmul on this GPU (the MFU denominator, measured rather than taken from a sheet)."""
    a, b = (torch.randn(n, n, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    for _ in range(3):
        a @ b
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(reps):
        a @ b
    torch.cuda.synchronize()
    return 2 * n ** 3 * reps / (time.perf_counter() - t0)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=None, help="crop side (default 64 on CPU, 224 with --gpu)")
    ap.add_argument("--batch", type=int, default=None, help="clips per step (default 4 on CPU, 16 with --gpu)")
    ap.add_argument("--epochs", type=int, default=3, help="trainer epochs (48 clips each); the last one is timed")
    ap.add_argument("--steps", type=int, default=8, help="timed steps of the plain loop")
    ap.add_argument("--gpu", action="store_true", help="cuda, full size, with MFU")
    ap.add_argument("--models", default=",".join(MODELS))
    args = ap.parse_args()
    device = "cuda" if args.gpu else "cpu"
    size = args.size or (224 if args.gpu else 64)
    batch = args.batch or (16 if args.gpu else 4)
    world = make_world(OUT / "world", workers=2, **WORLD)
    rows = mf.read(world.target_manifest)
    target = OUT / "rows.parquet"   # every target clip is a training clip here: the split does not matter
    mf.write(rows.assign(split="train"), target)
    peak = bf16_matmul_rate() if args.gpu else None
    gpu = torch.cuda.get_device_name() if args.gpu else None
    print(f"{platform.processor() or platform.machine()}, {torch.get_num_threads()} torch threads"
          + (f", {gpu}, bf16 matmul {peak / 1e12:.0f} TFLOP/s" if gpu else "")
          + f"; torch {torch.__version__}; {len(rows)} clips of 64² video; crops {size}², batch {batch}")
    print(f"{'model':<14}{'input':>18}{'curate train':>14}{'plain loop':>12}{'ratio':>8}" + ("   MFU" if gpu else ""))
    for model in args.models.split(","):
        cfg = config(model, size, batch, args.epochs)
        mine = ours(cfg, target, world.root, OUT / f"run_{model}_{size}", device)
        base = plain(cfg, batch, args.steps, device)
        shape = "x".join(map(str, input_shape(cfg)[2:]))
        mfu = f"  {mine * train_flops_per_clip(cfg) / peak:5.1%}" if gpu else ""
        print(f"{model:<14}{shape:>18}{mine:>11.2f}/s{base:>10.2f}/s{mine / base:>8.2f}" + mfu)


if __name__ == "__main__":
    main()
