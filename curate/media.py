"""Media I/O: probe, decode frames at indices, trim, encode, read images. One error type with a code."""
from __future__ import annotations

import os
import shutil
import time
from dataclasses import asdict, dataclass
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
    "truncated",    # the file stops early / fewer frames than asked for
    "no_video",     # container without a video stream (audio only)
    "too_big",      # over a size cap (bytes or pixels)
    "too_long",     # over a duration cap
    "encode_failed",
    "trim_failed",
)

MAX_PIXELS = 8192 * 8192          # larger frames or images are refused as too_big
DECODE_TIMEOUT_S = 120.0          # no single read may take longer than this

_MAGIC = [  # (offset, bytes, kind)
    (4, b"ftyp", "mp4"), (0, b"\x1a\x45\xdf\xa3", "mkv"), (0, b"RIFF", "riff"), (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"), (0, b"GIF87a", "gif"), (0, b"GIF89a", "gif"), (0, b"BM", "bmp"),
    (0, b"\x00\x00\x01\xba", "mpeg"), (0, b"\x00\x00\x01\xb3", "mpeg"), (0, b"FLV", "flv"), (0, b"OggS", "ogg"),
    (0, b"ID3", "mp3"), (0, b"fLaC", "flac"), (4, b"moov", "mov"), (4, b"mdat", "mov"), (4, b"free", "mov"),
    (4, b"wide", "mov"), (0, b"\x47", "mpegts"),
]
VIDEO_KINDS = {"mp4", "mov", "mkv", "webm", "avi", "mpeg", "flv", "ogg", "mpegts"}
IMAGE_KINDS = {"jpeg", "png", "gif", "webp", "bmp", "tiff"}


def sniff(data: bytes | str | os.PathLike) -> str:
    """What the first bytes say a file is: a video/image kind, 'html', 'text', 'audio' or 'unknown'."""
    if not isinstance(data, bytes):
        with open(data, "rb") as fh:
            data = fh.read(512)
    head = data[:512]
    for off, magic, kind in _MAGIC:
        if head[off:off + len(magic)] == magic:
            if kind == "riff":
                return {b"AVI ": "avi", b"WEBP": "webp", b"WAVE": "audio"}.get(head[8:12], "unknown")
            if kind == "mkv":
                return "webm" if b"webm" in head[:64] else "mkv"
            if kind == "mpegts" and not (len(head) > 188 and head[188:189] == b"\x47"):
                continue
            return "audio" if kind in ("mp3", "flac") else kind
    if head[:4] in (b"II*\x00", b"MM\x00*"):
        return "tiff"
    text = head.lstrip().lower()
    if text.startswith((b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<svg")) or b"<html" in text:
        return "html"
    try:
        head.decode("utf-8")
        return "text" if head else "unknown"
    except UnicodeDecodeError:
        return "unknown"


def _check_file(path: str | os.PathLike) -> str:
    """Raise for missing, empty and non-media files; return the sniffed kind."""
    p = Path(path)
    if not p.is_file():
        raise MediaError("missing", "no such file", path)
    if p.stat().st_size == 0:
        raise MediaError("empty", "zero bytes", path)
    kind = sniff(p)
    if kind in ("html", "text"):
        raise MediaError("not_media", f"the file is {kind}, not media", path)
    return kind


@dataclass(frozen=True)
class Probe:
    media: str             # video or image
    width: int
    height: int
    fps: float | None
    frames: int            # decodable frames (video packets counted, not the header's claim)
    duration_s: float | None
    codec: str
    bytes: int
    has_audio: bool = False
    container: str = ""

    def as_row(self) -> dict:
        """The manifest columns a probe fills."""
        d = asdict(self)
        return {k: d[k] for k in ("media", "width", "height", "fps", "frames", "duration_s", "codec", "bytes")}


def probe(path: str | os.PathLike) -> Probe:
    """Probe a video or image without ffprobe: size, fps, decodable frame count, duration, codec."""
    kind = _check_file(path)
    size = Path(path).stat().st_size
    if kind in IMAGE_KINDS:
        img = read_image(path)
        return Probe("image", img.shape[1], img.shape[0], None, 1, None, kind, size, container=kind)
    import av

    with _open_video(path) as (container, stream):
        fps = float(stream.average_rate or stream.guessed_rate or 0) or None
        frames = 0
        try:
            for packet in container.demux(stream):
                if packet.size:
                    frames += 1
        except av.error.FFmpegError as exc:
            if frames == 0:
                raise MediaError("truncated", f"no readable video packets: {exc}", path) from exc
        if frames == 0:
            raise MediaError("undecodable", "the video stream has no frames", path)
        if stream.frames and frames < stream.frames:
            raise MediaError("truncated", f"{frames} of the {stream.frames} frames the header declares are there", path)
        duration = frames / fps if fps else (float(container.duration) / 1e6 if container.duration else None)
        return Probe("video", stream.codec_context.width, stream.codec_context.height, fps, frames, duration,
                     stream.codec_context.name, size, has_audio=bool(container.streams.audio),
                     container=container.format.name.split(",")[0])


class _open_video:
    """Context manager: (container, first video stream) with every opening failure mapped to a MediaError."""

    def __init__(self, path: str | os.PathLike):
        self.path = path

    def __enter__(self):
        import av

        kind = _check_file(self.path)
        try:
            self.container = av.open(str(self.path), metadata_errors="ignore")
        except av.error.FFmpegError as exc:
            raise MediaError(_open_failure_code(self.path, kind), f"cannot open: {exc}", self.path) from exc
        if not self.container.streams.video:
            audio = bool(self.container.streams.audio)
            self.container.close()
            raise MediaError("no_video", "audio only" if audio else "no video stream", self.path)
        stream = self.container.streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > MAX_PIXELS:
            self.container.close()
            raise MediaError("too_big", f"{w}x{h} frames exceed {MAX_PIXELS} pixels", self.path)
        if w == 0 or h == 0:
            self.container.close()
            raise MediaError("undecodable", "the video stream has no frame size", self.path)
        return self.container, stream

    def __exit__(self, *exc) -> None:
        self.container.close()


def _open_failure_code(path, kind: str) -> str:
    """An mp4/mov that starts right but has no index box was cut short: 'truncated'; anything else 'undecodable'."""
    if kind in ("mp4", "mov"):
        with open(path, "rb") as fh:
            if b"moov" not in fh.read():
                return "truncated"
    return "undecodable"


def read_frames(path: str | os.PathLike, indices, size: tuple[int, int] | None = None,
                backend: str | None = None) -> np.ndarray:
    """Frames at `indices` (any order, repeats allowed) as uint8 RGB [len(indices), H, W, 3].

    size=(h, w) resizes at conversion time. The default backend ('pyav') builds an exact packet index, then
    decodes each run of wanted frames from its keyframe in one sequential pass, skipping non-reference frames
    that are not wanted; 'torchcodec' uses torchcodec's VideoDecoder (see bench/sample.py for the comparison).
    """
    indices = [int(i) for i in np.asarray(indices).reshape(-1)]
    if not indices:
        raise ValueError("no frame indices given")
    if min(indices) < 0:
        raise ValueError(f"negative frame index {min(indices)}")
    backend = backend or os.environ.get("CURATE_DECODER", "pyav")
    if backend == "torchcodec":
        return _read_torchcodec(path, indices, size)
    if backend != "pyav":
        raise ValueError(f"backend must be 'pyav' or 'torchcodec', got {backend!r}")
    return _read_pyav(path, indices, size)


def _read_pyav(path, indices: list[int], size) -> np.ndarray:
    import av

    deadline = time.monotonic() + DECODE_TIMEOUT_S
    with _open_video(path) as (container, stream):
        try:
            packets = [(p.pts, p.is_keyframe) for p in container.demux(stream) if p.size]
        except av.error.FFmpegError as exc:
            raise MediaError("truncated", f"demuxing stopped: {exc}", path) from exc
        if not packets:
            raise MediaError("undecodable", "the video stream has no frames", path)
        if any(p is None for p, _ in packets) or len({p for p, _ in packets}) != len(packets):
            return _read_sequential(path, indices, size, deadline)  # no usable timestamps: count frames
        if stream.frames and len(packets) < stream.frames:
            raise MediaError("truncated", f"{len(packets)} of the {stream.frames} declared frames are there", path)
        order = sorted(p for p, _ in packets)
        if max(indices) >= len(order):
            raise MediaError("truncated", f"frame {max(indices)} asked for, the video has {len(order)}", path)
        wanted = {order[i] for i in indices}
        position = {p: j for j, (p, _) in enumerate(packets)}
        keyframes = [j for j, (_, key) in enumerate(packets) if key] or [0]
        got: dict[int, np.ndarray] = {}
        if stream.codec_context.width * stream.codec_context.height >= 500_000:
            stream.thread_type = "AUTO"  # frame threads pay off from ~720p up; below they only add latency
        cc = stream.codec_context
        at, demux = None, None
        try:
            for target in sorted(wanted):
                if target in got:
                    continue
                start = _start_keyframe(keyframes, packets, position[target], target)
                if at is None or start > at:  # the wanted frame's keyframe lies ahead: jump there
                    container.seek(packets[start][0], backward=True, any_frame=False, stream=stream)
                    demux, at = container.demux(stream), start
                for packet in demux:
                    if packet.size:
                        cc.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
                        at += 1
                    for frame in cc.decode(packet if packet.size else None):
                        if frame.pts in wanted and frame.pts not in got:
                            got[frame.pts] = _to_rgb(frame, size)
                    if target in got or time.monotonic() > deadline:
                        break
                if target not in got:
                    raise MediaError("truncated", f"frame {order.index(target)} could not be decoded", path)
        except av.error.FFmpegError as exc:
            raise MediaError("undecodable", f"decoding failed: {exc}", path) from exc
    return np.stack([got[order[i]] for i in indices])


def _start_keyframe(keyframes: list[int], packets: list, pos: int, pts: int) -> int:
    """Decode position of the last keyframe before the wanted packet that is not presented after it."""
    start = keyframes[0]
    for k in keyframes:
        if k > pos:
            break
        if packets[k][0] <= pts:
            start = k
    return start


def _read_sequential(path, indices: list[int], size, deadline: float) -> np.ndarray:
    """Fallback for streams without usable timestamps: decode in order and keep the wanted frame numbers."""
    import av

    wanted, got = set(indices), {}
    with _open_video(path) as (container, stream):
        try:
            for i, frame in enumerate(container.decode(stream)):
                if i in wanted:
                    got[i] = _to_rgb(frame, size)
                if len(got) == len(wanted) or time.monotonic() > deadline:
                    break
        except av.error.FFmpegError as exc:
            if not got:
                raise MediaError("undecodable", f"decoding failed: {exc}", path) from exc
    missing = wanted - set(got)
    if missing:
        raise MediaError("truncated", f"frames {sorted(missing)[:5]} could not be decoded", path)
    return np.stack([got[i] for i in indices])


def _to_rgb(frame, size) -> np.ndarray:
    if size is None:
        return frame.to_ndarray(format="rgb24")
    h, w = size
    return frame.reformat(width=w, height=h, format="rgb24", interpolation="AREA").to_ndarray()


def _read_torchcodec(path, indices: list[int], size) -> np.ndarray:
    _check_file(path)
    try:
        from torchcodec.decoders import VideoDecoder
    except (ImportError, RuntimeError, OSError) as exc:  # torchcodec needs the system FFmpeg libraries
        raise RuntimeError(f"torchcodec is not usable here ({exc}); use backend='pyav'") from exc
    try:
        decoder = VideoDecoder(str(path), seek_mode="exact")
        meta = decoder.metadata
        n = meta.num_frames
        if meta.num_frames_from_header and n < meta.num_frames_from_header:
            raise MediaError("truncated", f"{n} of the {meta.num_frames_from_header} declared frames are there", path)
        if max(indices) >= n:
            raise MediaError("truncated", f"frame {max(indices)} asked for, the video has {n}", path)
        frames = decoder.get_frames_at(indices).data.permute(0, 2, 3, 1).numpy()
    except (RuntimeError, ValueError) as exc:
        probe(path)  # raises the precise code (truncated, no_video, ...) when the file is at fault
        raise MediaError("undecodable", f"torchcodec: {exc}", path) from exc
    if size is not None:
        import cv2

        frames = np.stack([cv2.resize(f, (size[1], size[0]), interpolation=cv2.INTER_AREA) for f in frames])
    return frames


def read_image(path: str | os.PathLike) -> np.ndarray:
    """An image as uint8 RGB [H, W, 3]: EXIF orientation applied, grey/CMYK/alpha/palette converted."""
    from PIL import Image, ImageOps

    _check_file(path)
    try:
        with Image.open(path) as img:
            if img.width * img.height > MAX_PIXELS:
                raise MediaError("too_big", f"{img.width}x{img.height} image exceeds {MAX_PIXELS} pixels", path)
            img = ImageOps.exif_transpose(img)
            if img.mode in ("RGBA", "LA", "P", "PA"):
                img = img.convert("RGBA")
                background = Image.new("RGBA", img.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, img)
            return np.asarray(img.convert("RGB"))
    except Image.DecompressionBombError as exc:
        raise MediaError("too_big", str(exc), path) from exc
    except (OSError, SyntaxError, ValueError) as exc:
        code = "truncated" if "truncated" in str(exc).lower() else "undecodable"
        raise MediaError(code, f"cannot decode image: {exc}", path) from exc


def write_image(path: str | os.PathLike, image: np.ndarray, quality: int = 90) -> Path:
    """Write a uint8 RGB array as JPEG/PNG/WebP (by extension), atomically."""
    from PIL import Image

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}{path.suffix}")
    Image.fromarray(np.asarray(image, dtype=np.uint8)).save(tmp, quality=quality)
    os.replace(tmp, path)
    return path


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
    """Cut [start_s, end_s) of src into dst (mp4). exact: re-encode (frame-accurate); else stream copy (keyframes)."""
    import ffmpeg

    _check_file(src)
    if not 0 <= start_s < end_s:
        raise MediaError("trim_failed", f"bad segment [{start_s}, {end_s})", src)
    dst = Path(dst)
    dst.parent.mkdir(parents=True, exist_ok=True)
    tmp = dst.with_name(f".{dst.name}.tmp-{os.getpid()}.mp4")
    inp = ffmpeg.input(str(src), ss=f"{start_s:.6f}")
    if exact:
        out = ffmpeg.output(inp, str(tmp), t=f"{end_s - start_s:.6f}", vcodec="libx264", crf=crf,
                            preset="veryfast", pix_fmt="yuv420p", acodec="aac", movflags="+faststart",
                            avoid_negative_ts="make_zero", f="mp4")
    else:
        out = ffmpeg.output(inp, str(tmp), t=f"{end_s - start_s:.6f}", c="copy", movflags="+faststart",
                            avoid_negative_ts="make_zero", f="mp4")
    try:
        out.overwrite_output().global_args("-nostdin", "-loglevel", "error").run(
            cmd=ffmpeg_exe(), capture_stdout=True, capture_stderr=True)
    except ffmpeg.Error as exc:
        tmp.unlink(missing_ok=True)
        tail = (exc.stderr or b"").decode(errors="replace").strip().splitlines()[-3:]
        raise MediaError("trim_failed", " | ".join(tail) or "ffmpeg failed", src) from exc
    if not tmp.exists() or tmp.stat().st_size == 0:
        tmp.unlink(missing_ok=True)
        raise MediaError("trim_failed", f"nothing in [{start_s}, {end_s})", src)
    os.replace(tmp, dst)
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
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}.mp4")
    try:
        with av.open(str(tmp), mode="w") as out:
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
        os.replace(tmp, path)
    except Exception as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, MediaError):
            raise
        raise MediaError("encode_failed", str(exc), path) from exc
    return path
