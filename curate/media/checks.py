"""What a file is (magic bytes), whether it may be decoded at all, and the one error type media raises."""
from __future__ import annotations

import os
import time
from pathlib import Path


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
    "timeout",      # decoding took longer than DECODE_TIMEOUT_S
    "encode_failed",
    "trim_failed",
)

MAX_PIXELS = 8192 * 8192            # larger frames or images are refused as too_big
MAX_OUTPUT_BYTES = 4 << 30          # read_frames refuses to build a bigger array (too_big)
DECODE_TIMEOUT_S = 120.0            # no probe or read may take longer than this (timeout)
IO_TIMEOUT_S = 30.0                 # no single open/read call inside FFmpeg may take longer than this

_MAGIC = [  # (offset, bytes, kind); checked in order
    (0, b"\x1a\x45\xdf\xa3", "ebml"), (0, b"RIFF", "riff"), (0, b"\xff\xd8\xff", "jpeg"),
    (0, b"\x89PNG\r\n\x1a\n", "png"), (0, b"GIF87a", "gif"), (0, b"GIF89a", "gif"),
    (0, b"II*\x00", "tiff"), (0, b"MM\x00*", "tiff"),
    (0, b"\x00\x00\x01\xba", "mpeg"), (0, b"\x00\x00\x01\xb3", "mpeg"),
    (0, b"FLV", "flv"), (0, b"OggS", "ogg"), (0, b"YUV4MPEG2", "y4m"), (0, b"ID3", "audio"), (0, b"fLaC", "audio"),
    (0, b"#!AMR", "audio"),
]
_MP4_BOXES = {b"ftyp", b"moov", b"mdat", b"free", b"wide", b"skip", b"pnot", b"styp", b"sidx", b"moof"}
_AUDIO_BRANDS = {b"M4A ", b"M4B ", b"M4P ", b"F4A "}
_IMAGE_BRANDS = {b"avif": "avif", b"avis": "avif", b"heic": "heic", b"heix": "heic", b"mif1": "heic"}
VIDEO_KINDS = frozenset({"mp4", "mov", "mkv", "webm", "avi", "mpeg", "mpegts", "flv", "ogg", "y4m"})
IMAGE_KINDS = frozenset({"jpeg", "png", "gif", "webp", "bmp", "tiff", "avif", "heic"})
NOT_MEDIA_KINDS = frozenset({"html", "text"})
_HTML_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<svg", b"<!--")


def sniff(data: bytes | str | os.PathLike) -> str:
    """What the first bytes say a file is.

    One of VIDEO_KINDS or IMAGE_KINDS, 'audio', 'html' or 'text' (NOT_MEDIA_KINDS: a crawler can reject these
    before decoding), 'empty', or 'unknown' (let the decoder try: raw streams have no magic bytes).
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        with open(data, "rb") as fh:
            data = fh.read(1024)
    head = bytes(data[:1024])
    if not head:
        return "empty"
    if head[4:8] in _MP4_BOXES:
        brand = head[8:12] if head[4:8] == b"ftyp" else b""
        if brand in _AUDIO_BRANDS:
            return "audio"
        return _IMAGE_BRANDS.get(brand, "mov" if brand == b"qt  " or head[4:8] != b"ftyp" else "mp4")
    for off, magic, kind in _MAGIC:
        if head[off:off + len(magic)] == magic:
            if kind == "riff":
                return {b"AVI ": "avi", b"WEBP": "webp", b"WAVE": "audio"}.get(head[8:12], "unknown")
            if kind == "ebml":
                return "webm" if b"webm" in head[:64] else "mkv"
            return kind
    if head[0] == 0x47 and len(head) > 188 and head[188] == 0x47:
        return "mpegts"
    if head[:2] == b"BM" and head[6:10] == b"\0\0\0\0":  # BMP: magic, file size, four reserved zero bytes
        return "bmp"
    if head[:2] in (b"\xff\xfb", b"\xff\xf3", b"\xff\xf2", b"\xff\xf1", b"\xff\xf9"):
        return "audio"  # MP3 / ADTS AAC frame sync
    text = head.lstrip().lower()
    if text.startswith(_HTML_STARTS) or b"<html" in text or b"<body" in text:
        return "html"
    try:
        head.decode("utf-8")
    except UnicodeDecodeError as exc:
        if exc.start < len(head) - 4:  # a multi-byte character cut at the 1024-byte boundary is still text
            return "unknown"
    return "text" if b"\x00" not in head else "unknown"


def check_file(path: str | os.PathLike) -> tuple[str, int]:
    """(sniffed kind, size in bytes) of a file worth decoding; raise missing, empty or not_media otherwise."""
    p = Path(path)
    if not p.is_file():
        raise MediaError("missing", "no such file", path)
    size = p.stat().st_size
    if size == 0:
        raise MediaError("empty", "zero bytes", path)
    kind = sniff(p)
    if kind in NOT_MEDIA_KINDS:
        raise MediaError("not_media", f"the file is {kind}, not media", path)
    return kind, size


class Deadline:
    """A wall-clock budget for one probe or read; `check()` raises MediaError('timeout') once it is spent."""

    def __init__(self, path, seconds: float | None = None):
        self.path, self.seconds = path, DECODE_TIMEOUT_S if seconds is None else seconds
        self.end = time.monotonic() + self.seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise MediaError("timeout", f"gave up after {self.seconds:.0f} s", self.path)


class open_video:
    """Context manager: (PyAV container, its first video stream), every opening failure mapped to a MediaError."""

    def __init__(self, path: str | os.PathLike, kind: str):
        self.path, self.kind = path, kind

    def __enter__(self):
        import av

        try:
            self.container = av.open(str(self.path), metadata_errors="ignore", timeout=IO_TIMEOUT_S)
        except av.error.ExitError as exc:
            raise MediaError("timeout", f"opening took over {IO_TIMEOUT_S:.0f} s", self.path) from exc
        except (av.error.FFmpegError, UnicodeDecodeError) as exc:
            raise MediaError(self._open_failure_code(), f"cannot open: {exc}", self.path) from exc
        try:
            return self.container, self._video_stream()
        except BaseException:
            self.container.close()
            raise

    def _video_stream(self):
        streams = self.container.streams
        if not streams.video:
            known = self.kind != "unknown" or bool(streams.audio)
            raise MediaError("no_video" if known else "undecodable",
                             "audio only" if streams.audio else "no video stream", self.path)
        stream = streams.video[0]
        w, h = stream.codec_context.width, stream.codec_context.height
        if w * h > MAX_PIXELS:
            raise MediaError("too_big", f"{w}x{h} frames exceed {MAX_PIXELS} pixels", self.path)
        if w <= 0 or h <= 0:
            raise MediaError("undecodable", "the video stream has no frame size", self.path)
        return stream

    def _open_failure_code(self) -> str:
        """An mp4/mov that starts right but whose index box never comes was cut short: truncated."""
        if self.kind in ("mp4", "mov"):
            with open(self.path, "rb") as fh:
                tail = b""
                while chunk := fh.read(1 << 20):
                    if b"moov" in tail + chunk:
                        return "undecodable"
                    tail = chunk[-3:]
            return "truncated"
        return "undecodable"

    def __exit__(self, *exc) -> None:
        self.container.close()
