"""Frame samplers: MMAction2's SampleFrames semantics (seeded) and a dense sampler for untrimmed video."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

OUT_OF_BOUND = ("loop", "repeat_last")


@dataclass(frozen=True)
class SampleFrames:
    """Which frames a clip-based model sees: `num_clips` clips of `clip_len` frames, `frame_interval` apart.

    Train mode draws one random offset per equal segment (TSN); test mode is deterministic (segment centres for
    clip_len 1, evenly spread clips otherwise). Indices past the end loop or repeat the last frame.
    """

    clip_len: int
    frame_interval: int = 1
    num_clips: int = 1
    temporal_jitter: bool = False
    twice_sample: bool = False
    out_of_bound_opt: str = "loop"
    test_mode: bool = False
    keep_tail_frames: bool = False
    target_fps: float | None = None

    def __post_init__(self) -> None:
        if self.out_of_bound_opt not in OUT_OF_BOUND:
            raise ValueError(f"out_of_bound_opt must be one of {OUT_OF_BOUND}, got {self.out_of_bound_opt!r}")
        for name in ("clip_len", "frame_interval", "num_clips"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.test_mode and self.twice_sample and self.clip_len > 1 and self.num_clips == 1:
            raise ValueError("twice_sample with clip_len > 1 needs num_clips >= 2 (MMAction2 divides by num_clips - 1)")

    def span(self, fps: float | None = None) -> float:
        """Frames covered by one clip (MMAction2's ori_clip_len)."""
        if self.target_fps is not None:
            ratio = fps / self.target_fps if fps else 1.0
            return float(np.maximum(1, self.clip_len * self.frame_interval * ratio))
        if self.test_mode:
            return (self.clip_len - 1) * self.frame_interval + 1
        return self.clip_len * self.frame_interval

    def __call__(self, total_frames: int, fps: float | None = None, rng: np.random.Generator | int | None = None,
                 start_index: int = 0) -> np.ndarray:
        """Frame indices, shape (num_clips * clip_len,) (twice that with twice_sample in test mode), int32."""
        if total_frames < 1:
            raise ValueError(f"cannot sample from a video with {total_frames} frames")
        rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
        span = self.span(fps)
        offsets = self._test_offsets(total_frames, span) if self.test_mode else self._train_offsets(total_frames, span, rng)
        if self.target_fps:
            steps = np.linspace(0, span - 1, self.clip_len).astype(np.int32)
        else:
            steps = np.arange(self.clip_len) * self.frame_interval
        inds = np.asarray(offsets, dtype=np.float64)[:, None] + steps[None, :]
        if self.temporal_jitter:
            inds = inds + rng.integers(self.frame_interval, size=inds.shape)
        inds = _apply_out_of_bound(inds, total_frames, self.out_of_bound_opt)
        return (inds.reshape(-1) + start_index).astype(np.int32)

    def _train_offsets(self, n: int, span: float, rng: np.random.Generator) -> np.ndarray:
        k = self.num_clips
        if self.keep_tail_frames:
            avg = (n - span + 1) / float(k)
            if n > span - 1:
                return (np.arange(k) * avg + rng.uniform(0, avg, k)).astype(np.int32)
            return np.zeros(k, dtype=np.int32)
        avg = int((n - span + 1) // k)
        if avg > 0:
            return np.arange(k) * avg + rng.integers(avg, size=k)
        if n > max(k, span):
            return np.sort(rng.integers(int(n - span + 1), size=k))
        if avg == 0:
            return np.around(np.arange(k) * ((n - span + 1.0) / k))
        return np.zeros(k, dtype=np.int32)

    def _test_offsets(self, n: int, span: float) -> np.ndarray:
        k = self.num_clips
        if self.clip_len == 1:  # 2D models: centre of each segment (+ segment starts with twice_sample)
            avg = n / float(k)
            starts = np.arange(k) * avg
            centres = starts + avg / 2.0
            return np.concatenate([centres, starts]) if self.twice_sample else centres
        max_offset = max(n - span, 0)
        count = 2 * k if self.twice_sample else k
        if count == 1:
            return np.array([max_offset // 2])
        step = max_offset / float(k - 1)
        if self.target_fps is not None:
            return np.arange(count) * np.floor(step)
        return np.round(np.arange(count) * step)


def _apply_out_of_bound(inds: np.ndarray, total: int, opt: str) -> np.ndarray:
    inds = np.floor(inds).astype(np.int64) if inds.dtype.kind == "f" else inds
    if opt == "loop":
        return np.mod(inds, total)
    safe = inds < total
    last = np.max(np.where(safe, inds, 0), axis=1, keepdims=True)
    return np.where(safe, inds, last)


def dense_windows(total_frames: int, fps: float, window_s: float, stride_s: float | None = None) -> list[tuple[int, int]]:
    """[start, end) frame windows of window_s seconds every stride_s seconds covering an untrimmed video.

    The last window is shifted back to end at the last frame, so every frame lies in some window.
    """
    if total_frames < 1 or fps <= 0:
        raise ValueError(f"need frames >= 1 and fps > 0, got {total_frames}, {fps}")
    win = max(1, int(round(window_s * fps)))
    stride = max(1, int(round((stride_s or window_s) * fps)))
    if win >= total_frames:
        return [(0, total_frames)]
    starts = list(range(0, total_frames - win + 1, stride))
    if starts[-1] + win < total_frames:
        starts.append(total_frames - win)
    return [(s, s + win) for s in starts]


def window_indices(start: int, end: int, clip_len: int) -> np.ndarray:
    """clip_len frame indices spread evenly over the window [start, end)."""
    if end <= start:
        raise ValueError(f"empty window [{start}, {end})")
    return np.linspace(start, end - 1, clip_len).round().astype(np.int32)
