"""What a worker does for one planned item of the demo world: render its frames, write its file(s), report boxes.

Jobs are plain dicts made by `curate.demo.synth.plan`; every random choice comes from the job's own seed, so a world is
the same whichever worker runs which job, in whatever order.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

import cv2
import numpy as np

from curate import media
from curate.demo.synth import render as R
from curate.demo.synth.classes import classes

BOX_COLUMNS = ("video_id", "kind", "frame", "time_s", "actor", "label_id", "x1", "y1", "x2", "y2")


def write_video(path: Path, frames: np.ndarray, fps: float, crf: int = 23) -> Path:
    """H.264 that repeats byte for byte: the same seed gives the same files."""
    return media.write_video(path, frames, fps=fps, crf=crf, deterministic=True)


def _rng(seed: list[int]) -> np.random.Generator:
    return np.random.default_rng(list(seed))


def _spec(job: dict, label_id: int):
    return classes(job["num_classes"])[label_id]


def file_meta(path: Path) -> dict:
    data = path.read_bytes()
    return {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest()}


def timeline(spec, rng: np.random.Generator, n: int, spans: list[tuple[int, int]], pad: int | None = None) -> R.States:
    """The object acting inside each (start, end) frame span and standing still next to it.

    Between spans it holds the nearest span's boundary state; with `pad`, it is absent more than `pad` frames away.
    """
    states = R.absent(n)
    moves = [R.act(spec, rng, e - s) for s, e in spans]
    for (s, e), mv in zip(spans, moves):
        for k in R.STATE_KEYS:
            states[k][s:e] = mv[k]
    for t in range(n):
        if any(s <= t < e for s, e in spans):
            continue
        dist = [(s - t if t < s else t - e + 1, i) for i, (s, e) in enumerate(spans)]
        d, i = min(dist)
        if pad is not None and d > pad:
            continue
        idx = 0 if t < spans[i][0] else -1
        for k in R.STATE_KEYS:
            states[k][t] = moves[i][k][idx]
    return states


def frame_labels(n: int, spans: list[tuple[int, int]], label_id: int) -> np.ndarray:
    out = np.full(n, -1, dtype=np.int64)
    for s, e in spans:
        out[s:e] = label_id
    return out


def box_rows(video_id: str, kind: str, boxes: np.ndarray, labels: list[np.ndarray], fps: float | None) -> list[dict]:
    """One row per (frame, actor) where the actor is seen."""
    rows = []
    for t, j in zip(*np.nonzero(~np.isnan(boxes[..., 0]))):
        x1, y1, x2, y2 = (round(float(v), 4) for v in boxes[t, j])
        rows.append({"video_id": video_id, "kind": kind, "frame": int(t),
                     "time_s": round(t / fps, 4) if fps else 0.0, "actor": int(j),
                     "label_id": int(labels[j][t]), "x1": x1, "y1": y1, "x2": x2, "y2": y2})
    return rows


# ------------------------------------------------------------------ the target dataset


def target_frames(job: dict) -> tuple[np.ndarray, np.ndarray]:
    """The source video of a target clip: the action in [start, start + clip) and the object still around it."""
    rng = _rng(job["seed"])
    spec = _spec(job, job["label_id"])
    n, a, t = job["source_frames"], job["start_frame"], job["clip_frames"]
    moving = R.act(spec, rng, t)
    states = R.concat([R.hold(moving, 0, a), moving, R.hold(moving, -1, n - a - t)])
    actor = R.Actor.of(spec, states, rng)
    return R.render(job["size"], job["size"], n, rng, [actor], R.clutter(rng, n, classes(job["num_classes"])))


def run_target(root: Path, job: dict) -> dict:
    frames, boxes = target_frames(job)
    a, t = job["start_frame"], job["clip_frames"]
    clip = write_video(root / job["clip_path"], frames[a:a + t], fps=job["fps"])
    out = {"key": job["key"], "clip": file_meta(clip)}
    if job.get("web_path"):
        out["source"] = file_meta(write_video(root / job["web_path"], frames, fps=job["fps"]))
    labels = [np.full(t, job["label_id"])]
    out["boxes"] = box_rows(job["key"], "target", boxes[a:a + t], labels, job["fps"])
    return out


# ------------------------------------------------------------------ web items: images, feed videos, near-copies


def _subject(job: dict, rng: np.random.Generator, n: int, pick: int | None = None) -> tuple[list, R.Clutter]:
    """Actors and clutter for a web item: its true class acting, or only clutter when true_label is -1."""
    specs = classes(job["num_classes"])
    if job["true_label"] < 0:
        return [], R.clutter(rng, n, specs, bystanders=int(rng.integers(1, 3)))
    spec = specs[job["true_label"]]
    states = R.act(spec, rng, 16 if pick is not None else n)
    if pick is not None:
        states = R.hold(states, pick, n)
    return [R.Actor.of(spec, states, rng)], R.clutter(rng, n, specs)


def _look(rng: np.random.Generator, strong: bool) -> dict:
    """Web-photo looks: contrast, brightness and tint, and for photos sometimes a mirror or a blur."""
    return {"contrast": rng.uniform(0.8, 1.25), "bright": rng.uniform(-20, 20), "tint": rng.uniform(0.88, 1.12, size=3),
            "flip": strong and rng.random() < 0.5, "blur": strong and rng.random() < 0.25}


def _apply(img: np.ndarray, look: dict) -> np.ndarray:
    out = ((img.astype(np.float32) - 128) * look["contrast"] + 128 + look["bright"]) * look["tint"]
    if look["flip"]:
        out = out[:, ::-1]
    if look["blur"]:
        out = cv2.GaussianBlur(out, (3, 3), 0)
    return np.clip(out + 0.5, 0, 255).astype(np.uint8)


def run_web_item(root: Path, job: dict) -> dict:
    """A web image (one frame of the action, augmented) or a short feed video."""
    rng = _rng(job["seed"])
    h, w = job["height"], job["width"]
    if job["media"] == "image":
        pick = int(rng.integers(0, 16))
        actors, movers = _subject(job, rng, 1, pick)
        frames, boxes = R.render(h, w, 1, rng, actors, movers)
        img = _apply(frames[0], _look(rng, strong=True))
        path = media.write_image(root / job["path"], img, int(rng.integers(60, 95)))
        fps = None
    else:
        n = job["frames"]
        actors, movers = _subject(job, rng, n)
        frames, boxes = R.render(h, w, n, rng, actors, movers)
        look = _look(rng, strong=False)
        frames = np.stack([_apply(f, look) for f in frames])
        fps = job["fps"]
        path = write_video(root / job["path"], frames, fps=fps, crf=int(rng.integers(20, 30)))
    labels = [np.full(len(boxes), job["true_label"])]
    return {"key": job["key"], "file": file_meta(path), "boxes": box_rows(job["key"], job["kind"], boxes, labels, fps)}


def run_near_copy(root: Path, job: dict) -> dict:
    """A re-encoded, slightly cropped and colour-shifted copy of a target clip (or one of its frames)."""
    target = job["target"]
    frames, _ = target_frames(target)
    a = target["start_frame"]
    clip = frames[a:a + target["clip_frames"]]
    rng = _rng(job["seed"])
    h, w = clip.shape[1:3]
    m = rng.integers(1, max(2, h // 12), size=4)
    clip = clip[:, m[0]:h - m[1], m[2]:w - m[3]]
    shift = rng.uniform(-12, 12, size=3)
    clip = np.clip(clip.astype(np.float32) + shift + 0.5, 0, 255).astype(np.uint8)
    size = (job["width"], job["height"])
    clip = np.stack([cv2.resize(f, size, interpolation=cv2.INTER_AREA) for f in clip])
    if job["media"] == "image":
        path = media.write_image(root / job["path"], clip[int(rng.integers(0, len(clip)))], 80)
    else:
        path = write_video(root / job["path"], clip, fps=job["fps"], crf=30)
    return {"key": job["key"], "file": file_meta(path), "boxes": []}


# ------------------------------------------------------------------ untrimmed videos, routines, scenes


def run_untrimmed(root: Path, job: dict) -> dict:
    """A long video: the true class acting in its spans, a bystander blob moving about the whole time."""
    rng = _rng(job["seed"])
    n, spans = job["frames"], [tuple(s) for s in job["spans"]]
    scene = R.clutter(rng, n, classes(job["num_classes"]), bystanders=1)
    actors, labels = [], []
    if job["true_label"] >= 0 and spans:
        spec = _spec(job, job["true_label"])
        actors.append(R.Actor.of(spec, timeline(spec, rng, n, spans, pad=job["pad"]), rng))
        labels.append(frame_labels(n, spans, job["true_label"]))
    frames, boxes = R.render(job["height"], job["width"], n, rng, actors, scene)
    path = write_video(root / job["path"], frames, fps=job["fps"])
    return {"key": job["key"], "file": file_meta(path),
            "boxes": box_rows(job["key"], job["kind"], boxes, labels, job["fps"])}


def run_montage(root: Path, job: dict) -> dict:
    """Shots edited together: each its own scene, one class acting through it (or none), hard cuts or fades."""
    rng = _rng(job["seed"])
    specs, fade, fps = classes(job["num_classes"]), job["fade"], job["fps"]
    parts, boxes = [], []
    for shot in job["shots"]:
        n = shot["end"] - shot["start"]
        actors = ([R.Actor.of(specs[shot["label_id"]], R.act(specs[shot["label_id"]], rng, n), rng)]
                  if shot["label_id"] >= 0 else [])
        frames, b = R.render(job["height"], job["width"], n, rng, actors, R.clutter(rng, n, specs, bystanders=1))
        parts.append(frames.astype(np.float32))
        for row in box_rows(job["key"], job["kind"], b, [np.full(n, shot["label_id"])], fps):
            boxes.append({**row, "frame": row["frame"] + shot["start"], "time_s": round((row["frame"] + shot["start"]) / fps, 4)})
    for k, shot in enumerate(job["shots"][1:], 1):     # a fade: out to black, then in from black
        if shot["transition"] == "fade":
            ramp = np.arange(fade, dtype=np.float32) / fade
            parts[k - 1][-fade:] *= ramp[::-1, None, None, None]
            parts[k][:fade] *= ramp[:, None, None, None]
    frames = np.clip(np.concatenate(parts) + 0.5, 0, 255).astype(np.uint8)
    path = write_video(root / job["path"], frames, fps=fps)
    return {"key": job["key"], "file": file_meta(path), "boxes": boxes}


def run_routine(root: Path, job: dict) -> dict:
    """A competition video: event instances, each a run of elements (one object per element) with pauses."""
    rng = _rng(job["seed"])
    n = job["frames"]
    actors, labels = [], []
    for ev in job["events"]:
        elems = ev["elements"]
        cuts = [ev["start"]] + [(elems[i][1] + elems[i + 1][0]) // 2 for i in range(len(elems) - 1)] + [ev["end"]]
        for i, (s, e, label_id) in enumerate(elems):
            spec = _spec(job, label_id)
            states = timeline(spec, rng, n, [(s, e)], pad=None)
            states["visible"][:] = 0.0
            states["visible"][cuts[i]:cuts[i + 1]] = 1.0  # on stage from the pause before to the pause after
            actors.append(R.Actor.of(spec, states, rng))
            labels.append(frame_labels(n, [(s, e)], label_id))
    frames, boxes = R.render(job["height"], job["width"], n, rng, actors,
                             R.clutter(rng, n, classes(job["num_classes"]), bystanders=1))
    path = write_video(root / job["path"], frames, fps=job["fps"])
    return {"key": job["key"], "file": file_meta(path),
            "boxes": box_rows(job["key"], job["kind"], boxes, labels, job["fps"])}


def _place(states: R.States, x0: float, y0: float, scale: float) -> R.States:
    """Shrink a motion into the square region at (x0, y0) of side `scale`."""
    out = dict(states)
    out["cx"], out["cy"], out["r"] = x0 + scale * states["cx"], y0 + scale * states["cy"], scale * states["r"]
    return out


def run_scene(root: Path, job: dict) -> dict:
    """A multi-actor scene (AVA-style): each actor acts in its spans and stands still otherwise."""
    rng = _rng(job["seed"])
    n = job["frames"]
    actors, labels = [], []
    for a in job["actors"]:
        spec = _spec(job, a["label_id"])
        spans = [tuple(s) for s in a["spans"]]
        states = _place(timeline(spec, rng, n, spans, pad=None), a["x0"], a["y0"], a["scale"])
        actors.append(R.Actor.of(spec, states, rng))
        labels.append(frame_labels(n, spans, a["label_id"]))
    frames, boxes = R.render(job["height"], job["width"], n, rng, actors, R.clutter(rng, n, classes(job["num_classes"])))
    path = write_video(root / job["path"], frames, fps=job["fps"])
    return {"key": job["key"], "file": file_meta(path),
            "boxes": box_rows(job["key"], job["kind"], boxes, labels, job["fps"])}


# ------------------------------------------------------------------ broken files


def run_broken(root: Path, job: dict) -> dict:
    """Files a crawler must reject cleanly: truncated, HTML, empty, random bytes, a one-frame video."""
    rng = _rng(job["seed"])
    path = root / job["path"]
    path.parent.mkdir(parents=True, exist_ok=True)
    how = job["broken"]
    if how in ("truncated_mp4", "one_frame_mp4"):
        n = 16 if how == "truncated_mp4" else 1
        frames, _ = R.render(64, 64, n, rng, [], R.clutter(rng, n, [], decoys=False))
        write_video(path, frames, fps=8)
        if how == "truncated_mp4":
            data = path.read_bytes()
            path.write_bytes(data[: len(data) * 2 // 5])
    elif how == "html_mp4":
        path.write_text("<!doctype html><html><head><title>Sign in</title></head>"
                        "<body><p>Please sign in to watch this video.</p></body></html>\n")
    elif how == "empty_jpg":
        path.write_bytes(b"")
    elif how == "random_jpg":
        path.write_bytes(rng.integers(0, 256, size=3000, dtype=np.uint8).tobytes())
    elif how == "truncated_jpg":
        frames, _ = R.render(64, 64, 1, rng, [], R.clutter(rng, 1, [], decoys=False))
        media.write_image(path, frames[0], 90)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 3])
    else:
        raise ValueError(f"unknown broken kind {how!r}")
    return {"key": job["key"], "file": file_meta(path), "boxes": []}


RUNNERS = {"target": run_target, "web_item": run_web_item, "near_copy": run_near_copy, "untrimmed": run_untrimmed,
           "montage": run_montage,
           "routine": run_routine, "scene": run_scene, "broken": run_broken}


def run(root: str, job: dict) -> dict:
    """Execute one job under the world root (the process-pool entry point)."""
    return RUNNERS[job["runner"]](Path(root), job)
