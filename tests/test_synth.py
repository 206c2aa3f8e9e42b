"""The demo world: determinism, counts, decodable media, temporal-order pairs, noise, copies, boxes, spans."""
import hashlib
import json
import re
import time

import av
import cv2
import numpy as np
import pandas as pd
import pytest

from curate import media
from curate.core import manifest as mf
from curate.crawl.plan import hashtags
from curate.demo.synth import make_world
from curate.demo.synth import render as R
from curate.demo.synth.classes import CLASS_TABLE, classes, hierarchy, reversal_pairs
from curate.demo.synth.plan import WorldSpec, make_plan
from tests.conftest import TINY_WORLD


def decode(path):
    with av.open(str(path)) as c:
        stream = c.streams.video[0]
        return np.stack([f.to_ndarray(format="rgb24") for f in c.decode(stream)]), float(stream.average_rate)


def tree_hashes(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_same_seed_same_bytes_other_seed_other_world(tiny_world, tmp_path):
    again = make_world(tmp_path / "again", workers=1, **TINY_WORLD)
    fresh, shared = tree_hashes(again.root), tree_hashes(tiny_world.root)  # other tests add files to the shared world
    assert fresh == {k: shared.get(k) for k in fresh}
    a, b = make_plan(WorldSpec(**TINY_WORLD)), make_plan(WorldSpec(**{**TINY_WORLD, "seed": 1}))
    assert [r["source_id"] for r in a.web] != [r["source_id"] for r in b.web]
    assert [j["start_frame"] for j in a.jobs if j["runner"] == "target"] != \
        [j["start_frame"] for j in b.jobs if j["runner"] == "target"]


def test_existing_world_is_reused(tiny_world):
    stamp = (tiny_world.root / "world.json").stat().st_mtime_ns
    t0 = time.perf_counter()
    world = make_world(tiny_world.root, **TINY_WORLD)
    assert time.perf_counter() - t0 < 1.0 and (tiny_world.root / "world.json").stat().st_mtime_ns == stamp
    assert world.counts == tiny_world.counts


def test_target_manifest_csv_and_hierarchy(tiny_world):
    spec = tiny_world.spec
    df = mf.read(tiny_world.target_manifest)
    assert (df["source"] == "synthetic").all() and (df["status"] == "ok").all()
    per = {"train": spec.train_per_class, "val": spec.val_per_class, "test": spec.test_per_class}
    for split, n in per.items():
        counts = df[df["split"] == split]["label_id"].value_counts()
        assert counts.to_dict() == {i: n for i in range(spec.num_classes)}
    assert df["label"].tolist() == [tiny_world.classes[i] for i in df["label_id"]]
    assert df["item_id"].tolist() == [mf.item_id("synthetic", s, a, b)
                                      for s, a, b in zip(df["source_id"], df["start_s"], df["end_s"])]
    csv = pd.read_csv(tiny_world.target_csv)
    assert list(csv.columns) == ["label", "youtube_id", "time_start", "time_end", "split"]
    assert csv["youtube_id"].tolist() == df["source_id"].tolist()
    assert np.allclose(csv["time_end"] - csv["time_start"], spec.clip_frames / spec.fps)
    assert (csv["time_start"] > 0).all() and (csv["time_end"] < spec.source_frames / spec.fps).all()
    tree = json.loads(tiny_world.hierarchy.read_text())
    sets = {s["id"]: s for s in tree["sets"]}
    for el in tree["elements"]:
        assert sets[el["set_id"]]["event_id"] == el["event_id"] and sets[el["set_id"]]["id"] // 10 == el["event_id"]
    row = df.iloc[0]
    el = tree["elements"][row["label_id"]]
    assert (row["element_id"], row["set_id"], row["event_id"]) == (el["id"], el["set_id"], el["event_id"])
    assert tiny_world.classes_file.read_text().splitlines() == tiny_world.classes


def test_videos_decode_with_their_frame_counts(tiny_world):
    spec = tiny_world.spec
    df = mf.read(tiny_world.target_manifest)
    for path in df["path"][:: max(1, len(df) // 6)]:
        frames, fps = decode(tiny_world.root / path)
        assert frames.shape == (spec.clip_frames, spec.size, spec.size, 3) and fps == spec.fps
    web = pd.read_parquet(tiny_world.truth_web)
    ok = web[web["path"].notna() & web["broken"].isna()]
    for _, row in ok[ok["media"] == "video"].groupby("kind").head(2).iterrows():
        frames, fps = decode(tiny_world.root / row["path"])
        assert frames.shape == (row["frames"], row["height"], row["width"], 3), row["kind"]
        assert fps == row["fps"]
    for _, row in ok[ok["media"] == "image"].head(8).iterrows():
        img = cv2.imread(str(tiny_world.root / row["path"]))
        assert img.shape == (row["height"], row["width"], 3)


def _clip(spec, seed, n=16, specs=classes(10)):
    rng = np.random.default_rng(seed)
    actor = R.Actor.of(spec, R.act(spec, rng, n), rng)
    frames, _ = R.render(64, 64, n, rng, [actor], R.clutter(rng, n, specs))
    return frames, actor.states


def _accuracy(x, y):
    """Ridge regression on standardised features, trained on even samples and scored on odd ones."""
    x = (x - x.mean(0)) / (x.std(0) + 1e-6)
    tr, te = np.arange(len(y)) % 2 == 0, np.arange(len(y)) % 2 == 1
    xt = np.c_[x[tr], np.ones(tr.sum())]
    w = np.linalg.solve(xt.T @ xt + 10.0 * np.eye(xt.shape[1]), xt.T @ (2.0 * y[tr] - 1))
    return float(((np.c_[x[te], np.ones(te.sum())] @ w > 0) == y[te]).mean())


def test_reversal_pairs_share_frames_but_not_their_order():
    specs = classes(10)
    pairs = reversal_pairs(specs)
    assert pairs == [(0, 1), (2, 3), (5, 6), (7, 8)]
    for a, b in pairs:
        _, states_a = _clip(specs[a], 123)
        _, states_b = _clip(specs[b], 123)
        for k in R.STATE_KEYS:  # the same trajectory, played backwards
            assert np.allclose(states_b[k], states_a[k][::-1]), k
        assert any(not np.allclose(states_a[k], states_a[k][::-1]) for k in R.STATE_KEYS)

    def features(label, seeds):
        clips = np.stack([_clip(specs[label], s)[0] for s in seeds])
        small = clips.astype(np.float32).reshape(len(seeds), 16, 8, 8, 8, 8, 3).mean(axis=(3, 5))  # 8x8 pooling
        bins = (clips // 64).astype(np.int64) @ np.array([16, 4, 1])                           # 4x4x4 colours
        hist = np.stack([np.bincount(b.ravel(), minlength=64) for b in bins.reshape(-1, 64 * 64)])
        per_frame = np.concatenate([small.reshape(len(seeds), 16, -1), hist.reshape(len(seeds), 16, 64)], axis=2)
        frame_avg = per_frame.mean(axis=1)                                   # what a frame-averaging model sees
        order = (small[:, -4:].mean(1) - small[:, :4].mean(1)).reshape(len(seeds), -1)  # late minus early
        return frame_avg, order

    seeds = range(1000, 1080)
    for a, b in [(0, 1), (2, 3)]:
        (avg_a, ord_a), (avg_b, ord_b) = features(a, seeds), features(b, range(2000, 2080))
        y = np.r_[np.zeros(len(avg_a)), np.ones(len(avg_b))]
        order = np.random.default_rng(0).permutation(len(y))
        tsn = _accuracy(np.r_[avg_a, avg_b][order], y[order])
        ordered = _accuracy(np.r_[ord_a, ord_b][order], y[order])
        assert tsn < 0.7, f"frame averages separate {specs[a].name} / {specs[b].name}: {tsn}"
        assert ordered > 0.9, f"temporal order fails to separate {specs[a].name} / {specs[b].name}: {ordered}"
    # across pairs, appearance alone separates
    (avg_a, _), (avg_c, _) = features(0, seeds), features(2, range(2000, 2080))
    y = np.r_[np.zeros(len(avg_a)), np.ones(len(avg_c))]
    order = np.random.default_rng(0).permutation(len(y))
    assert _accuracy(np.r_[avg_a, avg_c][order], y[order]) > 0.9


def test_class_table_and_tags():
    assert len({c.name for c in CLASS_TABLE}) == len(CLASS_TABLE)
    tree = hierarchy(list(CLASS_TABLE))
    assert len(tree["elements"]) == len(CLASS_TABLE) and {e["name"] for e in tree["events"]} == {"travel", "transform", "roam"}
    assert hashtags("square slides left") == ["squareslidesleft", "squareslideleft", "leftslidesquare"]
    assert hashtags("star spins anticlockwise") == ["starspinsanticlockwise", "starspinanticlockwise",
                                                    "anticlockwisespinstar"]
    with pytest.raises(ValueError):
        classes(1)
    with pytest.raises(ValueError, match="noise_rate must lie in"):
        WorldSpec(noise_rate=1.5)
    with pytest.raises(ValueError, match="source_frames"):
        WorldSpec(source_frames=20)


def test_web_noise_is_the_planned_fraction(tiny_world):
    web = pd.read_parquet(tiny_world.truth_web)
    rate = tiny_world.spec.noise_rate
    plain = web[web["copy_of"].isna() & web["broken"].isna()]
    for (kind, label), g in plain[plain["kind"].isin(["web_image", "feed_image", "feed_video", "untrimmed"])].groupby(
            ["kind", "label_id"]):
        assert g["noisy"].sum() == round(rate * len(g)), (kind, label)
        assert (g["noisy"] == (g["true_label_id"] != g["label_id"])).all()
    noisy = plain[plain["noisy"]]
    assert (noisy["true_label_id"] == -1).any() and (noisy["true_label_id"] >= 0).any()
    assert web["source_id"].is_unique
    assert all(re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_-]{10}", w) for w in web["source_id"])
    assert web["title"].str.contains("../", regex=False).any() and web["title"].str.len().max() > 255


def test_near_copies_are_closest_to_their_clip(tiny_world):
    target = mf.read(tiny_world.target_manifest)
    evals = target[target["split"].isin(["val", "test"])].reset_index(drop=True)
    thumbs = np.stack([cv2.resize(decode(tiny_world.root / p)[0].mean(0), (16, 16)) for p in evals["path"]])
    web = pd.read_parquet(tiny_world.truth_web)
    copies = web[web["copy_of"].notna()]
    assert len(copies) == tiny_world.spec.near_copies and copies["copy_of"].isin(evals["item_id"]).all()
    for _, row in copies.iterrows():
        path = tiny_world.root / row["path"]
        img = decode(path)[0].mean(0) if row["media"] == "video" else cv2.imread(str(path))[..., ::-1]
        thumb = cv2.resize(img.astype(np.float32), (16, 16))
        nearest = np.argmin(((thumbs - thumb) ** 2).sum(axis=(1, 2, 3)))
        assert evals["item_id"][nearest] == row["copy_of"]


def test_boxes_follow_the_motion(tiny_world):
    boxes = pd.read_parquet(tiny_world.truth_boxes)
    target = mf.read(tiny_world.target_manifest).set_index("item_id")
    clips = boxes[boxes["kind"] == "target"]
    assert clips.groupby("video_id").size().eq(tiny_world.spec.clip_frames).all()
    assert set(clips["video_id"]) == set(target.index)
    assert ((boxes[["x1", "y1"]].to_numpy() < boxes[["x2", "y2"]].to_numpy()).all()
            and boxes[["x1", "y1", "x2", "y2"]].to_numpy().min() >= 0 and boxes[["x2", "y2"]].to_numpy().max() <= 1)
    for vid, g in clips.groupby("video_id"):
        label = target.loc[vid, "label"]
        cx = (g["x1"] + g["x2"]).to_numpy() / 2
        area = ((g["x2"] - g["x1"]) * (g["y2"] - g["y1"])).to_numpy()
        if label == "square slides right":
            assert cx[-1] - cx[0] > 0.2
        elif label == "square slides left":
            assert cx[0] - cx[-1] > 0.2
        elif label == "triangle grows":
            assert area[-1] > 2 * area[0]
        elif label == "triangle shrinks":
            assert area[0] > 2 * area[-1]


def test_spans_events_and_scenes(tiny_world):
    web = pd.read_parquet(tiny_world.truth_web).set_index("source_id")
    actions = pd.read_parquet(tiny_world.truth_actions)
    events = pd.read_parquet(tiny_world.truth_events)
    boxes = pd.read_parquet(tiny_world.truth_boxes)
    frames = web.loc[actions["video_id"], "frames"].to_numpy()
    assert (actions["start_frame"] >= 0).all() and (actions["end_frame"] <= frames).all()
    for (vid, _), g in actions.groupby(["video_id", "actor"]):
        g = g.sort_values("start_frame")
        assert (g["start_frame"].to_numpy()[1:] >= g["end_frame"].to_numpy()[:-1]).all(), vid
    for _, ev in events.iterrows():
        inside = actions[actions["event_key"] == ev["event_key"]]
        inside = inside[inside["video_id"] == ev["video_id"]]
        assert len(inside) >= 3 and (inside["start_frame"] >= ev["start_frame"]).all()
        assert (inside["end_frame"] <= ev["end_frame"]).all()
        tree = json.loads(tiny_world.hierarchy.read_text())
        assert all(tree["elements"][i]["event_id"] == ev["event_id"] for i in inside["label_id"])
    # untrimmed: the object is seen only near its spans, and labelled only inside them
    for vid, g in actions[actions["kind"] == "untrimmed"].groupby("video_id"):
        b = boxes[boxes["video_id"] == vid]
        acting = b[b["label_id"] >= 0]["frame"]
        expect = set().union(*[range(s, e) for s, e in zip(g["start_frame"], g["end_frame"])])
        assert set(acting) == expect
        assert len(b) < web.loc[vid, "frames"]
    scenes = boxes[boxes["kind"] == "scene"]
    assert scenes.groupby(["video_id", "frame"])["actor"].nunique().min() >= 2


def test_broken_files_are_flagged(tiny_world):
    web = pd.read_parquet(tiny_world.truth_web)
    broken = web[web["broken"].notna()].set_index("broken")
    assert set(broken.index) == {"truncated_mp4", "html_mp4", "empty_jpg", "random_jpg", "truncated_jpg",
                                 "one_frame_mp4"}
    read = lambda kind: (tiny_world.root / broken.loc[kind, "path"]).read_bytes()  # noqa: E731
    assert read("html_mp4").startswith(b"<!doctype html>") and read("empty_jpg") == b""
    assert read("truncated_jpg")[:2] == b"\xff\xd8" and cv2.imdecode(np.frombuffer(read("random_jpg"), np.uint8), 1) is None
    assert decode(tiny_world.root / broken.loc["one_frame_mp4", "path"])[0].shape[0] == 1
    assert broken.loc["one_frame_mp4", "status"] == "ok"
    assert {mf.error_code(e) for e in broken["error"].dropna()} == {"truncated", "not_media", "empty", "undecodable"}
    for kind, row in broken.iterrows():  # the media layer gives each planted file the code the truth names
        if kind == "one_frame_mp4":
            assert media.probe(tiny_world.root / row["path"]).frames == 1
            continue
        with pytest.raises(media.MediaError) as err:
            media.probe(tiny_world.root / row["path"])
        assert err.value.code == mf.error_code(row["error"]), kind
    gone = web[web["gone"]]
    assert (gone["status"] == "failed").all() and gone["path"].isna().all()


def test_montages_and_distractor_images(tiny_world):
    spec = tiny_world.spec
    web = pd.read_parquet(tiny_world.truth_web)
    shots = pd.read_parquet(tiny_world.truth_shots)
    montages = web[web["kind"] == "montage"]
    assert len(montages) == spec.montages_per_class * spec.num_classes
    assert (montages["query"] == montages["label"] + " compilation").all() and (montages["source"] == "youtube").all()
    for _, m in montages.iterrows():        # shots tile the video in order; each begins with a cut or a fade
        s = shots[shots["video_id"] == m["source_id"]].sort_values("shot")
        assert s["start_frame"].iloc[0] == 0 and s["end_frame"].iloc[-1] == m["frames"]
        assert (s["start_frame"].to_numpy()[1:] == s["end_frame"].to_numpy()[:-1]).all()
        assert set(s["transition"].iloc[1:]) <= {"cut", "fade"} and 3 <= len(s) <= 5
        assert (s["label_id"] == m["label_id"]).any() == (not m["noisy"])   # the query's class acts in some shot
    frames, _ = decode(tiny_world.root / montages["path"].iloc[0])
    fade = shots[(shots["video_id"] == montages["source_id"].iloc[0]) & (shots["transition"] == "fade")]
    for b in fade["start_frame"]:           # a fade passes through black at the boundary
        assert frames[b - 1].mean() < 3 and frames[b].mean() < 3
    images = web[web["kind"] == "distractor_image"]
    assert (images["query"] == images["label"] + " meme").all() and (images["source"] == "web_image").all()
    for _, g in images.groupby("label_id"):
        assert g["noisy"].sum() == round(spec.distractor_noise_rate * spec.distractor_images_per_class)
