"""FineGym-format files from manifests (export) and from a hierarchy + timed segments (build), MMAction2 lists."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from curate.core import manifest as mf
from curate.core.files import write_text
from curate.formats import finegym as fg
from curate.formats import lists

ANNOTATION = "annotation.json"


def annotation_dict(events: pd.DataFrame, elements: pd.DataFrame) -> dict:
    """Manifests -> FineGym's nested JSON (video -> E_ key -> event, timestamps, segments with relative stages)."""
    kids = {eid: grp for eid, grp in elements.groupby("parent_id", sort=False)}
    data: dict[str, dict] = {}
    for ev in events.itertuples(index=False):
        start, end = float(ev.start_s), float(ev.end_s)
        segs = None
        if ev.item_id in kids:
            segs = {}
            for el in kids[ev.item_id].sort_values("start_s").itertuples(index=False):
                rel = [[round(a - start, 6), round(b - start, 6)] for a, b in json.loads(el.stages)]
                segs[fg.action_key(rel[0][0], rel[-1][1])] = {"stages": len(rel), "timestamps": rel}
        data.setdefault(ev.source_id, {})[fg.event_key(start, end)] = {
            "event": int(ev.event_id), "timestamps": [[start, end]], "segments": segs}
    return data


def write_categories(cats: fg.Categories, out: Path) -> list[Path]:
    """event/set lists, the full element list (Glabel lines) and one Clabel file per subset, FineGym's layout."""
    paths = [write_text(out / f"{kind}_categories.txt",
                          "".join(f"{kind}: {i}; {n}\n" for i, n in sorted(table.items())))
             for kind, table in (("event", cats.events), ("set", cats.sets))]
    if cats.full:
        paths.append(write_text(out / f"{cats.full}_categories.txt", "".join(
            f"Glabel: {g:3d}; set: {s:2d}; ({ev}) {n}\n" for g, (n, s, ev) in sorted(cats.elements.items()))))
    for name, table in sorted(cats.subsets.items()):
        lines = []
        for c, g in sorted(table.items()):
            n, s, ev = cats.elements[g]
            lines.append(f"Clabel: {c:3d}; set: {s:2d}; Glabel: {g:3d}; ({ev}) {n}\n")
        paths.append(write_text(out / f"{name}_categories.txt", "".join(lines)))
    return paths


def write_files(events: pd.DataFrame, elements: pd.DataFrame, cats: fg.Categories, out: str | Path) -> list[Path]:
    """The annotation JSON, category files and `<subset>_<split>_element.txt` split files under out."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths = [write_text(out / ANNOTATION, json.dumps(annotation_dict(events, elements)))]
    paths += write_categories(cats, out)
    return paths + _split_lists(elements, out, "{subset}_{{split}}_element.txt", "")


def mmaction_lists(elements: pd.DataFrame, out: str | Path, only_on_disk: bool = False) -> list[Path]:
    """MMAction2 video lists `<clip id>.mp4 <label>` per subset and split (`<subset>_<split>.txt`), their data prefix
    `gym/subactions` of the data root. The writer is curate.formats.lists.write_lists, which `curate export --to
    mmaction2 --subset NAME` also uses (same clips and labels; paths there are relative to the data root)."""
    keep = elements[elements["status"] == "ok"] if only_on_disk else elements
    return _split_lists(keep, Path(out), "{subset}_{{split}}.txt", ".mp4")


def _split_lists(elements: pd.DataFrame, out: Path, name: str, ext: str) -> list[Path]:
    """A file per subset and split (`name` formatted with subset, then split), a line `<clip><ext> <label>` per
    element of the subset (its `<subset>_label`, in its `<subset>_split`)."""
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for col in sorted(c for c in elements.columns if c.endswith("_split")):
        subset = col[: -len("_split")]
        rows = elements[elements[col].notna() & elements[f"{subset}_label"].notna()]
        paths += lists.write_lists(rows["clip_id"] + ext, rows[f"{subset}_label"], rows[col], out,
                                   name.format(subset=subset)).values()
    return paths


# ----------------------------------------------------------------------------------------------- build

def hierarchy_categories(tree: dict, name: str | None = None) -> fg.Categories:
    """A `hierarchy.json` tree (events, sets, elements with ids; the demo world writes one) -> Categories."""
    events = {int(e["id"]): str(e["name"]) for e in tree["events"]}
    sets = {int(s["id"]): str(s["name"]) for s in tree["sets"]}
    elements = {int(e["id"]): (str(e["name"]), int(e["set_id"]), events[int(e["event_id"])]) for e in tree["elements"]}
    return fg.Categories(events, sets, elements, {}, name or f"gym{len(elements)}")


def _column(df: pd.DataFrame, *names: str) -> str:
    found = next((n for n in names if n in df.columns), None)
    if found is None:
        raise fg.GymError([fg.Problem("table", f"needs one of the columns {list(names)}; has {list(df.columns)}")])
    return found


def build(tree: dict, events: pd.DataFrame, segments: pd.DataFrame, val_fraction: float = 0.3, seed: int = 0,
          name: str | None = None, min_count: int | None = None, source: str = "youtube",
          problems: list[fg.Problem] | None = None) -> tuple[pd.DataFrame, pd.DataFrame, fg.Categories, int]:
    """Hierarchy + events table (video, start_s, end_s, event id) + segments table (video, start_s, end_s,
    element id; optional `instance` grouping stage rows, optional `split`) -> (events, elements, categories,
    segments ignored because their video has no event). Splits are video-disjoint (a seeded `val_fraction`
    of the videos) unless the segments carry `split`; `min_count` adds a subset of the elements with at least
    that many train instances (like Gym99). Raises GymError with every problem (unless `problems` collects)."""
    collect = problems if problems is not None else []
    cats = hierarchy_categories(tree, name)
    vcol, ecol = _column(events, "video_id", "source_id"), _column(events, "event_id")
    svcol, scol = _column(segments, "video_id", "source_id"), _column(segments, "element_id", "label_id")
    data: dict[str, dict] = {}
    spans: dict[str, list[tuple[float, float, str]]] = {}
    for ev in events.sort_values([vcol, "start_s"]).itertuples(index=False):
        vid, start, end = str(getattr(ev, vcol)), float(ev.start_s), float(ev.end_s)
        key = fg.event_key(start, end)
        data.setdefault(vid, {})[key] = {"event": int(getattr(ev, ecol)), "timestamps": [[start, end]],
                                         "segments": None}
        spans.setdefault(vid, []).append((start, end, key))
    seg = segments[segments[svcol].astype(str).isin(spans)].copy()
    ignored = len(segments) - len(seg)
    group = seg["instance"] if "instance" in seg.columns else pd.Series(np.arange(len(seg)), index=seg.index)
    seg["_g"] = group.to_numpy()
    labels: dict[str, tuple[int, str | None]] = {}
    for (vid, _), grp in seg.sort_values("start_s").groupby([svcol, "_g"], sort=False):
        vid = str(vid)
        lo, hi = float(grp["start_s"].min()), float(grp["end_s"].max())
        host = [(s, e, k) for s, e, k in spans[vid] if s - fg.EPS <= lo and hi <= e + fg.EPS]
        if not host or grp[scol].nunique() != 1:
            why = "lies in no event of its video" if not host else "has stages with different element ids"
            collect.append(fg.Problem(f"segments: {vid} [{lo}, {hi}]", why))
            continue
        start, _, key = host[0]
        stages = [[round(a - start, 6), round(b - start, 6)] for a, b in zip(grp["start_s"], grp["end_s"])]
        akey = fg.action_key(stages[0][0], stages[-1][1])
        ev = data[vid][key]
        ev["segments"] = ev["segments"] or {}
        if akey in ev["segments"]:
            collect.append(fg.Problem(f"segments: {vid}/{key}/{akey}", "two elements truncate to the same id"))
            continue
        ev["segments"][akey] = {"stages": len(stages), "timestamps": stages}
        split = grp["split"].iloc[0] if "split" in grp.columns else None
        labels[f"{vid}_{key}_{akey}"] = (int(grp[scol].iloc[0]), split)
    data = fg.check_annotation(data, "built annotation", cats, collect)
    videos = sorted(data)
    n_val = int(round(val_fraction * len(videos))) if len(videos) > 1 else 0
    val = set(np.random.default_rng(seed).permutation(videos)[:n_val].tolist())
    split_rows: dict[tuple[str, str], list] = {}
    for clip, (g, split) in labels.items():
        split = split or ("val" if fg.parse_clip_id(clip)[0] in val else "train")
        split_rows.setdefault((cats.full, split), []).append((f"segments: {clip}", clip, g))
    if min_count:
        train = pd.Series([g for (_, s), rows in split_rows.items() if s == "train" for _, _, g in rows])
        kept = sorted(int(g) for g, n in train.value_counts().items() if n >= min_count)
        if 0 < len(kept) < len(cats.elements):
            sub = f"gym{len(kept)}"
            cats.subsets[sub] = dict(enumerate(kept))
            for (_, s), rows in list(split_rows.items()):
                split_rows[sub, s] = [(w, c, kept.index(g)) for w, c, g in rows if g in kept]
    ev_df, el_df = fg.to_manifests(data, cats, split_rows, collect, source)
    if problems is None and collect:
        raise fg.GymError(collect)
    return ev_df, el_df, cats, ignored


def read_table(path: str | Path) -> pd.DataFrame:
    """A CSV or Parquet table."""
    path = Path(path)
    return pd.read_parquet(path) if path.suffix in (".parquet", ".pq") else pd.read_csv(path)


def read_manifests(folder: str | Path) -> tuple[pd.DataFrame, pd.DataFrame, fg.Categories]:
    """events.parquet, elements.parquet and the categories stored in their metadata."""
    folder = Path(folder)
    meta = mf.read_metadata(folder / "elements.parquet")
    if "gym_categories" not in meta:
        raise fg.GymError([fg.Problem(str(folder / "elements.parquet"), "no gym_categories metadata "
                                                                         "(not written by curate gym)")])
    return (mf.read(folder / "events.parquet"), mf.read(folder / "elements.parquet"),
            fg.categories_from_json(meta["gym_categories"]))
