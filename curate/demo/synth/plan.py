"""Planning the demo world: every item, its true label, its web id and its worker job, decided up front from the seed.

Planning is cheap and sequential (one random stream); rendering happens later in any order (`curate.demo.synth.jobs`).
"""
from __future__ import annotations

import base64
import dataclasses
import datetime as dt
import hashlib
from dataclasses import dataclass, field

import numpy as np

from curate.core import manifest as mf
from curate.crawl.plan import hashtags
from curate.demo.synth.classes import classes, hierarchy

SPLITS = ("train", "val", "test")
BROKEN_KINDS = ("truncated_mp4", "html_mp4", "empty_jpg", "random_jpg", "truncated_jpg", "one_frame_mp4")
_BROKEN_WHERE = {"truncated_mp4": "feed_video", "html_mp4": "untrimmed", "one_frame_mp4": "feed_video",
                 "empty_jpg": "web_image", "random_jpg": "web_image", "truncated_jpg": "web_image"}
_MALICIOUS_TITLES = ("../../../etc/passwd", "x" * 300 + ".mp4", "nul\x00byte/../name")


@dataclass(frozen=True)
class WorldSpec:
    """How big the world is. Counts are per class unless named otherwise."""

    num_classes: int = 10
    seed: int = 0
    size: int = 64                 # target clips are size x size
    fps: float = 8.0
    clip_frames: int = 16          # the annotated action (2 s)
    source_frames: int = 40        # the longer source video a target clip is cut from
    train_per_class: int = 8
    val_per_class: int = 16
    test_per_class: int = 24
    web_images_per_class: int = 40
    feed_images_per_class: int = 24
    feed_videos_per_class: int = 10
    untrimmed_per_class: int = 4
    untrimmed_frames: int = 80
    montages_per_class: int = 3    # untrimmed videos of several shots (cuts and fades), found as "<class> compilation"
    distractor_images_per_class: int = 20   # image search results for "<class> <distractor_word>" ...
    distractor_noise_rate: float = 0.7      # ... and how many of them name the wrong class
    distractor_word: str = "meme"
    noise_rate: float = 0.3        # web items whose query/tag names the wrong class (half another class, half clutter)
    near_copies: int = 24          # web items that are re-encoded copies of val/test clips (total)
    routines_per_event: int = 2    # FineGym-style competition videos per event
    scenes: int = 24               # AVA-style multi-actor videos (total; 12 left the tiny detector below the class prior)
    broken: int = 6                # broken files in the web corpus (total)
    gone_rate: float = 0.02        # target source videos removed from the web (404)
    opt_out_rate: float = 0.03     # web items served with X-Robots-Tag: noai
    private_rate: float = 0.03     # web items under a path robots.txt disallows

    def __post_init__(self) -> None:
        problems = [f"{k} must be >= 0, got {v}" for k, v in dataclasses.asdict(self).items()
                    if isinstance(v, (int, float)) and v < 0]
        problems += [f"{k} must lie in [0, 1], got {getattr(self, k)}"
                     for k in ("noise_rate", "gone_rate", "opt_out_rate", "private_rate", "distractor_noise_rate")
                     if getattr(self, k) > 1]
        if self.source_frames < self.clip_frames + 8:
            problems.append(f"source_frames ({self.source_frames}) must exceed clip_frames ({self.clip_frames}) by 8")
        if min(self.train_per_class, self.size, self.clip_frames, self.untrimmed_frames // 40) < 1:
            problems.append("train_per_class, size and clip_frames must be >= 1 and untrimmed_frames >= 40")
        if problems:
            raise ValueError("bad world spec: " + "; ".join(problems))


@dataclass
class Plan:
    spec: WorldSpec
    jobs: list[dict] = field(default_factory=list)
    target: list[dict] = field(default_factory=list)   # item-manifest records of the target clips
    web: list[dict] = field(default_factory=list)      # the web corpus with its ground truth
    actions: list[dict] = field(default_factory=list)  # timed action spans inside longer videos
    events: list[dict] = field(default_factory=list)   # event instances inside routine videos
    shots: list[dict] = field(default_factory=list)    # the shots of montage videos
    tree: dict = field(default_factory=dict)


def web_id(seed: int, kind: str, index: int) -> str:
    """An 11-character YouTube-style id (letters, digits, '-' and '_'; starts with a letter or digit)."""
    digest = hashlib.sha256(f"curate-world:{seed}:{kind}:{index}".encode()).digest()
    text = base64.urlsafe_b64encode(digest).decode().rstrip("=")
    first = next(c for c in text if c.isalnum())
    return first + text[text.index(first) + 1:][:10]


def _date(rng: np.random.Generator) -> str:
    return (dt.date(2015, 1, 1) + dt.timedelta(days=int(rng.integers(0, 2000)))).isoformat()


def _spans(rng: np.random.Generator, n: int, k: int, lengths: tuple[int, int], gap: int, edge: int) -> list[list[int]]:
    """k non-overlapping [start, end) frame spans inside n frames, at least `gap` apart and `edge` from the ends."""
    for _ in range(100):
        lens = rng.integers(lengths[0], lengths[1] + 1, size=k)
        free = n - 2 * edge - int(lens.sum()) - gap * (k - 1)
        if free >= 0:
            cuts = np.sort(rng.integers(0, free + 1, size=k))
            out, pos = [], edge
            for i, ln in enumerate(lens):
                start = pos + int(cuts[i] - (cuts[i - 1] if i else 0))
                out.append([start, start + int(ln)])
                pos = start + int(ln) + gap
            return out
        k = max(1, k - 1)
    raise ValueError(f"cannot place action spans in {n} frames")


def make_plan(spec: WorldSpec) -> Plan:
    """Decide every item of the world (no rendering)."""
    specs = classes(spec.num_classes)
    plan = Plan(spec, tree=hierarchy(specs))
    rng = np.random.default_rng([spec.seed, 0])
    base = {"num_classes": spec.num_classes}
    _plan_target(plan, specs, rng, base)
    _plan_web(plan, specs, rng, base)
    _plan_near_copies(plan, rng, base)
    _plan_broken(plan, specs, rng)
    _plan_routines(plan, rng, base)
    _plan_scenes(plan, specs, rng, base)
    from curate.demo.synth.extras import plan_extras  # planned last: every item above keeps its bytes

    plan_extras(plan, specs, rng, base)
    return plan


def _hier(plan: Plan, label_id: int) -> dict:
    el = plan.tree["elements"][label_id]
    st = next(s for s in plan.tree["sets"] if s["id"] == el["set_id"])
    ev = next(e for e in plan.tree["events"] if e["id"] == el["event_id"])
    return {"event": ev["name"], "event_id": ev["id"], "set": st["name"], "set_id": st["id"],
            "element": el["name"], "element_id": el["id"]}


def _plan_target(plan: Plan, specs, rng: np.random.Generator, base: dict) -> None:
    s = plan.spec
    counts = {"train": s.train_per_class, "val": s.val_per_class, "test": s.test_per_class}
    g = 0
    for label_id, cs in enumerate(specs):
        for split in SPLITS:
            for _ in range(counts[split]):
                wid = web_id(s.seed, "source", g)
                a = int(rng.integers(4, s.source_frames - s.clip_frames - 3))
                start_s, end_s = a / s.fps, (a + s.clip_frames) / s.fps
                iid = mf.item_id("synthetic", wid, start_s, end_s)
                gone = bool(rng.random() < s.gone_rate)
                web_path = None if gone else f"web/v/{wid}.mp4"
                plan.jobs.append({**base, "runner": "target", "key": iid, "seed": [s.seed, 1, g], "label_id": label_id,
                                  "start_frame": a, "clip_frames": s.clip_frames, "source_frames": s.source_frames,
                                  "size": s.size, "fps": s.fps, "clip_path": mf.media_relpath("synthetic", iid, "mp4"),
                                  "web_path": web_path})
                plan.target.append({"item_id": iid, "source": "synthetic", "source_id": wid, "label": cs.name,
                                    "label_id": label_id, "split": split, "media": "video", "start_s": start_s,
                                    "end_s": end_s, "path": mf.media_relpath("synthetic", iid, "mp4"),
                                    "width": s.size, "height": s.size, "fps": s.fps, "frames": s.clip_frames,
                                    "duration_s": s.clip_frames / s.fps, "codec": "h264", "status": "ok",
                                    **_hier(plan, label_id)})
                plan.web.append(_web_row(plan, wid, "target_source", "video", web_path, cs.name, label_id, label_id,
                                         title=f"{cs.name} {wid}", rng=rng, frames=s.source_frames, width=s.size,
                                         height=s.size, gone=gone, private=False, noai=False))
                plan.actions.append({"video_id": wid, "kind": "target_source", "actor": 0, "start_frame": a,
                                     "end_frame": a + s.clip_frames, "label": cs.name, "label_id": label_id,
                                     "event_key": None})
                g += 1


def _web_row(plan: Plan, wid: str, kind: str, media: str, path: str | None, query_label: str, query_id: int,
             true_id: int, *, title: str, rng: np.random.Generator, frames: int = 1, width: int, height: int,
             fps: float | None = None, query: str | None = None, tag: str | None = None, gone: bool = False,
             private: bool | None = None, noai: bool | None = None, copy_of: str | None = None,
             broken: str | None = None) -> dict:
    s = plan.spec
    fps = fps or (s.fps if media == "video" else None)
    private = bool(rng.random() < s.private_rate) if private is None else private
    noai = bool(rng.random() < s.opt_out_rate) if noai is None else noai
    if private and path:
        path = path.replace("web/", "web/private/", 1)
    names = [c.name for c in classes(s.num_classes)]
    source = {"web_image": "web_image", "distractor_image": "web_image", "feed_image": "feed_image",
              "feed_video": "feed_video"}.get(kind, "youtube")
    return {
        "item_id": mf.item_id(source, wid), "source": source, "source_id": wid,
        "url": "/" + path[len("web/"):] if path else None, "query": query or (f"#{tag}" if tag else None),
        "label": query_label, "label_id": query_id, "split": "web", "media": media, "path": path,
        "width": width, "height": height, "fps": fps if media == "video" else None, "frames": frames,
        "duration_s": frames / fps if media == "video" else None,
        "codec": None if broken else ("h264" if media == "video" else path.rsplit(".", 1)[-1] if path else None),
        "status": "ok", "kind": kind, "title": title, "tag": tag, "uploaded": _date(rng),
        "true_label": names[true_id] if true_id >= 0 else None, "true_label_id": true_id,
        "noisy": true_id != query_id, "copy_of": copy_of, "broken": broken, "gone": gone, "private": private,
        "noai": noai,
    }


def _noise(rng: np.random.Generator, n: int, rate: float, label_id: int, num_classes: int) -> list[int]:
    """True labels for n items collected for label_id: exactly round(rate * n) are wrong, half another class, half clutter."""
    truth = [label_id] * n
    wrong = rng.permutation(n)[: int(round(rate * n))]
    for k, i in enumerate(wrong):
        if k % 2 == 0:
            other = int(rng.integers(0, num_classes - 1))
            truth[i] = other + (other >= label_id)
        else:
            truth[i] = -1
    return truth


def _plan_web(plan: Plan, specs, rng: np.random.Generator, base: dict) -> None:
    s = plan.spec
    kinds = (("web_image", s.web_images_per_class), ("feed_image", s.feed_images_per_class),
             ("feed_video", s.feed_videos_per_class), ("untrimmed", s.untrimmed_per_class))
    g = 0
    malicious = list(_MALICIOUS_TITLES)
    for label_id, cs in enumerate(specs):
        tags = hashtags(cs.name)
        for kind, n in kinds:
            for k, true_id in enumerate(_noise(rng, n, s.noise_rate, label_id, len(specs))):
                wid = web_id(s.seed, kind, g)
                job = {**base, "runner": "web_item", "key": wid, "seed": [s.seed, 2, g], "kind": kind,
                       "true_label": true_id}
                g += 1
                if kind == "web_image":
                    w, h = [(96, 72), (72, 96), (80, 80), (128, 96), (64, 64), (112, 84)][rng.integers(0, 6)]
                    ext = "png" if rng.random() < 0.15 else "jpg"
                    if malicious:
                        title = malicious.pop(0)
                    else:
                        title = f"{cs.name} - {rng.choice(['photo', 'picture', 'stock image', 'wallpaper'])} {k}"
                    row = _web_row(plan, wid, kind, "image", f"web/i/{wid}.{ext}", cs.name, label_id, true_id,
                                   title=title, rng=rng, width=w, height=h, query=cs.name)
                elif kind == "feed_image":
                    w = h = int(rng.choice([80, 96]))
                    tag = tags[int(rng.integers(0, len(tags)))]
                    row = _web_row(plan, wid, kind, "image", f"web/i/{wid}.jpg", cs.name, label_id, true_id,
                                   title=f"#{tag} {rng.choice(['love this', 'weekend', 'today', 'wow'])}", rng=rng,
                                   width=w, height=h, tag=tag)
                elif kind == "feed_video":
                    w, h = [(64, 64), (80, 64), (64, 80), (96, 96)][rng.integers(0, 4)]
                    tag = tags[int(rng.integers(0, len(tags)))]
                    frames, fps = int(rng.choice([12, 16, 20, 24])), float(rng.choice([8, 10, 12]))
                    row = _web_row(plan, wid, kind, "video", f"web/v/{wid}.mp4", cs.name, label_id, true_id,
                                   title=f"#{tag} clip", rng=rng, frames=frames, fps=fps, width=w, height=h, tag=tag)
                    job.update(frames=frames, fps=fps)
                else:
                    frames = int(s.untrimmed_frames + rng.integers(-s.untrimmed_frames // 5, s.untrimmed_frames // 5 + 1))
                    spans = _spans(rng, frames, int(rng.integers(1, 3)), (12, 20), 8, 4) if true_id >= 0 else []
                    row = _web_row(plan, wid, kind, "video", f"web/v/{wid}.mp4", cs.name, label_id, true_id,
                                   title=f"{cs.name} {rng.choice(['compilation', 'tutorial', 'vlog'])} {k}",
                                   rng=rng, frames=frames, width=s.size, height=s.size, query=cs.name)
                    job.update(runner="untrimmed", frames=frames, fps=s.fps, spans=spans, pad=int(rng.integers(2, 7)))
                    for a, b in spans:
                        plan.actions.append({"video_id": wid, "kind": "untrimmed", "actor": 0, "start_frame": a,
                                             "end_frame": b, "label": specs[true_id].name, "label_id": true_id,
                                             "event_key": None})
                job.update(media=row["media"], path=row["path"], width=row["width"], height=row["height"])
                plan.jobs.append(job)
                plan.web.append(row)


def _plan_near_copies(plan: Plan, rng: np.random.Generator, base: dict) -> None:
    s = plan.spec
    evals = [i for i, r in enumerate(plan.target) if r["split"] in ("val", "test")]
    targets = {j["key"]: j for j in plan.jobs if j["runner"] == "target"}
    for k, i in enumerate(rng.permutation(evals)[: s.near_copies]):
        t = plan.target[int(i)]
        wid = web_id(s.seed, "copy", k)
        video = k % 2 == 0
        side = int(rng.choice([56, 64, 72]))
        tag = hashtags(t["label"])[0]
        row = _web_row(plan, wid, "feed_video" if video else "web_image", "video" if video else "image",
                       f"web/v/{wid}.mp4" if video else f"web/i/{wid}.jpg", t["label"], t["label_id"], t["label_id"],
                       title=f"#{tag} repost" if video else f"{t['label']} - photo", rng=rng,
                       frames=s.clip_frames if video else 1, width=side, height=side,
                       tag=tag if video else None, query=None if video else t["label"], copy_of=t["item_id"])
        plan.web.append(row)
        plan.jobs.append({**base, "runner": "near_copy", "key": wid, "seed": [s.seed, 3, k], "media": row["media"],
                          "path": row["path"], "width": side, "height": side, "fps": s.fps,
                          "target": targets[t["item_id"]]})


def _plan_broken(plan: Plan, specs, rng: np.random.Generator) -> None:
    s = plan.spec
    for k in range(s.broken):
        how = BROKEN_KINDS[k % len(BROKEN_KINDS)]
        kind = _BROKEN_WHERE[how]
        label_id = int(rng.integers(0, len(specs)))
        wid = web_id(s.seed, "broken", k)
        media = "image" if how.endswith("jpg") else "video"
        path = f"web/{'i' if media == 'image' else 'v'}/{wid}.{'jpg' if media == 'image' else 'mp4'}"
        tag = hashtags(specs[label_id].name)[0] if kind == "feed_video" else None
        row = _web_row(plan, wid, kind, media, path, specs[label_id].name, label_id, label_id,
                       title=f"{specs[label_id].name} {k}", rng=rng, width=64, height=64, tag=tag,
                       query=None if tag else specs[label_id].name, private=False, noai=False, broken=how)
        plan.web.append(row)
        plan.jobs.append({"runner": "broken", "key": wid, "seed": [s.seed, 4, k], "path": path, "broken": how})


def _plan_routines(plan: Plan, rng: np.random.Generator, base: dict) -> None:
    """Competition videos: each holds two event instances, each a run of 3-4 elements of that event."""
    s = plan.spec
    events = plan.tree["events"]
    members = {e["id"]: [el["id"] for el in plan.tree["elements"] if el["event_id"] == e["id"]] for e in events}
    g = 0
    for ev in events:
        for _ in range(s.routines_per_event):
            wid = web_id(s.seed, "routine", g)
            pos = int(rng.integers(8, 17))
            job_events = []
            for which in (ev, events[int(rng.integers(0, len(events)))]):
                start = pos
                pos += int(rng.integers(3, 7))
                elems = []
                for _ in range(int(rng.integers(3, 5))):
                    label_id = int(rng.choice(members[which["id"]]))
                    ln = int(rng.integers(12, 21))
                    elems.append([pos, pos + ln, label_id])
                    pos += ln + int(rng.integers(3, 9))
                end = pos
                key = f"E_{int(start / s.fps):06d}_{int(end / s.fps):06d}"
                job_events.append({"start": start, "end": end, "elements": elems})
                plan.events.append({"video_id": wid, "event_key": key, "event": which["name"], "event_id": which["id"],
                                    "start_frame": start, "end_frame": end})
                for a, b, label_id in elems:
                    plan.actions.append({"video_id": wid, "kind": "routine", "actor": 0, "start_frame": a,
                                         "end_frame": b, "label": plan.tree["elements"][label_id]["name"],
                                         "label_id": label_id, "event_key": key})
                pos += int(rng.integers(12, 25))
            frames = pos
            plan.web.append(_web_row(plan, wid, "routine", "video", f"web/v/{wid}.mp4", ev["name"], -1, -1,
                                     title=f"{ev['name']} final {g}", rng=rng, frames=frames, width=s.size,
                                     height=s.size, private=False, noai=False))
            plan.web[-1].update(label=None, label_id=None, noisy=False)
            plan.jobs.append({**base, "runner": "routine", "kind": "routine", "key": wid, "seed": [s.seed, 5, g],
                              "frames": frames, "fps": s.fps, "events": job_events, "path": f"web/v/{wid}.mp4", "width": s.size,
                              "height": s.size})
            g += 1


def _plan_scenes(plan: Plan, specs, rng: np.random.Generator, base: dict) -> None:
    """AVA-style scenes: 2-3 actors in different quadrants, each acting in 1-2 spans and standing still otherwise."""
    s = plan.spec
    side, n = int(s.size * 1.5) // 2 * 2, 48
    for g in range(s.scenes):
        wid = web_id(s.seed, "scene", g)
        quads = rng.permutation(4)[: int(rng.integers(2, 4))]
        actors = []
        for j, q in enumerate(quads):
            label_id = int(rng.integers(0, len(specs)))
            spans = _spans(rng, n, int(rng.integers(1, 3)), (12, 20), 6, 2)
            actors.append({"label_id": label_id, "spans": spans, "scale": 0.5,
                           "x0": 0.5 * (q % 2) + rng.uniform(-0.04, 0.04), "y0": 0.5 * (q // 2) + rng.uniform(-0.04, 0.04)})
            for a, b in spans:
                plan.actions.append({"video_id": wid, "kind": "scene", "actor": j, "start_frame": a, "end_frame": b,
                                     "label": specs[label_id].name, "label_id": label_id, "event_key": None})
        plan.web.append(_web_row(plan, wid, "scene", "video", f"web/v/{wid}.mp4", "scene", -1, -1,
                                 title=f"street scene {g}", rng=rng, frames=n, width=side, height=side,
                                 private=False, noai=False))
        plan.web[-1].update(label=None, label_id=None, noisy=False)
        plan.jobs.append({**base, "runner": "scene", "kind": "scene", "key": wid, "seed": [s.seed, 6, g], "frames": n,
                          "fps": s.fps, "actors": actors, "path": f"web/v/{wid}.mp4", "width": side, "height": side})
