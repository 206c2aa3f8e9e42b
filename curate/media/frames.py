"""Frames at given indices from a video through PyAV, decoding as little as the file allows.

1. Index: one demux pass (no decoding) lists every packet's timestamps and keyframe flag, so frame i is the i-th
   in presentation order whatever the header claims, and every frame's nearest usable keyframe is known.
2. Plan: the wanted frames, in order, fall into runs. A run starts with a seek to a keyframe; the next wanted frame
   joins the run unless its keyframe lies more than SEEK_COST packets past the decoder's position (a seek would
   skip too little to pay), so on long-GOP files a whole clip is one sequential pass, and on short-GOP files each
   seek skips the GOPs nobody wants. (With threads to spare, every seek that skips anything starts a run.)
3. Decode: runs are independent, so they are shared between threads with a container each (frame threads instead
   when there is one run of large frames; one thread inside a DataLoader worker). Frames no other frame refers to
   are skipped unless wanted, and only wanted frames are converted to RGB (one scaler context per thread).
bench/sample.py measures this against torchcodec and decode-everything.
"""
from __future__ import annotations

import itertools
import os
import sys
from bisect import bisect_right
from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext
from dataclasses import dataclass

import numpy as np

from curate.media.checks import MAX_OUTPUT_BYTES, Deadline, MediaError, open_video

FRAME_THREADS_MIN_PIXELS = 500_000  # frame threads pay off from about 720p up (bench/sample.py); below they cost
KEYFRAME_COST = 10                  # an intra frame decodes about as slowly as ten others (measured at 320p)
SEEK_COST = 5                       # a seek costs about as much as decoding five packets (measured, GOP 30)
MOV = "mov"                         # FFmpeg's name for the mp4/mov demuxer starts with this


@dataclass
class Index:
    """Every video packet in decode order, and which of them are shown, in presentation order."""
    pts: list           # presentation timestamp per packet (None when the container has none)
    dts: list           # decode timestamp per packet (None when unknown)
    key: list           # keyframe flags
    shown: list         # decode positions of the frames a decoder outputs, sorted by pts
    timed: bool         # timestamps present and distinct: positions can be found by pts
    first: object       # the first decoded frame, when asked for

    @property
    def frames(self) -> int:
        return len(self.shown)


def index_packets(container, stream, path, deadline: Deadline, decode_first: bool = False) -> Index:
    """Demux every video packet once (decoding only up to the first frame, if asked).

    Raises truncated when the file ends before the index it carries does, or demuxing breaks off.
    """
    import av

    pts, dts, key, discard, first = [], [], [], [], None
    try:
        for packet in container.demux(stream):
            if decode_first and first is None:
                first = next(iter(stream.codec_context.decode(packet if packet.size else None)), None)
            if not packet.size:
                continue
            pts.append(packet.pts)
            dts.append(packet.dts)
            key.append(packet.is_keyframe)
            discard.append(packet.is_discard)
            if len(pts) % 256 == 0:
                deadline.check()
    except av.error.ExitError as exc:
        raise MediaError("timeout", "demuxing stalled", path) from exc
    except av.error.FFmpegError as exc:
        if not pts or (decode_first and first is None):
            raise MediaError("undecodable", f"no frame decodes: {exc}", path) from exc
        raise MediaError("truncated", f"demuxing stopped after {len(pts)} packets: {exc}", path) from exc
    if not pts or (decode_first and first is None):
        raise MediaError("undecodable", "the video stream has no frames that decode", path)
    listed = sum(not e.is_discard for e in stream.index_entries) if container.format.name.startswith(MOV) else 0
    kept = [i for i in range(len(pts)) if not discard[i]]
    if listed > len(kept):  # an mp4's sample table is its index: samples missing from the file mean it was cut
        raise MediaError("truncated", f"{len(kept)} of the {listed} frames the index lists are in the file", path)
    timed = None not in pts and len(set(pts)) == len(pts)
    shown = sorted(kept, key=lambda i: pts[i]) if timed else kept
    return Index(pts, dts, key, shown, timed, first)


def output_size(height: int, width: int, size: tuple[int, int] | int | None) -> tuple[int, int]:
    """(h, w) of frames read from a (height, width) video with read_frames' `size` argument."""
    if size is None:
        return height, width
    if isinstance(size, (int, np.integer)):
        scale = int(size) / min(height, width)
        return max(1, round(height * scale)), max(1, round(width * scale))
    return int(size[0]), int(size[1])


def check_output(path, n: int, h: int, w: int) -> None:
    """Refuse (too_big) to build an output array over MAX_OUTPUT_BYTES."""
    if n * h * w * 3 > MAX_OUTPUT_BYTES:
        raise MediaError("too_big", f"{n} frames of {w}x{h} exceed {MAX_OUTPUT_BYTES >> 20} MiB", path)


def decode_threads(threads: int | None) -> int:
    """Threads one read may use: `threads`, else every CPU this process may run on, but 1 in a DataLoader worker."""
    if threads is not None:
        return max(1, int(threads))
    data = sys.modules.get("torch.utils.data")
    if data is not None and data.get_worker_info() is not None:
        return 1
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def read_pyav(path, kind: str, indices: list[int], size, deadline: Deadline, threads: int | None = None) -> np.ndarray:
    """Frames at indices (any order, repeats) as uint8 RGB [N, H, W, 3], as displayed."""
    with open_video(path, kind) as (container, stream):
        index = index_packets(container, stream, path, deadline)
        if max(indices) >= index.frames:
            raise MediaError("truncated", f"frame {max(indices)} asked for, the video has {index.frames}", path)
        cc = stream.codec_context
        check_output(path, len(indices), *output_size(cc.height, cc.width, size))
        if index.timed:
            try:
                got = _decode_runs(container, stream, kind, index, path, indices, size, deadline, threads)
                return _assemble(indices, lambda i: got[index.pts[index.shown[i]]])
            except _SeekMissed:
                pass
    with open_video(path, kind) as (container, stream):
        return _read_in_order(container, stream, path, indices, size, deadline)


def plan_runs(index: Index, indices, seek_cost: int = SEEK_COST) -> list[tuple[int, list[int]]]:
    """(keyframe to seek to, wanted frames decoded straight on from it) for the distinct wanted frames in order.

    A new run starts where a seek skips more than `seek_cost` packets.
    """
    keys = [i for i, k in enumerate(index.key) if k] or [0]
    runs: list[tuple[int, list[int]]] = []
    end = -1  # decode position just past the last wanted packet of the current run
    for i in sorted(set(indices)):
        pos = index.shown[i]
        start = _start_keyframe(keys, index, pos)
        if not runs or start - end > seek_cost:
            runs.append((start, []))
        runs[-1][1].append(i)
        end = max(end, pos + 1)
    return runs


def _start_keyframe(keys: list[int], index: Index, pos: int) -> int:
    """The last keyframe decoded before packet `pos` that is not shown after it (open-GOP leading frames need the
    keyframe before their own)."""
    j = bisect_right(keys, pos) - 1
    while j > 0 and index.pts[keys[j]] > index.pts[pos]:
        j -= 1
    return keys[max(j, 0)]


def _share(runs: list, index: Index, workers: int) -> list[list]:
    """Runs dealt to `workers` groups of about equal decoding work (largest first, to the least loaded)."""
    def cost(run) -> int:
        return max(index.shown[i] for i in run[1]) - run[0] + KEYFRAME_COST

    groups, load = [[] for _ in range(workers)], [0] * workers
    for run in sorted(runs, key=cost, reverse=True):
        g = load.index(min(load))
        groups[g].append(run)
        load[g] += cost(run)
    return [sorted(g) for g in groups if g]


class _SeekMissed(Exception):
    """The demuxer did not land on the keyframe the index names: read in order instead."""


def _decode_runs(container, stream, kind, index: Index, path, indices, size, deadline, threads) -> dict:
    workers = decode_threads(threads)
    runs = plan_runs(index, indices, SEEK_COST if workers == 1 else 0)  # with spare threads, short runs split well
    groups = _share(runs, index, min(len(runs), workers))
    cc = stream.codec_context
    if len(groups) == 1 and workers > 1 and cc.width * cc.height >= FRAME_THREADS_MIN_PIXELS:
        stream.thread_type = "FRAME"
    job = dict(index=index, position={p: i for i, p in enumerate(index.pts)},
               wanted={index.pts[index.shown[i]] for i in indices}, got={}, size=size, deadline=deadline, path=path)

    def other(group):
        with open_video(path, kind) as (c, s):
            _decode_group(c, s, group, **job)

    with ThreadPoolExecutor(len(groups) - 1) if len(groups) > 1 else nullcontext() as pool:
        futures = [pool.submit(other, g) for g in groups[1:]]
        _decode_group(container, stream, groups[0], **job)
        for f in futures:
            f.result()
    return job["got"]


def _decode_group(container, stream, runs, index, position, wanted, got, size, deadline, path) -> None:
    import av

    cc, to_rgb = stream.codec_context, ToRGB(size)
    try:
        for start, frames in runs:
            need = {index.pts[index.shown[i]] for i in frames} - got.keys()
            if not need:
                continue
            for packet in _seek(container, stream, index, position, start):
                if packet.size:
                    cc.skip_frame = "DEFAULT" if packet.pts in wanted else "NONREF"
                for frame in cc.decode(packet if packet.size else None):
                    if frame.pts in wanted and frame.pts not in got:
                        got[frame.pts] = to_rgb(frame)
                    need.discard(frame.pts)
                if not need:
                    break
                deadline.check()
            if need:
                raise MediaError("truncated", f"{len(need)} wanted frames did not decode", path)
    except av.error.FFmpegError as exc:
        raise MediaError("undecodable", f"decoding failed: {exc}", path) from exc


def _seek(container, stream, index: Index, position: dict, start: int):
    """Demux from keyframe `start` (or one before it): the packets, the first one included."""
    for ts in (index.pts[start], index.dts[start]):  # most demuxers seek by pts; fall back to the earlier dts
        if ts is None:
            continue
        container.seek(ts, backward=True, any_frame=False, stream=stream)
        demux = container.demux(stream)
        first = next((p for p in demux if p.size), None)
        if first is not None and position.get(first.pts, start + 1) <= start:
            return itertools.chain([first], demux)
    raise _SeekMissed


class ToRGB:
    """Decoded frames to displayed RGB arrays (rotation applied) of one output size, with one scaler context."""

    def __init__(self, size):
        from av.video.reformatter import VideoReformatter

        self.size, self.reformatter = size, VideoReformatter()

    def __call__(self, frame) -> np.ndarray:
        turn = int(frame.rotation) % 360 // 90
        h, w = (frame.width, frame.height) if turn % 2 else (frame.height, frame.width)
        out_h, out_w = output_size(h, w, self.size)
        if turn % 2:
            out_h, out_w = out_w, out_h
        scaled = (out_h, out_w) != (frame.height, frame.width)
        rgb = self.reformatter.reformat(frame, width=out_w, height=out_h, format="rgb24",
                                        interpolation="AREA" if scaled else None, threads=1).to_ndarray()
        return np.rot90(rgb, turn) if turn else rgb


def _read_in_order(container, stream, path, indices: list[int], size, deadline: Deadline) -> np.ndarray:
    """For streams without usable timestamps: decode from the start, counting frames as they come out."""
    import av

    wanted, got, to_rgb = set(indices), {}, ToRGB(size)
    try:
        for i, frame in enumerate(container.decode(stream)):
            if i in wanted:
                got[i] = to_rgb(frame)
                if len(got) == len(wanted):
                    break
            deadline.check()
    except av.error.FFmpegError as exc:
        if not got:
            raise MediaError("undecodable", f"decoding failed: {exc}", path) from exc
    if len(got) < len(wanted):
        raise MediaError("truncated", f"frames {sorted(wanted - set(got))[:5]} did not decode", path)
    return _assemble(indices, got.__getitem__)


def _assemble(indices: list[int], frame_at) -> np.ndarray:
    first = frame_at(indices[0])
    out = np.empty((len(indices),) + first.shape, np.uint8)
    for j, i in enumerate(indices):
        out[j] = frame_at(i)
    return out
