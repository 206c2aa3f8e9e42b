"""How precise could an image teacher of the demo's size be? The filter's goal is precision 0.95 at recall 0.8 on
"label is right"; the demo's TSN teacher has seen only the target's train clips (8 per class in the default world).

This probe renders web stills with the world's own web-image code (curate.demo.synth.jobs.run_web_item: same shapes,
clutter, decoys and web looks, a seed the world does not use) under their TRUE labels, trains the demo teacher's
backbone (tiny ResNet-18 2D, 48² crops of frames resized to 60, AdamW, the same number of steps for every size) on
N stills per class, and scores the crawled images of finished demo folders: the best precision a threshold on
p(label) reaches at recall 0.8, next to what the demo's own teachers reached there (teacher_score of each round).
It answers "is the goal out of reach in this world, or does the teacher lack data?"; it is not a filter (its
labels are the truth, which a real crawl does not have).

Run: PYTHONPATH=. python bench/filter_ceiling.py demo_out [more demo folders] [--per-class 8 40 80 250] [--steps 2400]
"""
from __future__ import annotations

import argparse
import platform
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from curate.clean.filter import precision_at_recall
from curate.core import manifest as mf
from curate.demo.synth import load_world
from curate.demo.synth.jobs import run_web_item
from curate.demo.truth import judged_rows, right_label
from curate.media import read_image
from trainers.config import build_model
from trainers.train import make_config
from trainers.transforms import CenterCrop, FormatShape, Normalize, RandomCrop, Resize

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out" / "filter_ceiling"
SIZES = [(96, 72), (72, 96), (80, 80), (128, 96), (64, 64), (112, 84)]   # the world's web image sizes
SCALE, CROP, BATCH = 60, 48, 32


def render_stills(num_classes: int, per_class: int, seed: int = 777) -> tuple[list[Path], np.ndarray]:
    """per_class web-look stills of every class (made once under bench/out), with their true label ids."""
    root = OUT / f"stills_{num_classes}x{per_class}_s{seed}"
    rng = np.random.default_rng(seed)
    paths, labels = [], []
    for g, label in enumerate(c for c in range(num_classes) for _ in range(per_class)):
        w, h = SIZES[rng.integers(0, len(SIZES))]
        path = root / f"{g}.jpg"
        if not path.exists():
            run_web_item(root, {"num_classes": num_classes, "seed": [seed, 2, g], "kind": "web_image",
                                "true_label": label, "media": "image", "path": path.name, "width": w, "height": h,
                                "key": str(g)})
        paths.append(path)
        labels.append(label)
    return paths, np.array(labels)


def shrink(img: np.ndarray) -> np.ndarray:
    """Shorter side to SCALE, the demo pipelines' Resize step."""
    return Resize(SCALE).apply({"imgs": img[None, None]}, None)["imgs"][0, 0]


def batch(imgs: list[np.ndarray], rng: np.random.Generator | None) -> torch.Tensor:
    """Random (train) or centre (rng None) CROP² crops, normalised, as [N, views 1, C, T 1, H, W] (the pipeline's
    crop, Normalize and FormatShape steps)."""
    steps = (RandomCrop(CROP) if rng is not None else CenterCrop(CROP), Normalize(), FormatShape("NCHW"))
    out = []
    for img in imgs:
        r = {"imgs": img[None, None]}
        for step in steps:
            r = step.apply(r, rng)
        out.append(r["input"])
    return torch.from_numpy(np.stack(out))


def train_teacher(imgs: list[np.ndarray], labels: np.ndarray, num_classes: int, steps: int) -> torch.nn.Module:
    """The demo teacher's backbone trained on the stills: AdamW 3e-3, one cycle with 1/8 warm-up."""
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    model = build_model(make_config("tsn_r50", tiny=True)["model"], num_classes=num_classes)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, 3e-3, total_steps=steps, pct_start=0.125)
    model.train()
    for _ in range(steps):
        idx = rng.choice(len(imgs), size=min(BATCH, len(imgs)), replace=False)
        loss = F.cross_entropy(model(batch([imgs[i] for i in idx], rng)), torch.from_numpy(labels[idx]))
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
    return model.eval()


def crawl_images(demo: Path) -> tuple[list[np.ndarray], np.ndarray, np.ndarray, dict[int, float]]:
    """The judged web images of a demo folder: frames, label ids, right or not, and each round's teacher P@R0.8."""
    world = load_world(demo / "world")
    rows, right, ours = None, None, {}
    for path in sorted((demo / "manifests").glob("web_round*.parquet")):
        if path.stem.endswith(".emb"):
            continue
        m = mf.read(path)
        r = right_label(m, world)
        sel = judged_rows(m, r) & (m["media"] == "image")
        ours[int(path.stem.removeprefix("web_round"))] = precision_at_recall(
            m.loc[sel, "teacher_score"].to_numpy(float), r[sel].to_numpy(bool))
        if rows is None:
            rows, right = m[sel], r[sel].to_numpy(bool)
    if rows is None:
        raise SystemExit(f"{demo}: no manifests/web_round*.parquet (run `curate demo --out {demo}` first)")
    imgs = [shrink(read_image(demo / "crawl" / "data" / p)) for p in rows["path"]]
    return imgs, rows["label_id"].to_numpy(int), right, ours


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("demos", nargs="+", type=Path, help="finished `curate demo` folders")
    ap.add_argument("--per-class", type=int, nargs="+", default=[8, 40, 80, 250], help="stills per class to train on")
    ap.add_argument("--steps", type=int, default=2400, help="optimizer steps of batch 32, the same for every size")
    args = ap.parse_args()
    crawls = {d: crawl_images(d) for d in args.demos}
    num_classes = len(load_world(args.demos[0] / "world").classes)
    print(f"{platform.processor() or platform.machine()}, torch {torch.__version__}, {torch.get_num_threads()} threads")
    for d, (imgs, _, right, ours) in crawls.items():
        print(f"{d}: {len(imgs)} judged images, {right.mean():.3f} right; the demo's teachers, best precision at "
              "recall 0.8: " + ", ".join(f"round {k} {v:.3f}" for k, v in sorted(ours.items())))
    for n in args.per_class:
        t = time.perf_counter()
        paths, labels = render_stills(num_classes, n)
        model = train_teacher([shrink(read_image(p)) for p in paths], labels, num_classes, args.steps)
        line = []
        for d, (imgs, label_ids, right, _) in crawls.items():
            with torch.no_grad():
                probs = torch.cat([model(batch(imgs[i:i + 128], None)).softmax(-1)
                                   for i in range(0, len(imgs), 128)]).numpy()
            line.append(f"{d.name} {precision_at_recall(probs[np.arange(len(probs)), label_ids], right):.3f}")
        print(f"{n:4d} true-labelled stills per class ({len(paths)}), {args.steps} steps, "
              f"{time.perf_counter() - t:.0f} s: best precision at recall 0.8: " + ", ".join(line))


if __name__ == "__main__":
    main()
