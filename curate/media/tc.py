"""The torchcodec backend of read_frames: its VideoDecoder with exact seeking, errors mapped to MediaError codes.

torchcodec needs the system's FFmpeg libraries; where it does not load, read_frames(backend='torchcodec') says so
and the PyAV backend (the default) still works. Good files torchcodec cannot read (MPEG-TS and raw H.264 with
torchcodec 0.17) are read through PyAV. The PyAV backend is the default because it is faster (bench/sample.py) and
right where torchcodec 0.17 is not: it numbers the frames of AVI files with B-frames one off (tests/test_media.py).
"""
from __future__ import annotations

import numpy as np

from curate.media.checks import MediaError


def torchcodec_decoder():
    """torchcodec's VideoDecoder class, or RuntimeError saying why it cannot be used here."""
    try:
        from torchcodec.decoders import VideoDecoder
    except (ImportError, RuntimeError, OSError) as exc:  # no matching libavcodec on this machine
        raise RuntimeError(f"torchcodec is not usable here ({exc}); use backend='pyav'") from exc
    return VideoDecoder


def read_torchcodec(path, kind: str, indices: list[int], size) -> np.ndarray:
    """Frames at indices through torchcodec (uint8 RGB, N H W 3, rotation applied as torchcodec does)."""
    from curate.media.checks import Deadline
    from curate.media.frames import check_output, output_size, read_pyav
    from curate.media.video import probe

    VideoDecoder = torchcodec_decoder()
    try:
        decoder = VideoDecoder(str(path), seek_mode="exact", dimension_order="NHWC")
        meta = decoder.metadata
        n, declared = meta.num_frames, meta.num_frames_from_header
        if kind in ("mp4", "mov") and declared and n < declared:
            raise MediaError("truncated", f"{n} of the {declared} frames the index lists are in the file", path)
        if max(indices) >= n:
            raise MediaError("truncated", f"frame {max(indices)} asked for, the video has {n}", path)
        h, w = output_size(meta.height, meta.width, size)
        check_output(path, len(indices), h, w)
        frames = decoder.get_frames_at(indices).data.numpy()
    except (RuntimeError, ValueError, IndexError):
        probe(path)  # raises the precise code (truncated, no_video, too_big, ...) when the file is at fault
        return read_pyav(path, kind, indices, size, Deadline(path))
    if frames.shape[1:3] != (h, w):
        import cv2

        frames = np.stack([cv2.resize(f, (w, h), interpolation=cv2.INTER_AREA) for f in frames])
    return frames
