"""BMN: the boundary-matching layer, targets, losses, Soft-NMS, ActivityNet JSON round trips, `curate features`,
and a tiny BMN on the demo world beating evenly spaced fixed-length proposals."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from curate.clean.features import extract_features, load_features, read_index, resample
from curate.demo.locdet import LONG_KINDS, frame_recognizer, localization_demo
from curate.formats import activitynet as A
from trainers.config import count_parameters
from trainers.localization import build_localizer, decode_proposals, soft_nms, uniform_proposals
from trainers.models.bmn import BMN, bmn_loss, bmn_targets, boundary_matching_mask, valid_map
from trainers.train import make_config


def test_full_size_bmn_builds_and_tiny_forward_shapes():
    full = build_localizer(make_config("bmn")["model"])
    assert (full.tscale, full.dscale, full.feat_dim) == (100, 100, 400)
    assert count_parameters(full) > 1_000_000
    tiny = build_localizer(make_config("bmn", tiny=True)["model"])
    conf, start, end = tiny(torch.randn(3, 128, 32))
    assert conf.shape == (3, 2, 32, 32) and start.shape == end.shape == (3, 32)
    assert 0 <= float(conf.detach().min()) and float(conf.detach().max()) <= 1
    with pytest.raises(ValueError, match="features"):
        tiny(torch.randn(1, 64, 32))


def test_boundary_matching_mask_averages_bins_inside_the_video():
    t, n, per = 10, 4, 3
    mask = boundary_matching_mask(t, t, n, per, 0.0).reshape(t, n, t, t)
    # proposal start 2, duration index 3 -> [2, 6]: every bin lies inside, so its weights sum to 1
    assert mask[:, :, 3, 2].sum(0).tolist() == pytest.approx([1.0] * n)
    # the first bin of [2, 6] covers anchors 2..3, nothing past 6
    assert mask[:2, 0, 3, 2].sum() == 0 and mask[7:, :, 3, 2].sum() == 0
    assert mask[:, :, 8, 2].sum() == 0                      # ends past the last anchor: no samples
    assert valid_map(t, t)[3, 2] and not valid_map(t, t)[8, 2]


def test_targets_put_boundaries_and_best_iou_where_the_segment_is():
    iou, start, end = bmn_targets([np.array([[0.2, 0.5]])], 11, 11)   # anchors every 0.1
    # the region 3 anchor steps wide around a boundary covers the anchors next to it fully
    assert start[0].tolist() == pytest.approx([0, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0], abs=1e-9)
    assert end[0].tolist() == pytest.approx([0, 0, 0, 0, 1, 1, 1, 0, 0, 0, 0], abs=1e-9)
    d, s = np.unravel_index(int(iou[0].argmax()), iou[0].shape)
    assert (s, s + d + 1) == (2, 5) and float(iou[0].max()) == pytest.approx(1.0)


def test_loss_falls_when_fitting_one_batch():
    torch.manual_seed(0)
    model = BMN(temporal_dim=12, num_samples=4, num_samples_per_bin=2, feat_dim=8, hidden_dim_1d=16,
                hidden_dim_2d=8, hidden_dim_3d=16)
    x = torch.randn(4, 8, 12)
    targets = bmn_targets([np.array([[0.1, 0.4]]), np.array([[0.5, 0.9]]), np.array([[0.0, 0.3], [0.6, 0.8]]),
                           np.zeros((0, 2))], 12, 12)
    x[:, :2] += targets[1][:, None] * 2            # a hint in the features
    opt = torch.optim.Adam(model.parameters(), 1e-2)
    losses = []
    for _ in range(20):
        loss = bmn_loss(model(x), targets, model.valid)
        opt.zero_grad()
        loss["loss"].backward()
        opt.step()
        losses.append(float(loss["loss"].detach()))
    assert losses[-1] < 0.6 * losses[0]


def test_soft_nms_decays_overlaps_only():
    props = np.array([[0.0, 0.5, 0.9], [0.0, 0.45, 0.8], [0.6, 0.9, 0.7]])
    out = soft_nms(props, alpha=0.4, low=0.0, high=0.0)
    assert out[0].tolist() == [0.0, 0.5, 0.9]
    assert out[1].tolist() == [0.6, 0.9, 0.7]                      # untouched: no overlap
    assert out[2, 2] == pytest.approx(0.8 * np.exp(-0.9 ** 2 / 0.4))
    assert len(soft_nms(props, top_k=2)) == 2 and soft_nms(np.zeros((0, 3))).shape == (0, 3)
    # BMN's threshold grows with the kept proposal's width: low + (high - low) * width = 0.5 + 0.4*0.5 = 0.7 < 0.9
    assert soft_nms(props)[1, 2] < 0.8


def test_decode_and_baseline_proposals():
    t = 8
    conf = np.zeros((2, t, t))
    conf[:, 2, 1] = 1.0                                            # start anchor 1, 3 steps long -> [1/7, 4/7]
    start, end = np.full(t, 0.1), np.full(t, 0.1)
    start[1], end[4] = 0.9, 0.9
    p = decode_proposals(conf, start, end, dict(alpha=0.4, low=0.5, high=0.9, top_k=5))
    assert p[0, :2].tolist() == pytest.approx([1 / 7, 4 / 7]) and len(p) <= 5
    base = uniform_proposals({"v": 10.0}, 0.2, count=8)["v"]
    assert np.allclose(base[:, 1] - base[:, 0], 2.0) and (np.diff(base[:, 2]) < 0).all()
    assert sorted(base[:2, 0].tolist()) == pytest.approx([0.0, 8 * 4 / 7])   # the first two are far apart


def test_activitynet_round_trip_and_events_to_elements(locdet_world, tmp_path):
    db = A.from_world(locdet_world.root)
    acts = pd.read_parquet(locdet_world.root / "truth" / "actions.parquet")
    web = pd.read_parquet(locdet_world.root / "truth" / "web.parquet")
    fetched = set(web.loc[web["kind"].isin(LONG_KINDS) & (web["status"] == "ok"), "source_id"])
    assert sum(len(v.annotations) for v in db.values()) == int(acts["video_id"].isin(fetched).sum())
    assert {v.subset for v in db.values()} == {"training", "validation"}
    p1 = A.write_activitynet(tmp_path / "a.json", db)
    again = A.read_activitynet(p1)
    p2 = A.write_activitynet(tmp_path / "b.json", again)
    assert again == db and p1.read_bytes() == p2.read_bytes()
    doc = json.loads(p1.read_text())
    v = next(iter(doc["database"].values()))
    assert {"duration", "annotations", "subset", "resolution"} <= set(v) and "segment" in v["annotations"][0]
    assert set(doc) == {"version", "taxonomy", "database"}
    ev = A.world_events_to_elements(locdet_world.root)
    events = pd.read_parquet(locdet_world.root / "truth" / "events.parquet")
    assert len(ev) == len(events)
    for vid in ev.values():
        assert vid.annotations and all(0 <= a.start < a.end <= vid.duration for a in vid.annotations)
    (tmp_path / "bad.json").write_text('{"database": {"x": {"duration_second": 3, "subset": "training", '
                                       '"annotations": [{"segment": [2, 1], "label": "a"}]}}}')
    with pytest.raises(A.AnnotationError, match="x"):
        A.read_activitynet(tmp_path / "bad.json")


def test_resample_holds_ends_and_interpolates():
    seq = np.array([[0.0], [10.0]])
    out = resample(seq, np.array([1.0, 2.0]), 3.0, 4)          # grid 0, 1, 2, 3
    assert out.tolist() == [[0.0, 0.0, 10.0, 10.0]]


@pytest.fixture(scope="module")
def frame_ckpt(locdet_world, tmp_path_factory):
    return frame_recognizer(locdet_world.root, tmp_path_factory.mktemp("rec"), epochs=3)


@pytest.mark.slow
def test_features_shapes_index_and_resume(locdet_world, frame_ckpt, tmp_path):
    web = pd.read_parquet(locdet_world.root / "truth" / "web.parquet")
    rows = web[web["kind"] == "untrimmed"].head(3)
    idx = extract_features(frame_ckpt, rows, tmp_path, data_root=locdet_world.root, temporal_length=20,
                           stride_s=0.5)
    assert len(idx) == 3 and set(idx["item_id"]) == set(rows["item_id"])
    feats = load_features(tmp_path)
    assert all(f.shape == (idx["dim"][0], 20) and np.isfinite(f).all() for f in feats.values())
    assert (idx["snippets"] >= (rows["frames"].to_numpy() / 8 / 0.5 - 2)).all()
    assert np.allclose([sum(s) for s in idx["scores"]], 1.0, atol=1e-4)
    again = extract_features(frame_ckpt, web[web["kind"] == "untrimmed"].head(4), tmp_path,
                             data_root=locdet_world.root, temporal_length=20, stride_s=0.5)
    assert len(again) == 4 and len(read_index(tmp_path)) == 4 and len(load_features(tmp_path)) == 4


@pytest.mark.slow
def test_tiny_bmn_beats_uniform_proposals_on_the_demo_world(locdet_world, frame_ckpt, tmp_path):
    m = localization_demo(locdet_world.root, tmp_path, frame_ckpt)
    print(f"\nBMN on the demo world ({m['videos']} validation videos): AUC {m['auc']:.1f} vs evenly spaced "
          f"fixed-length proposals {m['baseline_auc']:.1f}; AR@1 {m['AR@1']:.1f}, AR@10 {m['AR@10']:.1f}, "
          f"AR@100 {m['AR@100']:.1f}; average mAP {m['average_map']:.1f}")
    assert m["auc"] > m["baseline_auc"] + 5
    losses = [e for e in map(json.loads, (tmp_path / "bmn" / "metrics.jsonl").read_text().splitlines())
              if e["event"] == "train"]
    assert losses[-1]["loss/loss"] < losses[0]["loss/loss"]
    assert json.loads((tmp_path / "bmn" / "eval" / "proposals.json").read_text())["results"]


@pytest.mark.slow
def test_cli_from_world_features_and_train_bmn(locdet_world, frame_ckpt, tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli

    run = CliRunner().invoke
    r = run(cli, ["localize", "from-world", str(locdet_world.root), "-o", str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert (tmp_path / "activitynet.json").exists() and (tmp_path / "ava" / "proposals.csv").exists()
    r = run(cli, ["features", str(frame_ckpt), str(locdet_world.root / "truth" / "web.parquet"), "-o",
                  str(tmp_path / "f"), "--kind", "untrimmed", "--length", "16", "--stride-s", "0.5",
                  "--data-root", str(locdet_world.root)])
    assert r.exit_code == 0, r.output
    web = pd.read_parquet(locdet_world.root / "truth" / "web.parquet")
    n = int(((web["kind"] == "untrimmed") & (web["status"] == "ok")).sum())
    assert f"{n} videos in" in r.output and len(read_index(tmp_path / "f")) == n
    r = run(cli, ["localize", "train-bmn", str(tmp_path / "f"), str(tmp_path / "activitynet.json"), "-o",
                  str(tmp_path / "bmn"), "--tiny", "--set", "schedule.epochs=2", "--set", "model.num_samples=4"])
    assert r.exit_code == 0, r.output
    assert "auc" in r.output and "baseline_auc" in r.output and (tmp_path / "bmn" / "eval" / "proposals.json").exists()
    r = run(cli, ["localize", "train-bmn", str(tmp_path / "f"), str(tmp_path / "activitynet.json"), "-o",
                  str(tmp_path / "bmn2"), "--tiny", "--set", "schedule.nope=1"])
    assert r.exit_code != 0 and "nope" in r.output
