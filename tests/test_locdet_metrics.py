"""Localization / detection metrics against hand-computed cases (AR@AN, AUC, tIoU mAP, frame-mAP)."""
import math

import numpy as np
import pytest

from trainers.loc_metrics import (
    TIOU_THRESHOLDS,
    average_recall,
    box_iou,
    frame_map,
    interpolated_ap,
    segment_iou,
    temporal_map,
)


def test_ious():
    assert segment_iou([[0, 10]], [[5, 15], [20, 30], [0, 10]]).tolist() == [[5 / 15, 0.0, 1.0]]
    assert box_iou([[0, 0, 2, 2]], [[1, 1, 3, 3], [0, 0, 2, 2]]).tolist() == [[1 / 7, 1.0]]
    assert segment_iou(np.zeros((0, 2)), [[0, 1]]).shape == (0, 1)
    assert list(TIOU_THRESHOLDS) == [0.5, 0.55, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85, 0.9, 0.95]


def test_interpolated_ap_envelope():
    # hits at ranks 1 and 3 of 2 positives: precision envelope 1 up to recall .5, 2/3 up to recall 1
    assert interpolated_ap([1, 0, 1], 2) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert interpolated_ap([], 3) == 0.0
    assert math.isnan(interpolated_ap([0, 1], 0))


def test_ar_at_an_single_video():
    gt = {"a": np.array([[0, 10]])}
    props = {"a": np.array([[20, 30, 0.9], [0, 8, 0.8]])}     # the second one has tIoU 0.8
    r = average_recall(gt, props, max_avg_proposals=2)
    assert r["an"].tolist() == [1.0, 2.0]
    assert r["ar"].tolist() == pytest.approx([0.0, 0.7])      # recalled at 0.50..0.80: 7 of 10 thresholds
    assert r["auc"] == pytest.approx((0.0 + 0.7) / 2 * 1 / 2 * 100)
    assert r["AR@1"] == 0.0


def test_ar_budget_scales_with_each_videos_proposal_count():
    gt = {"a": np.array([[0, 1]]), "b": np.array([[0, 1]])}
    props = {"a": np.array([[0, 1, 0.5]]),
             "b": np.array([[5, 6, 0.9], [0, 1, 0.8], [2, 3, 0.7]])}
    r = average_recall(gt, props, max_avg_proposals=2)
    # 4 proposals over 2 videos: AN=1 keeps half of each list (0 of a, 1 of b), AN=2 keeps everything
    assert r["an"].tolist() == [1.0, 2.0]
    assert r["ar"].tolist() == pytest.approx([0.0, 1.0])


def test_ar_empty_predictions_and_no_ground_truth():
    gt = {"a": np.array([[0, 10]])}
    r = average_recall(gt, {}, max_avg_proposals=100)
    assert r["auc"] == 0.0 and r["AR@100"] == 0.0
    r = average_recall({}, {"a": np.array([[0, 1, 1.0]])})
    assert math.isnan(r["auc"]) and np.isnan(r["ar"]).all()


def test_temporal_map_hand_case():
    gt = [("v", 0, 10, 0), ("v", 20, 30, 0), ("w", 0, 5, 1)]
    det = [("v", 0, 10, 0, 0.9), ("v", 1, 10, 0, 0.8), ("v", 20, 29, 0, 0.7), ("v", 40, 50, 2, 0.99)]
    r = temporal_map(gt, det)
    # class 0: [hit, duplicate of an already matched segment, hit] up to tIoU 0.9; at 0.95 only the first hits
    assert r["ap"][:9, 0] == pytest.approx([0.5 + 0.5 * 2 / 3] * 9)
    assert r["ap"][9, 0] == pytest.approx(0.5)
    assert (r["ap"][:, 1] == 0).all()                 # class 1: ground truth, no detections
    assert np.isnan(r["ap"][:, 2]).all()              # class 2: detections, no ground truth -> left out
    assert r["map"][0] == pytest.approx((5 / 6 + 0) / 2)
    assert r["average_map"] == pytest.approx((9 * 5 / 6 + 0.5) / 10 / 2)
    assert math.isnan(temporal_map([], det)["average_map"])
    assert temporal_map(gt, [])["average_map"] == 0.0


def test_frame_map_hand_case():
    gt = [("v", 1, 0, 0, .5, .5, 1), ("v", 1, .5, .5, 1, 1, 1), ("v", 2, 0, 0, 1, 1, 2)]
    det = [("v", 1, 0, 0, .5, .5, 1, 0.9),
           ("v", 1, 0, 0, .5, .45, 1, 0.8),     # best overlap is the box already matched: a false positive
           ("v", 1, .5, .5, 1, .9, 1, 0.3),     # IoU 0.8 with the second box
           ("v", 2, 0, 0, .1, .1, 2, 0.5)]      # IoU 0.01: a miss
    r = frame_map(gt, det)
    assert r["ap"][1] == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert r["ap"][2] == 0.0
    assert r["map"] == pytest.approx((5 / 6) / 2)
    # excluding keyframe 2 drops class 2's only box: that class leaves the mean
    r = frame_map(gt, det, excluded={("v", 2)}, classes=[1, 2])
    assert math.isnan(r["ap"][2]) and r["map"] == pytest.approx(5 / 6)
    assert frame_map(gt, [])["map"] == 0.0
    assert math.isnan(frame_map([], det)["map"])
