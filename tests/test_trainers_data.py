"""Datasets over manifests, the frame pipeline, pseudo-videos and mixed-source batches: real files, real decoding."""
import numpy as np
import pandas as pd
import pytest
import torch

from curate import media
from curate.core import manifest as mf
from curate.core.manifest import usable_rows
from curate.media.pseudo import camera_path, moving_clip, static_clip
from trainers.config import ConfigError
from trainers.data import CACHE, ClipDataset, LabelSpace, collate_groups, make_loader
from trainers.inputs import build_pipelines, default_data, parse_views, pipeline_config, resolve_data
from trainers.sources import MixedBatchSampler, SequentialBatchSampler, Stream, balanced_draw, parse_source
from trainers.transforms import STEPS, build_pipeline

RAW = [{"type": "SampleFrames", "clip_len": 16, "frame_interval": 1, "num_clips": 1, "test_mode": True},
       {"type": "CenterCrop", "size": 16}, {"type": "FormatShape", "input_format": "NCTHW"}]


@pytest.fixture(scope="module")
def counter(tmp_path_factory):
    """A 40-frame 10 fps video whose frame i is solid grey 5*i, a 16-frame one, and an image."""
    root = tmp_path_factory.mktemp("media")
    frames = np.stack([np.full((32, 48, 3), 5 * i, np.uint8) for i in range(40)])
    media.write_video(root / "long.mp4", frames, fps=10, crf=0)
    media.write_video(root / "clip.mp4", frames[:16], fps=8, crf=0)
    image = np.zeros((32, 48, 3), np.uint8)
    image[:, :, 0] = np.arange(48)[None] * 5
    image[:, :, 1] = np.arange(32)[:, None] * 7
    media.write_image(root / "img.png", image)
    return root


def frame_numbers(x):
    """Frame numbers of an NCTHW input of the counter video (grey level / 5)."""
    return np.round(np.asarray(x)[0, 0, :, 0, 0] / 5).astype(int).tolist()


def rows(**over):
    base = dict(item_id="a", path="long.mp4", media="video", status="ok", label_id=0, label="zero", split="train",
                fps=10.0, frames=40, duration_s=4.0)
    return mf.from_records([{**base, **over}])


def test_a_window_row_is_read_inside_its_segment_and_a_trimmed_clip_whole(counter):
    pipe = {None: build_pipeline(RAW)}
    window = ClipDataset(rows(start_s=1.0, end_s=2.6), counter, pipe)
    assert frame_numbers(window.load(0, 0)) == list(range(10, 26))
    # the synth world's convention: path is the trimmed clip, start/end its place in the source video
    trimmed = ClipDataset(rows(path="clip.mp4", fps=8.0, frames=16, duration_s=2.0, start_s=2.25, end_s=4.25),
                          counter, pipe)
    assert frame_numbers(trimmed.load(0, 0)) == list(range(16))
    unprobed = ClipDataset(rows(fps=None, frames=None, duration_s=None), counter, pipe)  # probed on demand
    assert frame_numbers(unprobed.load(0, 0)) == list(range(12, 28))


def test_training_samples_depend_only_on_their_key_and_the_cache_changes_nothing(counter):
    train = [{"type": "SampleFrames", "clip_len": 4, "frame_interval": 2, "num_clips": 2},
             {"type": "Resize", "scale": 24}, {"type": "RandomResizedCrop", "size": 16}, {"type": "Flip"}, {"type": "Normalize"},
             {"type": "FormatShape", "input_format": "NCTHW"}]
    plain = ClipDataset(rows(), counter, {None: build_pipeline(train)})
    cached = ClipDataset(rows(), counter, {None: build_pipeline(train)}, cache_bytes=1 << 24)
    a, b = plain.load(0, (0, 1, 2)), cached.load(0, (0, 1, 2))
    assert a.shape == (2, 3, 4, 16, 16)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, cached.load(0, (0, 1, 2)))     # second read served from the cache
    segs = [v for k, v in CACHE._items.items() if k[1].endswith("long.mp4")]
    assert segs and all(v.shape[1] == 24 for v in segs)             # cached once, already resized
    assert not np.array_equal(a, plain.load(0, (0, 1, 3)))          # another key, another sample
    image_row = rows(path="img.png", media="image", fps=None, frames=1, duration_s=None)
    for pseudo in ("static", "frame", "moving"):
        plain, cached = (ClipDataset(image_row, counter, {None: build_pipeline(train)}, pseudo=pseudo, cache_bytes=c)
                         for c in (0, 1 << 24))
        np.testing.assert_array_equal(plain.load(0, 5), cached.load(0, 5))


def test_images_become_one_frame_segments_static_or_moving_clips(counter):
    image_row = rows(path="img.png", media="image", fps=None, frames=1, duration_s=None)
    data = resolve_data({"model": {"type": "Recognizer3D", "backbone": {"type": "X"}},
                         "data": {"size": 32, "scale": 32, "clip_len": 4, "frame_interval": 2}})
    pipes = build_pipelines(data, train=False)
    static = ClipDataset(image_row, counter, pipes, pseudo="static").load(0, 0)
    assert static.shape == (1, 3, 4, 32, 32) and np.all(static == static[:, :, :1])
    moving = ClipDataset(image_row, counter, pipes, pseudo="moving").load(0, 0)
    assert moving.shape == static.shape and not np.allclose(moving[:, :, 1:], moving[:, :, :1])
    np.testing.assert_array_equal(moving, ClipDataset(image_row, counter, pipes, pseudo="moving").load(0, 0))
    tsn = build_pipelines(default_data({"type": "Recognizer2D", "backbone": {}}), train=False)
    frame = ClipDataset(image_row, counter, tsn, pseudo="frame").load(0, 0)
    assert frame.shape == (1, 3, 1, 224, 224)


def test_moving_camera_starts_at_the_image_and_is_smooth_and_seeded():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 255, (40, 60, 3), dtype=np.uint8)
    clip = moving_clip(image, range(16), rng=3, length=16)
    np.testing.assert_array_equal(clip[0], image)                     # H(0) is the identity
    np.testing.assert_array_equal(clip, moving_clip(image, range(16), rng=3, length=16))
    steps = [np.abs(clip[k + 1].astype(int) - clip[k]).mean() for k in range(15)]
    assert max(steps) < 4 * np.median(steps) + 5                    # no jumps: a smooth path
    path = camera_path(3, 16)
    np.testing.assert_allclose(path.homography(0, 40, 60), np.eye(3), atol=1e-12)
    assert not np.allclose(path.homography(15, 40, 60), np.eye(3))
    assert static_clip(image, 5).shape == (5, 40, 60, 3)
    with pytest.raises(ValueError, match="uint8 RGB"):
        static_clip(image.astype(np.float32), 2)


def test_crops_and_format_shapes_by_hand():
    frames = np.zeros((6, 4, 8, 3), np.uint8)
    frames[..., 0] = np.arange(8)[None, None]                         # red = column
    frames[..., 1] = np.arange(6)[:, None, None]                      # green = frame number
    r = build_pipeline([{"type": "SampleFrames", "clip_len": 1, "num_clips": 6, "test_mode": True},
                        {"type": "ThreeCrop", "size": 4},
                        {"type": "FormatShape", "input_format": "NCHW", "num_segments": 3}])
    x = r.finish({"clip_len": 1, "num_clips": 6}, frames, np.random.default_rng(0))
    assert x.shape == (6, 3, 3, 4, 4)                                 # 3 crops x 2 temporal views, 3 segments
    assert [int(x[v, 0, 0, 0, 0]) for v in (0, 2, 4)] == [0, 2, 4]    # crops start at columns 0, 2, 4
    assert x[0, 1, :, 0, 0].tolist() == [0, 2, 4] and x[1, 1, :, 0, 0].tolist() == [1, 3, 5]  # interleaved views
    ten = build_pipeline([{"type": "SampleFrames", "clip_len": 2, "num_clips": 3, "test_mode": True},
                          {"type": "TenCrop", "size": 2}, {"type": "FormatShape", "input_format": "NCTHW"}])
    y = ten.finish({"clip_len": 2, "num_clips": 3}, frames, np.random.default_rng(0))
    assert y.shape == (30, 3, 2, 2, 2)                                # 10 crops x 3 clips
    np.testing.assert_array_equal(y[15:, 0], y[:15, 0, :, :, ::-1])   # the second five are the flips


def test_pipeline_errors_name_the_valid_choices():
    with pytest.raises(ConfigError, match=r"'Rezise' is not one of \[.*'Resize'"):
        build_pipeline([RAW[0], {"type": "Rezise", "scale": 4}, RAW[-1]])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['sise'\].*valid keys: \['size'\]"):
        build_pipeline([RAW[0], {"type": "CenterCrop", "sise": 4}, RAW[-1]])
    with pytest.raises(ConfigError, match="first step must be SampleFrames"):
        build_pipeline(RAW[1:])
    with pytest.raises(ConfigError, match="last step must be FormatShape"):
        build_pipeline(RAW[:2])
    with pytest.raises(ConfigError, match="input_format"):
        build_pipeline([RAW[0], {"type": "FormatShape", "input_format": "NTCHW"}])
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['clip_length'\]; valid keys"):
        resolve_data({"model": {"type": "Recognizer3D"}, "data": {"clip_length": 8}})
    with pytest.raises(ConfigError, match="CLIPSxCROPS"):
        parse_views("ten")
    assert set(STEPS) >= {"SampleFrames", "Resize", "RandomResizedCrop", "MultiScaleCrop", "CenterCrop",
                          "ThreeCrop", "TenCrop", "Flip", "Normalize", "FormatShape"}


def test_default_pipelines_follow_the_model():
    tsn = default_data({"type": "Recognizer2D", "backbone": {"type": "ResNet"}})
    assert (tsn["clip_len"], tsn["num_clips"], tsn["input_format"], tsn["pseudo"]) == (1, 8, "NCHW", "frame")
    tsm = default_data({"type": "Recognizer2D", "backbone": {"num_segments": 4}})
    assert tsm["num_clips"] == 4 and tsm["pseudo"] == "static"       # a fixed T: images become static clips
    flow = default_data({"type": "Recognizer2D", "backbone": {"in_channels": 10}})
    assert (flow["clip_len"], flow["input_format"]) == (6, "NCHW_Flow")
    vit = default_data({"type": "Recognizer3D", "backbone": {"num_frames": 16, "img_size": 32}})
    assert (vit["clip_len"], vit["frame_interval"], vit["size"]) == (16, 4, 32)
    test = pipeline_config(tsn, train=False, views=(2, 3))
    assert test[0]["num_clips"] == 16 and test[2]["type"] == "ThreeCrop" and test[-1]["num_segments"] == 8


def test_rows_that_are_not_ok_are_skipped_and_counted():
    df = mf.from_records([dict(item_id=str(i), path=f"{i}.mp4", status=s, error=None if s in ("ok", "planned")
                               else "http_404: gone", split="train", label_id=0)
                          for i, s in enumerate(["ok", "ok", "failed", "rejected", "planned", "failed"])])
    kept, skipped = usable_rows(df, "train")
    assert len(kept) == 2 and skipped == {"failed": 2, "rejected": 1, "planned": 1}


def test_label_levels_and_parents():
    df = pd.DataFrame({"label_id": [0, 1, 2, 3, None], "label": ["a", "b", "c", "d", None],
                       "element_id": [0, 1, 2, 3, 9], "set_id": [11, 11, 21, 21, 21], "set": ["s", "s", "t", "t", "t"],
                       "event_id": [1, 1, 2, 2, 2], "event": ["e", "e", "f", "f", "f"]})
    space = LabelSpace.from_manifest(df)
    assert space.names == ("a", "b", "c", "d") and space.parents["set"] == {0: 11, 1: 11, 2: 21, 3: 21}
    assert space.index(df).tolist() == [0, 1, 2, 3, -1]
    sets = LabelSpace.from_manifest(df, "set")
    assert sets.ids == (11, 21) and sets.names == ("s", "t") and sets.index(df).tolist() == [0, 0, 1, 1, 1]
    assert LabelSpace.from_dict(sets.to_dict()) == sets
    with pytest.raises(ConfigError, match="not one of"):
        LabelSpace.from_manifest(df, "phylum")


def test_mixed_batches_have_the_configured_composition_and_epochs_follow_the_target():
    target = Stream(10, np.zeros(10, int), batch=4)
    labels = np.array([0] * 90 + [1] * 9 + [2])
    web = Stream(100, labels, batch=2, power=0.0)
    sampler = MixedBatchSampler([target, web], seed=5)
    assert sampler.steps_per_epoch == 3 and len(sampler) == 3
    seen, aux_labels = [], []
    for epoch in range(40):
        sampler.set_epoch(epoch)
        batches = list(sampler)
        sizes = [(sum(k[0] == 0 for k in b), sum(k[0] == 1 for k in b)) for b in batches]
        assert sizes == [(4, 2), (4, 2), (2, 2)]                      # target 4 (last 2), web share 2 every step
        assert sorted(k[1] for b in batches for k in b if k[0] == 0) == list(range(10))  # one pass per epoch
        seen.append(batches)
        aux_labels += [labels[k[1]] for b in batches for k in b if k[0] == 1]
    share = np.bincount(aux_labels, minlength=3) / len(aux_labels)   # power 0: classes drawn uniformly
    assert np.all(np.abs(share - 1 / 3) < 0.06)
    sampler.set_epoch(7, start_step=1)                               # resuming mid-epoch: same keys
    assert list(sampler) == seen[7][1:]
    draws = balanced_draw(labels, 1.0, 20000, np.random.default_rng(0))  # power 1: as the data is
    assert abs(np.mean(labels[draws] == 0) - 0.9) < 0.02


def test_images_and_videos_of_one_source_batch_as_groups(counter):
    df = pd.concat([rows(item_id="v"), rows(item_id="i", path="img.png", media="image", fps=None, frames=1)])
    data = resolve_data({"model": {"type": "Recognizer2D", "backbone": {}}, "data": {"size": 16, "scale": 16}})
    ds = ClipDataset(df.reset_index(drop=True), counter, build_pipelines(data, train=True), np.array([0, 1]),
                     pseudo="frame")
    groups = collate_groups([(0, *ds[(0, (1,))]), (0, *ds[(1, (2,))]), (0, *ds[(0, (3,))])])
    assert [(g.source, tuple(g.x.shape), g.y.tolist()) for g in groups] == [
        (0, (2, 1, 3, 8, 16, 16), [0, 0]), (0, (1, 1, 3, 1, 16, 16), [1])]


def test_worker_processes_give_the_same_batches(counter):
    df = pd.concat([rows(item_id=str(i)) for i in range(4)]).reset_index(drop=True)
    data = resolve_data({"model": {"type": "Recognizer3D", "backbone": {}},
                         "data": {"size": 16, "scale": 20, "clip_len": 4, "frame_interval": 3}})
    ds = ClipDataset(df, counter, build_pipelines(data, train=True), np.arange(4))
    sampler = MixedBatchSampler([Stream(4, np.arange(4), 2)], seed=1)
    main = [g[0].x for g in make_loader([ds], sampler, workers=0)]
    forked = [g[0].x for g in make_loader([ds], sampler, workers=2)]
    assert len(main) == 2 and all(torch.equal(a, b) for a, b in zip(main, forked))
    evals = [g[0].y.tolist() for g in make_loader([ds], SequentialBatchSampler(4, 3))]
    assert evals == [[0, 1, 2], [3]]


def test_source_strings_parse_and_bad_keys_list_the_valid_ones():
    s = parse_source("web=data/omni.parquet:weight=0.5,share=0.5,power=0.2,pseudo=moving")
    assert (s.name, str(s.manifest), s.weight, s.share, s.power, s.pseudo) == ("web", "data/omni.parquet", 0.5,
                                                                               0.5, 0.2, "moving")
    assert s.batch_size(8) == 4
    t = parse_source("m.parquet:split=train")
    assert (t.name, str(t.manifest), t.split) == ("target", "m.parquet", "train")
    with pytest.raises(ConfigError, match=r"KEY in \['split', 'weight'"):
        parse_source("web=x.parquet:wieght=1")
    with pytest.raises(ConfigError, match="needs a number"):
        parse_source("web=x.parquet:share=half")
