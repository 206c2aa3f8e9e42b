"""Images → pseudo-videos (OmniSource §5.1): a static repeat, or a moving camera over the still image.

The moving camera is a smooth random path of homographies H(t) (translation, zoom, a small rotation and a small
perspective tilt, each a drift plus a slow wobble) with H(0) = identity, so frame 0 is the image itself. A path is
a function of continuous time: a pseudo-video of `length` frames can be read at any frame indices, exactly like a
decoded video, and the same seed gives the same frames.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

PSEUDO_MODES = ("frame", "static", "moving")


def static_clip(image: np.ndarray, num_frames: int) -> np.ndarray:
    """The image repeated: uint8 [num_frames, H, W, 3] (a view, not a copy)."""
    image = _check_image(image)
    return np.broadcast_to(image[None], (num_frames, *image.shape))


@dataclass(frozen=True)
class CameraPath:
    """Per-parameter drift + wobble: value(t) = drift*u + amp*(sin(2*pi*freq*u + phase) - sin(phase)), u = t/length.

    Parameters (rows): x shift, y shift (fractions of the half width/height), log zoom, rotation (radians),
    x tilt, y tilt (perspective terms in normalised coordinates).
    """

    length: int
    drift: np.ndarray   # [6]
    amp: np.ndarray     # [6]
    freq: np.ndarray    # [6] cycles over the whole pseudo-video
    phase: np.ndarray   # [6]

    def params(self, t: float) -> np.ndarray:
        u = t / max(self.length - 1, 1)
        return self.drift * u + self.amp * (np.sin(2 * np.pi * self.freq * u + self.phase) - np.sin(self.phase))

    def homography(self, t: float, height: int, width: int) -> np.ndarray:
        """3x3 pixel-space homography from the image to frame t (identity at t = 0)."""
        dx, dy, log_zoom, angle, px, py = self.params(t)
        zoom, c, s = np.exp(log_zoom), np.cos(angle), np.sin(angle)
        normalised = np.array([[zoom * c, -zoom * s, dx], [zoom * s, zoom * c, dy], [px, py, 1.0]])
        to_norm = np.array([[2.0 / width, 0, -1.0], [0, 2.0 / height, -1.0], [0, 0, 1.0]])
        return np.linalg.inv(to_norm) @ normalised @ to_norm


# Largest excursion of each parameter over a pseudo-video at strength 1 (drift and wobble each get up to this).
_LIMITS = np.array([0.12, 0.12, 0.10, 0.05, 0.04, 0.04])


def camera_path(rng: np.random.Generator | int | None, length: int, strength: float = 1.0) -> CameraPath:
    """A random smooth camera path over `length` frames; strength scales every excursion."""
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    limit = _LIMITS * strength
    return CameraPath(length=max(int(length), 1), drift=rng.uniform(-1, 1, 6) * limit,
                      amp=rng.uniform(0, 0.5, 6) * limit, freq=rng.uniform(0.3, 1.0, 6),
                      phase=rng.uniform(0, 2 * np.pi, 6))


def moving_clip(image: np.ndarray, indices, rng: np.random.Generator | int | None, length: int | None = None,
                strength: float = 1.0, path: CameraPath | None = None) -> np.ndarray:
    """Frames at `indices` of a moving-camera pseudo-video of `length` frames: uint8 [len(indices), H, W, 3].

    Borders the camera uncovers are filled by reflection. `path` (else one drawn from rng) fixes the motion.
    """
    import cv2

    image = _check_image(image)
    indices = np.asarray(indices).reshape(-1)
    length = int(length if length is not None else (indices.max() + 1 if indices.size else 1))
    path = path or camera_path(rng, length, strength)
    h, w = image.shape[:2]
    out = np.empty((len(indices), h, w, 3), dtype=np.uint8)
    for k, t in enumerate(indices):
        out[k] = cv2.warpPerspective(image, path.homography(float(t), h, w), (w, h), flags=cv2.INTER_LINEAR,
                                     borderMode=cv2.BORDER_REFLECT_101)
    return out


def _check_image(image: np.ndarray) -> np.ndarray:
    image = np.asarray(image)
    if image.ndim != 3 or image.shape[-1] != 3 or image.dtype != np.uint8:
        raise ValueError(f"need a uint8 RGB image [H, W, 3], got {image.dtype} {image.shape}")
    return image


def write_pseudo_rows(rows, root, mode: str = "moving", frames: int = 16, fps: float = 8.0, strength: float = 1.0,
                      seed: int = 0):
    """Usable image rows -> H.264 pseudo-video rows for inspection (source 'pseudo', parent_id = the image row);
    the seed of each camera path comes from (seed, the new row's id), so reruns draw the same paths."""
    import pandas as pd

    from curate import media
    from curate.core import manifest as mf

    if mode not in ("static", "moving"):
        raise ValueError(f"pseudo-video mode must be static or moving, got {mode!r}")
    root, out = Path(root), []
    images = rows[(rows["media"] == "image") & (rows["status"] == "ok") & rows["path"].notna()]
    for r in images.to_dict("records"):
        iid = mf.item_id("pseudo", f"{r['item_id']}:{mode}:{frames}:{strength:g}:{seed}")
        rel = mf.media_relpath("pseudo", iid, "mp4")
        image = media.read_image(root / r["path"])
        clip = (static_clip(image, frames) if mode == "static" else
                moving_clip(image, np.arange(frames), np.random.default_rng([seed, int(iid[:12], 16)]), frames,
                            strength))
        probe = media.probe(media.write_video(root / rel, np.ascontiguousarray(clip), fps=fps))
        keep = {k: (None if pd.isna(r.get(k)) else r.get(k)) for k in ("label", "label_id", "split", "query", "url")}
        out.append({**keep, **probe.as_row(), "item_id": iid, "source": "pseudo", "source_id": r["item_id"],
                    "parent_id": r["item_id"], "path": rel, "status": "ok"})
    return mf.from_records(out)
