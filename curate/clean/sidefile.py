"""The side file of a scored manifest (OUT.emb.parquet): per (item_id, teacher_sha) the penultimate embedding and the
class probabilities over the manifest's label ids (what label issues, relabels and the review page read).

Bulky per-row vectors live here rather than in the manifest: a 400-class probability vector is 1.6 KB a row.
Files written before the probabilities were stored have no `probs` column; their rows read back as having none.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from curate.core.files import atomic_path

EMB_SCHEMA = pa.schema([("item_id", pa.string()), ("teacher_sha", pa.string()), ("embedding", pa.list_(pa.float32())),
                        ("probs", pa.list_(pa.float32()))])


def _rows(path: Path) -> dict[tuple[str, str], dict]:
    if not path.exists():
        return {}
    rows = pq.read_table(path).to_pylist()
    return {(r["item_id"], r["teacher_sha"]): {"embedding": r["embedding"], "probs": r.get("probs")} for r in rows}


def read_embeddings(path: str | Path, teacher_sha: str | None = None) -> dict[str, np.ndarray]:
    """{item_id: embedding} from a side file (only those of one checkpoint when teacher_sha is given)."""
    return {i: np.asarray(v["embedding"], np.float32) for (i, s), v in _rows(Path(path)).items()
            if teacher_sha is None or s == teacher_sha}


def read_probs(path: str | Path) -> dict[tuple[str, str], np.ndarray]:
    """{(item_id, teacher_sha): class probabilities over the manifest's label ids} for the rows that have them."""
    return {k: np.asarray(v["probs"], np.float32) for k, v in _rows(Path(path)).items() if v["probs"] is not None}


def write_embeddings(path: str | Path, teacher_sha: str, new: Mapping[str, np.ndarray],
                     probs: Mapping[str, np.ndarray] | None = None) -> None:
    """Upsert {item_id: embedding} (and {item_id: probabilities}) of one checkpoint into the side file, atomically."""
    path = Path(path)
    rows = _rows(path)
    probs = probs or {}
    for i, v in new.items():
        p = probs.get(i)
        rows[(i, teacher_sha)] = {"embedding": np.asarray(v, np.float32).tolist(),
                                  "probs": None if p is None else np.asarray(p, np.float32).tolist()}
    table = pa.table({"item_id": [k[0] for k in rows], "teacher_sha": [k[1] for k in rows],
                      "embedding": [r["embedding"] for r in rows.values()],
                      "probs": [r["probs"] for r in rows.values()]}, schema=EMB_SCHEMA)
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd")
