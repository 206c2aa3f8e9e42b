"""Videos: probe (without ffprobe) and read_frames, the entry point for frames at indices (PyAV or torchcodec)."""
from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from curate.media.checks import IMAGE_KINDS, Deadline, MediaError, check_file, open_video
from curate.media.frames import MOV, check_output, index_packets, output_size, read_pyav
from curate.media.image import probe_image, read_image


@dataclass(frozen=True)
class Probe:
    media: str             # video or image
    width: int             # as displayed (rotation applied)
    height: int
    fps: float | None
    frames: int            # frames a decoder shows (packets counted, not the header's claim)
    duration_s: float | None
    codec: str
    bytes: int
    has_audio: bool = False
    container: str = ""
    rotation: int = 0      # degrees anticlockwise the stored frames are turned for display; read_frames applies it

    def as_row(self) -> dict:
        """The manifest columns a probe fills."""
        return {k: getattr(self, k) for k in ("media", "width", "height", "fps", "frames", "duration_s", "codec", "bytes")}


def probe(path: str | os.PathLike) -> Probe:
    """Probe a video or image without ffprobe: size, fps, frame count, duration, codec; the first frame is decoded.

    The frame count is what the file holds (for mp4 its sample table, checked against the file size; otherwise
    packets counted), not what a header claims.
    """
    kind, size = check_file(path)
    if kind in IMAGE_KINDS:
        return probe_image(path, kind, size)
    deadline = Deadline(path)
    with open_video(path, kind) as (container, stream):
        frames, span = _count_from_sample_table(container, stream, path, size)
        if frames is not None:
            first = _first_frame(container, stream, path, deadline)
        else:
            index = index_packets(container, stream, path, deadline, decode_first=True)
            frames, first = index.frames, index.first
            if index.timed and frames > 1:
                shown = [index.pts[i] for i in index.shown]
                span = float((shown[-1] - shown[0]) * frames / (frames - 1) * stream.time_base)
        fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        if span and frames > 1:  # the measured rate, unless the stream's nominal one agrees (timestamp rounding)
            fps = fps if fps and abs(frames / span - fps) <= 0.005 * fps else frames / span
        duration = frames / fps if fps else span
        rotation = int(first.rotation) % 360
        w, h = (first.height, first.width) if rotation in (90, 270) else (first.width, first.height)
        return Probe("video", w, h, fps, frames, duration, stream.codec_context.name, size,
                     has_audio=bool(container.streams.audio), container=container.format.name.split(",")[0],
                     rotation=rotation)


def _count_from_sample_table(container, stream, path, size: int) -> tuple[int | None, float | None]:
    """(frames, seconds) from an mp4's sample table when it is complete, without reading the media data."""
    entries = stream.index_entries if container.format.name.startswith(MOV) else []
    if not entries or len(entries) != stream.frames:
        return None, None  # not mp4, or fragmented: count packets instead
    if max(e.pos + e.size for e in entries) > size:
        raise MediaError("truncated", "the file ends before the media data its index lists", path)
    frames = sum(not e.is_discard for e in entries)
    span = float(stream.duration * stream.time_base) if stream.duration else None
    return frames, span


def _first_frame(container, stream, path, deadline: Deadline):
    import av

    try:
        for packet in container.demux(stream):
            for frame in stream.codec_context.decode(packet if packet.size else None):
                return frame
            deadline.check()
    except av.error.FFmpegError as exc:
        raise MediaError("undecodable", f"the first frame does not decode: {exc}", path) from exc
    raise MediaError("undecodable", "no frame decodes", path)


def read_frames(path: str | os.PathLike, indices, size: tuple[int, int] | int | None = None,
                backend: str | None = None, threads: int | None = None) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed) as uint8 RGB [len(indices), H, W, 3], as displayed.

    size=(h, w) resizes at conversion time; size=s makes the shorter side s (aspect kept). backend: 'pyav'
    (default; see curate/media/frames.py) or 'torchcodec' (its exact-seek VideoDecoder); CURATE_DECODER sets the
    default. threads: how many threads one read may use (default: all CPUs, 1 inside a DataLoader worker).
    An image reads as a one-frame video.
    """
    indices = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not indices:
        raise ValueError("no frame indices given")
    if min(indices) < 0:
        raise ValueError(f"negative frame index {min(indices)}")
    backend = backend or os.environ.get("CURATE_DECODER", "pyav")
    if backend not in ("pyav", "torchcodec"):
        raise ValueError(f"backend must be 'pyav' or 'torchcodec', got {backend!r}")
    kind, _ = check_file(path)
    if kind in IMAGE_KINDS:
        return _read_image_as_video(path, indices, size)
    if backend == "torchcodec":
        from curate.media.tc import read_torchcodec

        return read_torchcodec(path, kind, indices, size)
    return read_pyav(path, kind, indices, size, Deadline(path), threads)


def _read_image_as_video(path, indices: list[int], size) -> np.ndarray:
    if max(indices) > 0:
        raise MediaError("truncated", f"frame {max(indices)} asked for, an image has one", path)
    image = read_image(path)
    h, w = output_size(*image.shape[:2], size)
    check_output(path, len(indices), h, w)
    if (h, w) != image.shape[:2]:
        import cv2

        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    return np.repeat(image[None], len(indices), axis=0)
