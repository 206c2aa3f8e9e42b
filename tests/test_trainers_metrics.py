"""Metrics on hand-computed cases, and the confusion-matrix picture."""
import numpy as np
import pytest

from trainers.metrics import (
    confusion_matrix,
    level_accuracy,
    mean_class_accuracy,
    per_class_accuracy,
    plot_confusion,
    top_k_accuracy,
)

SCORES = np.array([[0.1, 0.5, 0.4],    # true 2, predicted 1, 2 is second
                   [0.7, 0.2, 0.1],    # true 0, predicted 0
                   [0.2, 0.3, 0.5],    # true 1, predicted 2, 1 is second
                   [0.6, 0.3, 0.1]])   # true 0, predicted 0
LABELS = np.array([2, 0, 1, 0])


def test_top_k_accuracy_by_hand():
    top1, top2, top3 = top_k_accuracy(SCORES, LABELS, (1, 2, 3))
    assert top1 == 0.5 and top2 == 1.0 and top3 == 1.0
    assert top_k_accuracy(SCORES[:1], LABELS[:1], (1,)) == [0.0]


def test_mean_class_accuracy_by_hand():
    # class 0: 2/2, class 1: 0/1, class 2: 0/1 -> 1/3 (plain top-1 is 1/2)
    assert mean_class_accuracy(SCORES, LABELS) == pytest.approx(1 / 3)
    assert mean_class_accuracy(SCORES.argmax(1), LABELS) == pytest.approx(1 / 3)


def test_mean_class_accuracy_counts_a_predicted_only_class_as_zero():
    # MMAction2: union of true and predicted labels; class 2 is never true but predicted once -> contributes 0
    pred, labels = np.array([0, 2, 1]), np.array([0, 0, 1])
    assert mean_class_accuracy(pred, labels) == pytest.approx((0.5 + 1.0 + 0.0) / 3)
    # a class that is neither true nor predicted plays no part
    assert mean_class_accuracy(np.array([5, 5]), np.array([5, 5])) == 1.0


def test_confusion_matrix_and_per_class_accuracy_by_hand():
    cm = confusion_matrix(SCORES.argmax(1), LABELS, 4)
    expected = np.zeros((4, 4), int)
    expected[2, 1] = expected[1, 2] = 1
    expected[0, 0] = 2
    np.testing.assert_array_equal(cm, expected)
    acc = per_class_accuracy(SCORES.argmax(1), LABELS, 4)
    assert acc[:3].tolist() == [1.0, 0.0, 0.0] and np.isnan(acc[3])


def test_level_accuracy_maps_predictions_up_the_hierarchy():
    parent_of = {0: 11, 1: 11, 2: 21, 3: 21}
    # element predictions 0,1,2,3 -> sets 11,11,21,21; true sets 11,21,21,(none)
    assert level_accuracy(np.array([0, 1, 2, 3]), np.array([11, 21, 21, -1]), parent_of) == pytest.approx(2 / 3)
    # a wrong element of the right set still counts at set level
    assert level_accuracy(np.array([1]), np.array([11]), parent_of) == 1.0


def test_confusion_png_is_written(tmp_path):
    path = plot_confusion(confusion_matrix(SCORES.argmax(1), LABELS, 3), ["a", "b", "c" * 40], tmp_path / "cm.png")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
