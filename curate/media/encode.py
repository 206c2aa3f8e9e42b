"""Writing media: encode frames to H.264 mp4 (PyAV) and cut segments (the ffmpeg command line via ffmpeg-python)."""
from __future__ import annotations

import os
import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np

from curate.core.files import atomic_path
from curate.media.checks import MediaError, check_file

TRIM_TIMEOUT_S = 600.0  # an ffmpeg cut running longer than this is killed (trim_failed)


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


def trim(src: str | os.PathLike, dst: str | os.PathLike, start_s: float, end_s: float, exact: bool = True,
         crf: int = 18) -> Path:
    """Cut [start_s, end_s) of src into the mp4 dst, atomically.

    exact=True re-encodes (libx264, CRF `crf`, audio to AAC) after an accurate seek: the cut starts on the frame
    at start_s and lasts end_s - start_s to within one frame. exact=False copies the streams: no quality loss and
    fast, but the cut starts at the keyframe at or before start_s, so it may hold earlier frames.
    """
    import ffmpeg

    from curate.media.video import probe

    check_file(src)
    if not 0 <= start_s < end_s:
        raise MediaError("trim_failed", f"bad segment [{start_s}, {end_s})", src)
    dst = Path(dst)
    inp = ffmpeg.input(str(src), ss=f"{start_s:.6f}")
    common = dict(t=f"{end_s - start_s:.6f}", movflags="+faststart", avoid_negative_ts="make_zero", f="mp4")
    if exact:
        codecs = dict(vcodec="libx264", crf=crf, preset="veryfast", pix_fmt="yuv420p", acodec="aac")
    else:
        codecs = dict(c="copy")
    with atomic_path(dst) as tmp:
        cmd = (ffmpeg.output(inp, str(tmp), **codecs, **common).overwrite_output()
               .global_args("-nostdin", "-loglevel", "error").compile(cmd=ffmpeg_exe()))
        try:
            run = subprocess.run(cmd, capture_output=True, timeout=TRIM_TIMEOUT_S)
        except subprocess.TimeoutExpired as exc:
            raise MediaError("trim_failed", f"ffmpeg ran past {TRIM_TIMEOUT_S:.0f} s", src) from exc
        if run.returncode != 0:
            tail = run.stderr.decode(errors="replace").strip().splitlines()[-3:]
            raise MediaError("trim_failed", " | ".join(tail) or f"ffmpeg exited with {run.returncode}", src)
        try:
            probe(tmp)
        except MediaError as exc:
            raise MediaError("trim_failed", f"no decodable frames in [{start_s}, {end_s}): {exc.code}", src) from exc
    return dst


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: float = 25.0, crf: int = 23,
                gop: int | None = None, preset: str = "veryfast", deterministic: bool = False) -> Path:
    """Encode uint8 frames (T, H, W, 3, RGB) to an H.264 mp4 (yuv420p; odd sizes are padded to even).

    deterministic=True encodes with x264's plain C code: the same frames then give the same bytes on every run
    (PyAV's bundled x264 with its AVX-512 code does not, under load), at some cost in speed.
    """
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8 or len(frames) == 0:
        raise MediaError("encode_failed", f"need uint8 frames of shape (T, H, W, 3), got {frames.dtype} {frames.shape}")
    import av

    h, w = frames.shape[1:3]
    if h % 2 or w % 2:
        frames = np.pad(frames, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)), mode="edge")
        h, w = frames.shape[1:3]
    path = Path(path)
    try:
        with atomic_path(path) as tmp, av.open(str(tmp), mode="w") as out:
            stream = out.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
            opts = {"crf": str(crf), "preset": preset}
            if deterministic:
                opts["x264-params"] = "asm=0"
            if gop:
                opts.update({"g": str(gop), "keyint_min": str(gop), "sc_threshold": "0"})
            stream.options = opts
            for frame in frames:
                out.mux(stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")))
            out.mux(stream.encode(None))
    except (av.error.FFmpegError, OSError, ValueError) as exc:
        raise MediaError("encode_failed", str(exc), path) from exc
    return path
