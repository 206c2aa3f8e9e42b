"""AVA v2.2 spatio-temporal annotations as released: CSV files without a header, boxes normalised to 0..1.

| file (official name) | columns |
|---|---|
| annotations (`ava_{train,val}_v2.2.csv`) | video_id, timestamp, x1, y1, x2, y2, action_id, person_id |
| predictions | video_id, timestamp, x1, y1, x2, y2, action_id, score |
| proposals (person boxes per keyframe) | video_id, timestamp, x1, y1, x2, y2, score |
| excluded timestamps (`ava_{train,val}_excluded_timestamps_v2.2.csv`) | video_id, timestamp |
| action list (`ava_action_list_v2.2.pbtxt`) | `label { name: "..." label_id: N label_type: T }` blocks, ids from 1 |
| evaluated classes (`..._for_activitynet_2019.pbtxt`) | `item { name: "..." id: N }` blocks |

Timestamps are whole seconds written with 4 digits (`0902`). Proposals also come as the released pickle
(`ava_dense_proposals_{train,val}.FAIR.recall_93.9.pkl`: {"video_id,NNNN": float array [N, 5]}), read by an
unpickler that builds numpy arrays, dicts, lists, numbers and strings and nothing else. `from_world` turns the demo
world's scenes (truth/boxes.parquet) into these files: keyframes every `keyframe_s`, a ground-truth row per acting
actor, every actor's box jittered as a proposal, and keyframes where an action starts or ends within one frame
excluded as ambiguous.
"""
from __future__ import annotations

import csv
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from curate.core.files import FileFormatError, atomic_path, write_text
from curate.formats.numpy_pickle import load_numpy_pickle

BOX = ["x1", "y1", "x2", "y2"]
ANNOTATION_COLUMNS = ["video_id", "timestamp", *BOX, "action_id", "person_id"]
PREDICTION_COLUMNS = ["video_id", "timestamp", *BOX, "action_id", "score"]
PROPOSAL_COLUMNS = ["video_id", "timestamp", *BOX, "score"]
EXCLUSION_COLUMNS = ["video_id", "timestamp"]
KINDS = {"annotations": ANNOTATION_COLUMNS, "predictions": PREDICTION_COLUMNS, "proposals": PROPOSAL_COLUMNS,
         "exclusions": EXCLUSION_COLUMNS}
_INT = {"action_id", "person_id"}
LABEL_TYPES = ("PERSON_MOVEMENT", "OBJECT_MANIPULATION", "PERSON_INTERACTION")


class AVAFormatError(FileFormatError):
    """A file that does not hold what its AVA kind holds; the message names the file and line (or key)."""


def _dtype(col: str) -> str:
    return "str" if col == "video_id" else "int64" if col in _INT else "float64"


def _bad_boxes(b: np.ndarray) -> np.ndarray:
    """Rows of [n, 4] boxes that are not finite, inside 0..1 and ordered x1 <= x2, y1 <= y2."""
    return ~(np.isfinite(b) & (b >= 0) & (b <= 1)).all(axis=1) | (b[:, 0] > b[:, 2]) | (b[:, 1] > b[:, 3])


def _line_of(path: Path, index: int | None, width: int) -> tuple[int, int] | None:
    """(line, columns) of the data row `index` (blank lines skipped), or of the first row without `width` columns."""
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        for k, row in enumerate(row for row in reader if row):
            if k == index or (index is None and len(row) != width):
                return reader.line_num, len(row)
    return None


def read_csv(path: str | Path, kind: str = "annotations") -> pd.DataFrame:
    """One of the KINDS of file, typed and checked (boxes inside 0..1 with x1 <= x2, y1 <= y2); a bad row is
    named by its line (looked up again with the csv module, so good files are read at pandas' speed)."""
    cols = KINDS[kind]
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    try:
        df, error = pd.read_csv(path, header=None, dtype=str, keep_default_na=False, skip_blank_lines=True), None
    except pd.errors.EmptyDataError:
        df, error = pd.DataFrame(columns=cols, dtype=str), None
    except pd.errors.ParserError as exc:
        df, error = None, exc
    # a short row comes back padded with empty strings, a long one as a ParserError
    if df is None or df.shape[1] != len(cols) or (df == "").to_numpy().any():
        width = _line_of(path, None, len(cols))
        if width:
            raise AVAFormatError(f"{path}:{width[0]}: {width[1]} columns, an AVA {kind} row has {len(cols)}: "
                                 f"{', '.join(cols)}")
        if df is None:
            raise AVAFormatError(f"{path}: not a CSV file ({error})")
    df.columns = cols

    def fail(bad: np.ndarray, column: str | None, what: str) -> None:
        if bad.any():
            i = int(np.flatnonzero(bad)[0])
            value = f"{column} {df[column].iloc[i]!r} " if column else ""
            raise AVAFormatError(f"{path}:{_line_of(path, i, len(cols))[0]}: {value}{what}")

    fail((df["video_id"] == "").to_numpy(), "video_id", "is empty")
    for c in cols[1:]:
        num = pd.to_numeric(df[c], errors="coerce")
        fail(~np.isfinite(num.to_numpy(float)) | ((num % 1 != 0).to_numpy() if c in _INT else False), c,
             f"is not {'an integer' if c in _INT else 'a number'}")
        df[c] = num.astype(_dtype(c))
    if "x1" in df and len(df):
        fail(_bad_boxes(df[BOX].to_numpy()), None, "box is not normalised x1<=x2, y1<=y2")
    return df


def _timestamps(ts: pd.Series) -> pd.Series:
    """AVA's 4-digit whole seconds when every timestamp is whole (official files), else the shortest decimal."""
    whole = bool((ts % 1 == 0).all())
    return ts.map(lambda v: f"{int(v):04d}") if whole else ts.map(lambda v: f"{v:g}")


def write_csv(df: pd.DataFrame, path: str | Path, kind: str = "annotations") -> Path:
    """Write atomically in AVA's layout (no header, 4-digit whole-second timestamps, boxes / scores with 3 / 6
    decimals)."""
    cols = KINDS[kind]
    missing = [c for c in cols if c not in df]
    if missing:
        raise AVAFormatError(f"cannot write {kind}: missing column(s) {missing}")
    out = df[cols].copy()
    for c in BOX if "x1" in out else ():
        out[c] = out[c].map(lambda v: f"{v:.3f}")
    out["timestamp"] = _timestamps(out["timestamp"])
    if "score" in out:
        out["score"] = out["score"].map(lambda v: f"{v:.6f}")
    with atomic_path(path) as tmp:
        out.to_csv(tmp, header=False, index=False)
    return Path(path)


# ------------------------------------------------------------------------------------------ label maps (pbtxt)

@dataclass(frozen=True)
class ActionClass:
    id: int
    name: str
    label_type: str | None = None


_TOKEN = re.compile(r'(?P<space>\s+|#[^\n]*)|(?P<word>[A-Za-z_]\w*)|(?P<punct>[:{}])|"(?P<str>(?:[^"\\\n]|\\.)*)"'
                    r'|(?P<int>-?\d+)')
_FIELDS = {"name": "str", "label_id": "int", "id": "int", "label_type": "word"}
_KIND_NAMES = {"str": "a quoted string", "int": "an integer", "word": "a name"}


def _tokens(text: str, path: Path) -> list[tuple[str, str, int]]:
    out, pos, line = [], 0, 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise AVAFormatError(f"{path}:{line}: unexpected {text[pos]!r}")
        if m.lastgroup != "space":
            out.append((m.lastgroup, m.group(m.lastgroup), line))
        line += m.group(0).count("\n")
        pos = m.end()
    return out


def read_label_map(path: str | Path) -> list[ActionClass]:
    """The classes of an action list: `label { name label_id label_type }` (80 classes) or `item { name id }`
    (the 60 evaluated ones) blocks, in file order."""
    path = Path(path)
    toks = _tokens(path.read_text(encoding="utf-8"), path)
    classes: list[ActionClass] = []
    k = 0

    def take(kind: str, value: str | None = None) -> str:
        nonlocal k
        got = toks[k] if k < len(toks) else ("end", "end of file", toks[-1][2] if toks else 1)
        if got[0] != kind or (value is not None and got[1] != value):
            raise AVAFormatError(f"{path}:{got[2]}: expected {value or _KIND_NAMES[kind]}, got {got[1]!r}")
        k += 1
        return got[1]

    while k < len(toks):
        line = toks[k][2]
        block = take("word")
        if block not in ("label", "item"):
            raise AVAFormatError(f"{path}:{line}: expected a 'label' or 'item' block, got {block!r}")
        if k < len(toks) and toks[k][1] == ":":
            take("punct", ":")
        take("punct", "{")
        fields: dict[str, str] = {}
        while k < len(toks) and toks[k][1] != "}":
            at = toks[k][2]
            key = take("word")
            if key not in _FIELDS:
                raise AVAFormatError(f"{path}:{at}: unknown field {key!r} (known: {', '.join(_FIELDS)})")
            take("punct", ":")
            fields[key] = take(_FIELDS[key])
        take("punct", "}")
        ids = [fields[f] for f in ("label_id", "id") if f in fields]
        if "name" not in fields or len(ids) != 1:
            raise AVAFormatError(f"{path}:{line}: a {block} block needs a name and one label_id (or id)")
        if fields.get("label_type", LABEL_TYPES[0]) not in LABEL_TYPES:
            raise AVAFormatError(f"{path}:{line}: label_type {fields['label_type']} is not one of {LABEL_TYPES}")
        if int(ids[0]) < 1 or any(c.id == int(ids[0]) for c in classes):
            raise AVAFormatError(f"{path}:{line}: id {ids[0]} is below 1 or listed twice")
        classes.append(ActionClass(int(ids[0]), fields["name"], fields.get("label_type")))
    return classes


def read_action_list(path: str | Path) -> dict[int, str]:
    """action_id -> name from a pbtxt label map."""
    return {c.id: c.name for c in read_label_map(path)}


def write_label_map(classes: list[ActionClass], path: str | Path, block: str = "label") -> Path:
    """`label` blocks (name, label_id, label_type when set) as in the 80-class file, or `item` blocks (name, id)."""
    key = "label_id" if block == "label" else "id"
    text = "".join(f'{block} {{\n  name: "{c.name}"\n  {key}: {c.id}\n'
                   + (f"  label_type: {c.label_type}\n" if c.label_type and block == "label" else "") + "}\n"
                   for c in classes)
    return write_text(path, text)


# ------------------------------------------------------------------------------------------ proposals (pickle)

def read_proposals_pickle(path: str | Path) -> pd.DataFrame:
    """The released proposals pickle ({"video_id,NNNN": [N, 5] x1, y1, x2, y2, score}; 4 columns mean score 1)
    as a proposals table."""
    path = Path(path)
    data = load_numpy_pickle(path)
    if not isinstance(data, dict):
        raise AVAFormatError(f"{path}: expected a dict keyed 'video_id,timestamp', got {type(data).__name__}")
    keys, arrays = [], []
    for key, value in data.items():
        vid, _, ts = str(key).rpartition(",")
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError) as exc:
            raise AVAFormatError(f"{path}: key {key!r}: not an array of numbers ({exc})") from exc
        if not vid or not ts.isdigit() or arr.ndim != 2 or arr.shape[1] not in (4, 5):
            raise AVAFormatError(f"{path}: key {key!r}: expected 'video_id,NNNN' -> an [N, 5] (or [N, 4]) array, "
                                 f"got shape {arr.shape}")
        keys.append((key, vid, float(ts)))
        arrays.append(arr if arr.shape[1] == 5 else np.column_stack([arr, np.ones(len(arr))]))
    counts = [len(a) for a in arrays]
    boxes = np.concatenate(arrays) if arrays else np.zeros((0, 5))
    bad = _bad_boxes(boxes[:, :4]) | ~np.isfinite(boxes[:, 4])
    if bad.any():
        key = keys[int(np.searchsorted(np.cumsum(counts), np.flatnonzero(bad)[0], side="right"))][0]
        raise AVAFormatError(f"{path}: key {key!r}: a box is not normalised x1<=x2, y1<=y2 inside 0..1")
    return pd.DataFrame({"video_id": np.repeat(np.array([k[1] for k in keys], dtype=object), counts),
                         "timestamp": np.repeat(np.array([k[2] for k in keys], dtype=np.float64), counts),
                         **dict(zip(BOX, boxes[:, :4].T)), "score": boxes[:, 4]})


def read_proposals(path: str | Path) -> pd.DataFrame:
    """Person proposals from the released pickle (`.pkl`) or a proposals CSV."""
    return read_proposals_pickle(path) if Path(path).suffix in (".pkl", ".pickle") else read_csv(path, "proposals")


# ------------------------------------------------------------------------------------------ a folder of files

_V = ("v2.2", "v2.1")
NAMES = {   # what find_files looks for, in order: the official names (v2.2, then v2.1), then the demo world's
    **{s: (*(f"ava_{s}_{v}.csv" for v in _V), f"{s}.csv") for s in ("train", "val")},
    **{f"{s}_proposals": (f"ava_dense_proposals_{s}.FAIR.recall_93.9.pkl", "proposals.csv") for s in ("train", "val")},
    **{f"{s}_exclusions": (*(f"ava_{s}_excluded_timestamps_{v}.csv" for v in _V), "exclusions.csv")
       for s in ("train", "val")},
    "action_list": ("ava_action_list_v2.2.pbtxt", "ava_action_list_v2.1.pbtxt",
                    "ava_action_list_v2.2_for_activitynet_2019.pbtxt", "ava_action_list_v2.1_for_activitynet_2018.pbtxt",
                    "action_list.pbtxt"),
    "evaluated": ("ava_action_list_v2.2_for_activitynet_2019.pbtxt", "ava_action_list_v2.1_for_activitynet_2018.pbtxt"),
    "videos": ("videos.parquet", "videos.csv"),
}
TRAINING = ("train", "val", "train_proposals", "val_proposals", "action_list", "videos")
VIDEO_COLUMNS = ["video_id", "path", "fps", "frames", "subset"]


def find_files(folder: str | Path, need: tuple[str, ...] = TRAINING) -> dict[str, Path]:
    """key of NAMES -> the first of its names present in folder; FileNotFoundError when a key of `need` has none."""
    folder = Path(folder)
    found = {k: next((folder / n for n in names if (folder / n).exists()), None) for k, names in NAMES.items()}
    missing = [f"{k} ({' or '.join(NAMES[k])})" for k in need if found[k] is None]
    if missing:
        raise FileNotFoundError(f"{folder}: no {'; no '.join(missing)}")
    return {k: p for k, p in found.items() if p is not None}


def read_videos(path: str | Path) -> pd.DataFrame:
    """video_id, path, fps, frames, subset of the videos a detector decodes: a videos.csv, or the usable rows of a
    manifest from `curate import ava` once `curate probe` has measured them."""
    path = Path(path)
    if path.suffix != ".parquet":
        df = pd.read_csv(path, dtype={"video_id": str})
        if set(VIDEO_COLUMNS) - set(df.columns):
            raise AVAFormatError(f"{path}: expected the columns {VIDEO_COLUMNS}, got {list(df.columns)}")
        return df[VIDEO_COLUMNS]
    from curate.core import manifest as mf

    rows, _ = mf.usable_rows(mf.read(path))
    if (rows["fps"].isna() | rows["frames"].isna()).any():
        raise AVAFormatError(f"{path}: videos without fps / frame count: run `curate probe {path}` first")
    return pd.DataFrame({"video_id": rows["source_id"], "path": rows["path"], "fps": rows["fps"].astype(float),
                         "frames": rows["frames"].astype(int), "subset": rows["split"]})


def import_folder(folder: str | Path, video_root: str | Path | None = None) -> tuple[pd.DataFrame, dict[str, Any]]:
    """Check every AVA file in folder and list its movies as a manifest (source youtube, split train / val; `ok`
    when `<id>.*` lies directly under video_root). Returns (manifest, counts per split: rows, keyframes, boxes,
    excluded and proposal keyframes; `classes` and `evaluated`: the sizes of the two action lists)."""
    from curate.core import manifest as mf
    from curate.formats.local import by_stem, located

    files = find_files(folder, need=("train", "val"))
    classes = {c.id for c in read_label_map(files["action_list"])} if "action_list" in files else set()
    counts: dict[str, Any] = {"classes": len(classes),
                              "evaluated": len(read_label_map(files["evaluated"])) if "evaluated" in files else 0}
    root = Path(video_root) if video_root else None
    stems = by_stem(root) if root else {}
    rows = []
    for split in ("train", "val"):
        ann = read_csv(files[split])
        unknown = sorted(set(ann["action_id"]) - classes) if classes else []
        if unknown:
            raise AVAFormatError(f"{files[split]}: action_id {unknown[0]} is not in {files['action_list'].name}")
        excl = read_csv(files[f"{split}_exclusions"], "exclusions") if f"{split}_exclusions" in files else ann[:0]
        props = read_proposals(files[f"{split}_proposals"]) if f"{split}_proposals" in files else ann[:0]
        counts[split] = {"rows": len(ann), "keyframes": len(ann.drop_duplicates(["video_id", "timestamp"])),
                         "boxes": len(ann.drop_duplicates(["video_id", "timestamp", *BOX])), "excluded": len(excl),
                         "proposal keyframes": len(props.drop_duplicates(["video_id", "timestamp"]))}
        for vid in sorted(set(ann["video_id"])):
            rows.append({"item_id": mf.item_id("youtube", vid), "source": "youtube", "source_id": vid,
                         "url": f"https://www.youtube.com/watch?v={vid}", "split": split, "media": "video",
                         **located(root, stems.get(vid), f"{vid}.*")})
    return mf.from_records(rows), counts


# ------------------------------------------------------------------------------------------ the demo world

def split_videos(ids: list[str], val_fraction: float, seed: int) -> dict[str, str]:
    """video -> 'train' / 'val': the round(n * val_fraction) ids first in a seeded hash order are val."""
    order = sorted(ids, key=lambda k: hashlib.sha256(f"{seed}:{k}".encode()).hexdigest())
    n_val = int(round(len(ids) * val_fraction))
    return {k: "val" if i < n_val else "train" for i, k in enumerate(order)}
def from_world(world_root: str | Path, out: str | Path, keyframe_s: float = 0.25, jitter: float = 0.06,
               val_fraction: float = 0.3, margin_frames: int = 4, seed: int = 0) -> dict[str, Path]:
    """AVA files for the demo world's scenes under out/: train.csv, val.csv, proposals.csv, exclusions.csv,
    action_list.pbtxt, videos.csv (video_id, path, fps, frames, subset). Keyframes lie at least margin_frames
    from either end of the video; they are denser than AVA's 1 Hz because the world's scenes last 6 s."""
    root, out = Path(world_root), Path(out)
    web = pd.read_parquet(root / "truth" / "web.parquet")
    boxes = pd.read_parquet(root / "truth" / "boxes.parquet")
    classes = json.loads((root / "world.json").read_text())["classes"]
    scenes = web[(web["kind"] == "scene") & (web["status"] == "ok")].sort_values("source_id")
    rng = np.random.default_rng([seed, 11])
    subsets = split_videos(scenes["source_id"].tolist(), val_fraction, seed)
    gt, props, excl, videos = [], [], [], []
    for sc in scenes.itertuples():
        vid, fps, n = sc.source_id, float(sc.fps), int(sc.frames)
        subset = subsets[vid]
        videos.append({"video_id": vid, "path": sc.path, "fps": fps, "frames": n, "subset": subset})
        vb = boxes[boxes["video_id"] == vid].set_index(["frame", "actor"]).sort_index()
        step = max(1, int(round(keyframe_s * fps)))
        for f in range(margin_frames, n - margin_frames, step):
            t = round(f / fps, 6)
            here = vb.loc[f] if f in vb.index.get_level_values(0) else None
            if here is None:
                continue
            ambiguous = False
            for actor, r in here.iterrows():
                near = [vb.loc[(g, actor), "label_id"] for g in (f - 1, f + 1) if (g, actor) in vb.index]
                ambiguous |= any(x != r["label_id"] for x in near)
                box = np.array([r[c] for c in BOX])
                if r["label_id"] >= 0:
                    gt.append({"video_id": vid, "timestamp": t, **dict(zip(BOX, box)),
                               "action_id": int(r["label_id"]) + 1, "person_id": int(actor), "subset": subset})
                wh = np.tile(box[2:] - box[:2], 2)
                jb = np.clip(box + rng.normal(0, jitter, 4) * wh, 0, 1)
                jb = np.concatenate([np.minimum(jb[:2], jb[2:]), np.maximum(jb[:2], jb[2:])])
                props.append({"video_id": vid, "timestamp": t, **dict(zip(BOX, jb)),
                              "score": float(rng.uniform(0.9, 1.0))})
            if ambiguous:
                excl.append({"video_id": vid, "timestamp": t})
    out.mkdir(parents=True, exist_ok=True)
    gt_df = pd.DataFrame(gt, columns=[*ANNOTATION_COLUMNS, "subset"])
    for s in ("train", "val"):
        write_csv(gt_df[gt_df["subset"] == s], out / f"{s}.csv")
    write_csv(pd.DataFrame(props, columns=PROPOSAL_COLUMNS), out / "proposals.csv", "proposals")
    write_csv(pd.DataFrame(excl, columns=EXCLUSION_COLUMNS), out / "exclusions.csv", "exclusions")
    write_label_map([ActionClass(i, name) for i, name in enumerate(classes, 1)], out / "action_list.pbtxt")
    pd.DataFrame(videos).to_csv(out / "videos.csv", index=False)
    return find_files(out)
