"""Items the world gained after its first version, planned after every other item (so those keep their bytes):

- **montages**: untrimmed videos edited from several shots, each its own scene (background, clutter, camera), joined
  by hard cuts or fades through black; some shots show the query's class acting, others another class or nothing.
  Video search finds them under "<class> compilation"; their shots, with how each begins, are in truth/shots.parquet.
- **distractor images**: image-search results for "<class> <distractor word>", noisier than the class name alone
  (`distractor_noise_rate`): a query worth less crawl budget, which a feedback crawl should learn.
"""
from __future__ import annotations

import numpy as np

from curate.demo.synth.plan import Plan, _noise, _web_row, web_id

FADE = 3   # frames a fade takes on each side of the boundary (the last / first of them black)


def plan_extras(plan: Plan, specs, rng: np.random.Generator, base: dict) -> None:
    _plan_montages(plan, specs, rng, base)
    _plan_distractor_images(plan, specs, rng, base)


def _plan_montages(plan: Plan, specs, rng: np.random.Generator, base: dict) -> None:
    s = plan.spec
    g = 0
    for label_id, cs in enumerate(specs):
        for k, true_id in enumerate(_noise(rng, s.montages_per_class, s.noise_rate, label_id, len(specs))):
            wid = web_id(s.seed, "montage", g)
            n_shots = int(rng.integers(3, 6))
            lengths = [int(v) for v in rng.integers(12, 25, size=n_shots)]
            own = set(rng.permutation(n_shots)[: max(1, n_shots // 2)].tolist()) if true_id >= 0 else set()
            shots, start = [], 0
            for j, length in enumerate(lengths):
                other = int(rng.integers(-1, len(specs)))       # another class acting, or nothing (-1)
                shown = true_id if j in own else (other if other not in (label_id, true_id) else -1)
                how = "start" if j == 0 else ("fade" if rng.random() < 0.3 else "cut")
                shots.append({"start": start, "end": start + length, "label_id": shown, "transition": how})
                start += length
            row = _web_row(plan, wid, "montage", "video", f"web/v/{wid}.mp4", cs.name, label_id, true_id,
                           title=f"{cs.name} compilation {k}", rng=rng, frames=start, width=s.size, height=s.size,
                           query=f"{cs.name} compilation")
            plan.web.append(row)
            plan.jobs.append({**base, "runner": "montage", "kind": "montage", "key": wid, "seed": [s.seed, 7, g],
                              "frames": start, "fps": s.fps, "shots": shots, "fade": FADE, "path": row["path"],
                              "width": s.size, "height": s.size})
            for j, sh in enumerate(shots):
                plan.shots.append({"video_id": wid, "shot": j, "start_frame": sh["start"], "end_frame": sh["end"],
                                   "transition": sh["transition"], "label_id": sh["label_id"]})
                if sh["label_id"] >= 0:
                    plan.actions.append({"video_id": wid, "kind": "montage", "actor": 0, "start_frame": sh["start"],
                                         "end_frame": sh["end"], "label": specs[sh["label_id"]].name,
                                         "label_id": sh["label_id"], "event_key": None})
            g += 1


def _plan_distractor_images(plan: Plan, specs, rng: np.random.Generator, base: dict) -> None:
    s = plan.spec
    g = 0
    for label_id, cs in enumerate(specs):
        query = f"{cs.name} {s.distractor_word}"
        for k, true_id in enumerate(_noise(rng, s.distractor_images_per_class, s.distractor_noise_rate, label_id,
                                           len(specs))):
            wid = web_id(s.seed, "distractor", g)
            w, h = [(96, 72), (72, 96), (80, 80), (128, 96), (64, 64), (112, 84)][rng.integers(0, 6)]
            row = _web_row(plan, wid, "distractor_image", "image", f"web/i/{wid}.jpg", cs.name, label_id, true_id,
                           title=f"{query} {k}", rng=rng, width=w, height=h, query=query)
            plan.web.append(row)
            plan.jobs.append({**base, "runner": "web_item", "kind": "distractor_image", "key": wid,
                              "seed": [s.seed, 8, g], "true_label": true_id, "media": "image", "path": row["path"],
                              "width": w, "height": h})
            g += 1
