"""Media I/O: probe, decode frames at indices, trim, encode, read images. One error type with a code."""
from __future__ import annotations

import os
import shutil
from fractions import Fraction
from pathlib import Path

import numpy as np


class MediaError(Exception):
    """Unusable media. `code` is one of MEDIA_ERROR_CODES; the message says what was found."""

    def __init__(self, code: str, message: str, path: str | os.PathLike | None = None):
        self.code = code
        self.path = str(path) if path is not None else None
        super().__init__(f"{code}: {message}" + (f" ({path})" if path is not None else ""))


MEDIA_ERROR_CODES = (
    "missing",      # no such file
    "empty",        # zero bytes
    "not_media",    # HTML, text or other non-media content
    "undecodable",  # container or stream cannot be decoded
    "truncated",    # decoding stops early / fewer frames than declared
    "no_video",     # container without a video stream (audio only)
    "too_big",      # over a size cap
    "too_long",     # over a duration cap
    "encode_failed",
    "trim_failed",
)


def ffmpeg_exe() -> str:
    """The ffmpeg command-line binary: the one on PATH, else imageio-ffmpeg's bundled binary."""
    exe = shutil.which("ffmpeg")
    if exe:
        return exe
    try:
        import imageio_ffmpeg
    except ImportError as exc:  # pragma: no cover - imageio-ffmpeg is a dependency
        raise MediaError("encode_failed", "no ffmpeg on PATH and imageio-ffmpeg is not installed") from exc
    return imageio_ffmpeg.get_ffmpeg_exe()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25.0, crf: int = 23,
                gop: int | None = None, preset: str = "veryfast") -> Path:
    """Encode uint8 frames (T, H, W, 3, RGB) to an H.264 mp4 (yuv420p; odd sizes are padded to even)."""
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise MediaError("encode_failed", f"need uint8 frames of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    import av

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = frames.shape[1:3]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.mp4")
    try:
        with av.open(str(tmp), mode="w") as out:
            stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            opts = {"crf": str(crf), "preset": preset}
            if gop:
                opts.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
            stream.options = opts
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode(None))
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, MediaError):
            raise
        raise MediaError("encode_failed", str(exc), path) from exc
    return path
