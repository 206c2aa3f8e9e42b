"""Classification metrics as plain numpy functions (MMAction2's definitions), and the confusion-matrix picture."""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from curate.core.files import save_figure


def top_k_accuracy(scores: np.ndarray, labels: np.ndarray, ks: Sequence[int] = (1, 5)) -> list[float]:
    """For each k, the fraction of samples whose label is among their k highest scores (ties: lower index first)."""
    scores, labels = np.asarray(scores), np.asarray(labels)
    if len(labels) == 0:
        return [float("nan")] * len(ks)
    order = np.argsort(-scores, axis=1, kind="stable")
    return [float((order[:, :k] == labels[:, None]).any(axis=1).mean()) for k in ks]


def confusion_matrix(pred: np.ndarray, labels: np.ndarray, num_classes: int | None = None) -> np.ndarray:
    """counts[i, j] = samples of true class i predicted as j (classes 0..num_classes-1)."""
    pred, labels = np.asarray(pred, np.int64), np.asarray(labels, np.int64)
    n = int(num_classes if num_classes is not None else max(pred.max(initial=-1), labels.max(initial=-1)) + 1)
    cm = np.zeros((n, n), dtype=np.int64)
    np.add.at(cm, (labels, pred), 1)
    return cm


def mean_class_accuracy(pred: np.ndarray, labels: np.ndarray) -> float:
    """Mean over classes of per-class recall, over the union of true and predicted labels; a class that is only
    predicted (no true sample) counts 0 (MMAction2's mean_class_accuracy, FineGym's headline metric).
    `pred` may be class scores [N, C] (argmax taken) or predicted labels [N]."""
    pred, labels = np.asarray(pred), np.asarray(labels, np.int64)
    if pred.ndim == 2:
        pred = pred.argmax(axis=1)
    if len(labels) == 0:
        return float("nan")
    classes = np.union1d(labels, pred)
    per_class = [float(((pred == c) & (labels == c)).sum() / (labels == c).sum()) if (labels == c).any() else 0.0
                 for c in classes]
    return float(np.mean(per_class))


def per_class_accuracy(pred: np.ndarray, labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Recall of each class 0..num_classes-1 (nan where the class has no sample)."""
    cm = confusion_matrix(pred, labels, num_classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.diag(cm) / cm.sum(axis=1)


def level_accuracy(pred: np.ndarray, true_parent: np.ndarray, parent_of: Mapping[int, int]) -> float:
    """Accuracy one level up: predicted class -> its parent id (e.g. element -> set) compared with the true parent.
    Samples without a true parent (negative) are left out."""
    pred, true_parent = np.asarray(pred, np.int64), np.asarray(true_parent, np.int64)
    keep = true_parent >= 0
    if not keep.any():
        return float("nan")
    mapped = np.array([parent_of.get(int(p), -1) for p in pred[keep]])
    return float((mapped == true_parent[keep]).mean())


def plot_confusion(cm: np.ndarray, names: Sequence[str], path: str | Path, title: str = "") -> Path:
    """Row-normalised confusion matrix as a PNG (counts written in the cells when the matrix is small)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(cm)
    with np.errstate(invalid="ignore", divide="ignore"):
        norm = np.nan_to_num(cm / cm.sum(axis=1, keepdims=True))
    side = min(4 + 0.45 * n, 24)
    fig, ax = plt.subplots(figsize=(side, side * 0.9))
    im = ax.imshow(norm, cmap="Blues", vmin=0, vmax=1)
    if n <= 30:
        short = [s if len(s) <= 24 else s[:22] + ".." for s in map(str, names)]
        ax.set_xticks(range(n), short, rotation=60, ha="right", fontsize=8)
        ax.set_yticks(range(n), short, fontsize=8)
        for i in range(n):
            for j in range(n):
                if cm[i, j]:
                    ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if norm[i, j] > 0.5 else "black")
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(title or "confusion (rows normalised)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    return save_figure(fig, path, dpi=110)
