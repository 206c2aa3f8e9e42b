"""AVA-style files (round trips, checks, the demo world's scenes), the RoIAlign detector head, a tiny detector
that learns, and frame-mAP against the class-prior baseline on the demo world."""
import json

import numpy as np
import pandas as pd
import pytest
import torch

from curate.demo.locdet import detection_demo
from curate.formats import ava
from trainers.config import count_parameters
from trainers.detection import KeyframeData, build_detector, resolve_data
from trainers.models.roi_head import RoIHead
from trainers.train import make_config


@pytest.fixture(scope="module")
def ava_files(locdet_world, tmp_path_factory):
    return ava.from_world(locdet_world.root, tmp_path_factory.mktemp("ava"))


def test_csv_round_trips_are_identical(ava_files, tmp_path):
    for kind, key in (("annotations", "train"), ("annotations", "val"), ("proposals", "train_proposals"),
                      ("exclusions", "val_exclusions")):
        first = ava.read_csv(ava_files[key], kind)
        again = ava.read_csv(ava.write_csv(first, tmp_path / f"{key}.csv", kind), kind)
        pd.testing.assert_frame_equal(first, again)
        assert (tmp_path / f"{key}.csv").read_bytes() == ava_files[key].read_bytes()
    pred = ava.read_csv(ava_files["train"]).rename(columns={"person_id": "score"}).assign(score=0.25)
    back = ava.read_csv(ava.write_csv(pred, tmp_path / "pred.csv", "predictions"), "predictions")
    pd.testing.assert_frame_equal(pred, back)
    assert ava.read_action_list(ava_files["action_list"])[1] == "square slides left"


def test_bad_files_fail_clearly(tmp_path):
    (tmp_path / "a.csv").write_text("vid,1,0.1,0.1,0.5,0.5,3\n")
    with pytest.raises(ava.AVAFormatError, match="7 columns"):
        ava.read_csv(tmp_path / "a.csv")
    (tmp_path / "b.csv").write_text("vid,1,0.6,0.1,0.5,0.5,3,0\n")
    with pytest.raises(ava.AVAFormatError, match=":1: box"):
        ava.read_csv(tmp_path / "b.csv")
    (tmp_path / "c.csv").write_text("")
    assert ava.read_csv(tmp_path / "c.csv").empty


def test_world_scenes_become_keyframes_with_truth_and_proposals(locdet_world, ava_files):
    train, val = ava.read_csv(ava_files["train"]), ava.read_csv(ava_files["val"])
    props = ava.read_proposals(ava_files["val_proposals"])
    assert set(train["video_id"]).isdisjoint(val["video_id"]) and len(train) and len(val)
    boxes = pd.read_parquet(locdet_world.root / "truth" / "boxes.parquet")
    fps = 8.0
    for r in train.head(10).itertuples():   # every ground-truth row is an acting actor's box at that frame
        b = boxes[(boxes["video_id"] == r.video_id) & (boxes["frame"] == round(r.timestamp * fps))
                  & (boxes["actor"] == r.person_id)].iloc[0]
        assert b["label_id"] + 1 == r.action_id and abs(b["x1"] - r.x1) < 1e-3
    # one proposal per actor per keyframe, near its box; still actors have proposals but no ground truth
    gt_keys = set(zip(train["video_id"], train["timestamp"]))
    assert gt_keys <= set(zip(props["video_id"], props["timestamp"]))
    assert len(props) > len(train) + len(val)
    assert props["score"].between(0.9, 1.0).all()


def test_detector_shapes_full_size_and_roi_pooling():
    full = build_detector(make_config("slowonly_ava")["model"])
    assert count_parameters(full) > 30_000_000 and full.num_classes == 80
    tiny = build_detector(make_config("slowonly_ava", tiny=True)["model"], num_classes=4)
    clips = torch.randn(2, 3, 8, 96, 96)
    rois = torch.tensor([[0, 0, 0, 48, 48], [1, 48, 48, 96, 96], [1, 10, 20, 30, 40]], dtype=torch.float32)
    assert tiny(clips, rois).shape == (3, 4) and tiny.backbone(clips).shape[-1] == 6     # stride-16 map
    head = RoIHead(in_channels=1, num_classes=1, output_size=2, dropout_ratio=0)
    feat = torch.zeros(1, 1, 2, 4, 4)
    feat[0, 0, :, 2:, 2:] = 1.0                  # a bright lower-right quadrant
    pooled = head.pool(feat, torch.tensor([[0, 0, 0, 8, 8], [0, 8, 8, 16, 16.]]), input_size=16)
    assert pooled[:, 0].tolist() == pytest.approx([0.0, 1.0])


def test_targets_follow_the_best_overlapping_box(locdet_world, ava_files):
    data = KeyframeData(ava_files, "train", 4, resolve_data({"data": {"size": 32, "pos_iou_thr": 0.5}}),
                        locdet_world.root)
    kf = next(k for k in data.keyframes if len(k.gt_boxes))
    y = data.targets(np.concatenate([kf.gt_boxes, [[0.0, 0.0, 0.01, 0.01]]]), kf)
    assert (y[:-1] == kf.gt_labels).all() and y[-1].sum() == 0
    clips, rois, targets, owners = data.batch(np.arange(3), train=True, rng=np.random.default_rng(0))
    assert clips.shape == (3, 3, 8, 32, 32) and rois.shape[1] == 5 and len(targets) == len(rois) == len(owners)


@pytest.mark.slow
def test_tiny_detector_beats_the_class_prior_on_the_demo_world(locdet_world, tmp_path):
    m = detection_demo(locdet_world.root, tmp_path)
    print(f"\ndetector on the demo world ({m['keyframes']} validation keyframes): frame-mAP@0.5 {m['frame_map']:.1f} "
          f"vs every proposal scored with the class prior {m['baseline_frame_map']:.1f}")
    assert m["frame_map"] > m["baseline_frame_map"] + 5
    history = [e for e in map(json.loads,
                              (tmp_path / "detector" / "metrics.jsonl").read_text().splitlines())]
    losses = [e["loss/loss"] for e in history if e["event"] == "train"]
    assert losses[-1] < losses[0]
    pred = ava.read_csv(tmp_path / "detector" / "predictions.csv", "predictions")
    assert len(pred) and pred["score"].between(0, 1).all() and set(pred["action_id"]) <= {1, 2, 3, 4}


@pytest.mark.slow
def test_cli_eval_ava_reads_back_a_trained_detector(locdet_world, ava_files, tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli

    ava_dir = ava_files["train"].parent
    r = CliRunner().invoke(cli, ["localize", "train-ava", str(ava_dir), "--data-root", str(locdet_world.root), "-o",
                                 str(tmp_path / "run"), "--tiny", "--set", "schedule.epochs=1",
                                 "--set", "data.size=48"])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(cli, ["localize", "eval-ava", str(tmp_path / "run" / "last.pt"), str(ava_dir),
                                 "--data-root", str(locdet_world.root), "-o", str(tmp_path / "eval")])
    assert r.exit_code == 0, r.output
    assert "frame_map" in r.output and "baseline_frame_map" in r.output
    trained = json.loads((tmp_path / "run" / "eval.json").read_text())
    again = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert again["frame_map"] == pytest.approx(trained["frame_map"], abs=1e-6)
    assert len(ava.read_csv(tmp_path / "eval" / "predictions.csv", "predictions")) == \
        len(ava.read_csv(tmp_path / "run" / "predictions.csv", "predictions"))
