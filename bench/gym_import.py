"""Import speed of FineGym annotations at the public size (~300 videos, ~5k events, ~35k elements).

Generates a FineGym-format annotation JSON of that size plus Gym99-style split files under bench/out/gym/
(reused on later runs), then times `curate.formats.finegym.read_annotations` (parse + every check + both manifests)
next to its peer measured in the same run: bare `json.load` of the same file, the least any importer must do.
"""
from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import numpy as np

from curate.formats import finegym as fg

REAL = fg.SHIPPED   # the official category and split files, shipped as package data


def generate(out: Path, videos: int, events_per_video: int, elements_per_event: int, seed: int = 0) -> Path:
    """A random annotation with FineGym's shapes: 4 women's events with elements (vault: 3 stages), men's null."""
    rng = np.random.default_rng(seed)
    cats = fg.read_categories(REAL, [])
    by_event = {ev: [g for g, (_, _, e) in cats.elements.items() if e == ev] for ev in ("VT", "FX", "BB", "UB")}
    inverse = {g: c for c, g in cats.subsets["gym99"].items()}
    data, lines = {}, {"train": [], "val": []}
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))
    for v in range(videos):
        vid = "".join(rng.choice(alphabet[:62], 1)) + "".join(rng.choice(alphabet, 10))
        t, evs = 100.0, {}
        for _ in range(events_per_video):
            ev_id = int(rng.integers(1, 11))
            start = round(t + rng.uniform(5, 60), 3)
            segs, rel, pending = ({} if ev_id <= 4 else None), round(rng.uniform(0.5, 2.0), 3), []
            n = elements_per_event if ev_id <= 4 else 0
            for _ in range(n):
                if ev_id == 1:
                    a, b, c, d = rel, rel + 2.0, rel + 2.7, rel + 6.5
                    stamps = [[round(a, 3), round(b, 3)], [round(b, 3), round(c, 3)], [round(c, 3), round(d, 3)]]
                else:
                    stamps = [[round(rel, 3), round(rel + rng.uniform(0.4, 2.5), 3)]]
                key = fg.action_key(stamps[0][0], stamps[-1][1])
                if key not in segs:
                    segs[key] = {"stages": len(stamps), "timestamps": stamps}
                    g = int(rng.choice(by_event[fg.DEFAULT_EVENTS[ev_id]]))
                    if g in inverse:
                        pending.append((key, inverse[g]))
                rel = stamps[-1][1] + rng.uniform(0.2, 1.5)
            end = round(start + rel + rng.uniform(1, 5), 3)
            ek = fg.event_key(start, end)
            evs[ek] = {"event": ev_id, "timestamps": [[start, end]], "segments": segs}
            lines["val" if v % 4 == 0 else "train"] += [(f"{vid}_{ek}", k, lab) for k, lab in pending]
            t = end
        data[vid] = evs
    out.mkdir(parents=True, exist_ok=True)
    for name in ("set_categories.txt", "gym530_categories.txt", "gym99_categories.txt"):
        shutil.copy(REAL / name, out / name)
    for split, rows in lines.items():
        (out / f"gym99_{split}_element.txt").write_text("".join(f"{c}_{k} {lab}\n" for c, k, lab in rows))
    path = out / "annotation.json"
    path.write_text(json.dumps(data))
    return path


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--videos", type=int, default=300)
    ap.add_argument("--events-per-video", type=int, default=17)
    ap.add_argument("--elements-per-event", type=int, default=17)
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args()
    out = Path("bench/out/gym") / f"{args.videos}x{args.events_per_video}x{args.elements_per_event}"
    path = out / "annotation.json"
    if not path.exists():
        generate(out, args.videos, args.events_per_video, args.elements_per_event)
    peer, ours = [], []
    for _ in range(args.repeat):  # interleaved, best of repeat
        t0 = time.perf_counter()
        json.loads(path.read_text())
        peer.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        events, elements, _ = fg.read_annotations(path, out)
        ours.append(time.perf_counter() - t0)
    print(f"{path}: {path.stat().st_size / 1e6:.1f} MB, {events['source_id'].nunique()} videos, {len(events)} events, "
          f"{len(elements)} elements, {int(elements['element_id'].notna().sum())} labelled (gym99 splits)")
    print(f"json.load {min(peer):.3f} s | curate import (checks + manifests) {min(ours):.3f} s | "
          f"x json.load {min(ours) / min(peer):.1f}")


if __name__ == "__main__":
    main()
