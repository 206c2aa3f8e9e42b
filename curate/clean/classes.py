"""Teacher classes <-> manifest labels: matched by name, or through a mapping file (teacher class -> manifest class,
by name or index)."""
from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import yaml


def class_key(name: str) -> str:
    """A class name as matching sees it: case, spaces, underscores and hyphens ignored."""
    return re.sub(r"[\s_\-]+", " ", str(name)).strip().lower()


@dataclass(frozen=True)
class ClassMatch:
    """Teacher class index <-> manifest label id."""

    to_teacher: dict[int, int]          # manifest label id -> teacher class index
    to_label: np.ndarray                # teacher class index -> manifest label id (-1: no such class here)
    unmatched_labels: tuple[str, ...]   # manifest classes the teacher does not know (their rows are not scored)
    unmatched_teacher: tuple[str, ...]  # teacher classes with no manifest class (predictions there mismatch)


def read_mapping(path: str | Path) -> dict[str, str]:
    """A JSON or YAML mapping {teacher class name or index: manifest class name or label id}."""
    data = yaml.safe_load(Path(path).read_text())
    if not isinstance(data, Mapping):
        raise ValueError(f"{path}: a class mapping must be a mapping of teacher class -> manifest class")
    return {str(k): str(v) for k, v in data.items()}


def match_classes(teacher_classes: list[str], labels: Mapping[int, str],
                  mapping: Mapping[str, str] | None = None) -> ClassMatch:
    """Match by normalised name (case, spaces, '_' and '-' ignored), or through `mapping` when given."""
    by_name = {class_key(n): i for i, n in enumerate(teacher_classes)}
    label_by_name = {class_key(n): int(i) for i, n in labels.items()}
    to_label = np.full(len(teacher_classes), -1, np.int64)
    if mapping:
        for k, v in mapping.items():
            t = int(k) if k.lstrip("-").isdigit() else by_name.get(class_key(k))
            lab = int(v) if v.lstrip("-").isdigit() else label_by_name.get(class_key(v))
            if t is None or not 0 <= t < len(teacher_classes):
                raise ValueError(f"class mapping: {k!r} is not a teacher class")
            if lab is None or lab not in labels:
                raise ValueError(f"class mapping: {v!r} is not a class of the manifest")
            to_label[t] = lab
    else:
        for name, t in by_name.items():
            to_label[t] = label_by_name.get(name, -1)
    to_teacher = {int(lab): int(t) for t, lab in enumerate(to_label) if lab >= 0}
    return ClassMatch(to_teacher, to_label,
                      tuple(sorted(n for i, n in labels.items() if int(i) not in to_teacher)),
                      tuple(teacher_classes[t] for t in np.flatnonzero(to_label < 0)))


def manifest_classes(df: pd.DataFrame) -> dict[int, str]:
    """label id -> class name, from the rows that carry both."""
    known = df[df["label_id"].notna() & df["label"].notna()]
    return {int(k): str(v) for k, v in known.groupby("label_id")["label"].first().items()}
