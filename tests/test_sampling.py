"""SampleFrames against hand-worked index lists (MMAction2 1.x semantics) and the dense sampler."""
import numpy as np
import pytest

from curate.core.sampling import SampleFrames, dense_windows, window_indices


def idx(sampler, total, **kw):
    return sampler(total, **kw).tolist()


# ------------------------------------------------------------------ test mode (deterministic)

def test_2d_test_mode_takes_segment_centres():
    # 100 frames, 8 segments of 12.5 frames: centres 6.25, 18.75, ... truncated
    assert idx(SampleFrames(1, num_clips=8, test_mode=True), 100) == [6, 18, 31, 43, 56, 68, 81, 93]


def test_2d_twice_sample_adds_segment_starts():
    got = idx(SampleFrames(1, num_clips=8, test_mode=True, twice_sample=True), 100)
    assert got == [6, 18, 31, 43, 56, 68, 81, 93] + [0, 12, 25, 37, 50, 62, 75, 87]


def test_3d_single_clip_is_centred():
    # span = 7 * 8 + 1 = 57, max offset 243, centred start 121
    assert idx(SampleFrames(8, frame_interval=8, test_mode=True), 300) == list(range(121, 178, 8))


def test_3d_multi_clip_spreads_evenly_with_bankers_rounding():
    # span 7, max offset 33, step 16.5 -> offsets round(0, 16.5, 33) = 0, 16, 33
    got = idx(SampleFrames(4, frame_interval=2, num_clips=3, test_mode=True), 40)
    assert got == [0, 2, 4, 6, 16, 18, 20, 22, 33, 35, 37, 39]


def test_short_video_loops_or_repeats_last():
    loop = SampleFrames(8, frame_interval=2, test_mode=True)
    last = SampleFrames(8, frame_interval=2, test_mode=True, out_of_bound_opt="repeat_last")
    assert idx(loop, 10) == [0, 2, 4, 6, 8, 0, 2, 4]
    assert idx(last, 10) == [0, 2, 4, 6, 8, 8, 8, 8]


def test_target_fps_rescales_the_span():
    # 60 fps video, target 30: span = 4 * 2 * 2 = 16 frames, centred at 42, steps linspace(0, 15, 4) -> 0, 5, 10, 15
    s = SampleFrames(4, frame_interval=2, test_mode=True, target_fps=30)
    assert idx(s, 100, fps=60) == [42, 47, 52, 57]


def test_start_index_is_added():
    assert idx(SampleFrames(1, num_clips=2, test_mode=True), 10, start_index=1) == [3, 8]


# ------------------------------------------------------------------ train mode (seeded)

def test_train_segments_draw_one_offset_each():
    s = SampleFrames(1, num_clips=4)
    draws = np.random.default_rng(7).integers(25, size=4)  # what the sampler draws from the same seed
    assert idx(s, 100, rng=7) == (np.arange(4) * 25 + draws).tolist()
    for seed in range(20):
        got = idx(s, 100, rng=seed)
        assert all(25 * i <= g < 25 * (i + 1) for i, g in enumerate(got))


def test_train_is_reproducible_and_seed_dependent():
    s = SampleFrames(8, frame_interval=2, num_clips=2)
    assert idx(s, 200, rng=3) == idx(s, 200, rng=3)
    assert len({tuple(idx(s, 200, rng=r)) for r in range(10)}) > 1


def test_train_fewer_frames_than_segments_spreads_by_rounding():
    # 5 frames, 8 segments: avg interval 0 -> around(arange(8) * 0.625) = 0 1 1 2 2 3 4 4
    assert idx(SampleFrames(1, num_clips=8), 5, rng=0) == [0, 1, 1, 2, 2, 3, 4, 4]


def test_train_sorted_random_starts_when_segments_too_short():
    # span 16, 20 frames, 8 clips: avg interval (20 - 16 + 1) // 8 = 0 but 20 > max(8, 16): sorted draws in [0, 5)
    s = SampleFrames(4, frame_interval=4, num_clips=8)
    got = np.asarray(s(20, rng=1)).reshape(8, 4)
    starts = got[:, 0]
    assert (np.diff(starts) >= 0).all() and starts.min() >= 0 and starts.max() < 5
    assert (got - starts[:, None] == [0, 4, 8, 12]).all()


def test_train_video_shorter_than_clip_starts_at_zero():
    s = SampleFrames(4, frame_interval=4)
    assert idx(s, 10, rng=0) == [0, 4, 8, 2]
    assert idx(SampleFrames(4, frame_interval=4, out_of_bound_opt="repeat_last"), 10, rng=0) == [0, 4, 8, 8]


def test_keep_tail_frames_uses_fractional_segments():
    s = SampleFrames(1, num_clips=4, keep_tail_frames=True)
    u = np.random.default_rng(5).uniform(0, 25.0, 4)
    assert idx(s, 100, rng=5) == (np.arange(4) * 25.0 + u).astype(np.int32).tolist()


def test_temporal_jitter_stays_inside_the_interval():
    s = SampleFrames(8, frame_interval=4, test_mode=True, temporal_jitter=True)
    base = np.asarray(SampleFrames(8, frame_interval=4, test_mode=True)(200))
    for seed in range(5):
        d = np.asarray(s(200, rng=seed)) - base
        assert d.min() >= 0 and d.max() < 4


def test_bad_arguments_are_rejected():
    with pytest.raises(ValueError, match="out_of_bound_opt"):
        SampleFrames(8, out_of_bound_opt="wrap")
    with pytest.raises(ValueError, match="clip_len"):
        SampleFrames(0)
    with pytest.raises(ValueError, match="twice_sample"):
        SampleFrames(8, test_mode=True, twice_sample=True)
    with pytest.raises(ValueError, match="0 frames"):
        SampleFrames(8)(0)


# ------------------------------------------------------------------ untrimmed video

def test_dense_windows_cover_every_frame():
    wins = dense_windows(100, fps=10, window_s=3, stride_s=2)
    assert wins[:3] == [(0, 30), (20, 50), (40, 70)]
    assert wins[-1] == (70, 100)
    covered = np.zeros(100, bool)
    for a, b in wins:
        covered[a:b] = True
    assert covered.all()
    assert dense_windows(12, fps=10, window_s=3) == [(0, 12)]


def test_window_indices_spread_over_the_window():
    assert window_indices(10, 20, 4).tolist() == [10, 13, 16, 19]
    with pytest.raises(ValueError):
        window_indices(5, 5, 4)
