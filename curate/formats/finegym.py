"""FineGym v1.0/v1.1 annotation formats: ids, category files, split files and the temporal JSON -> manifests.

The category files and the official split files of v1.0 and v1.1 ship with curate (`SHIPPED`, the split lists
gzipped): an annotation JSON is all a user brings. Two manifests come out: **events** (one row per action instance
in a source video) and **elements** (one row per sub-action, `parent_id` = its event, stages in absolute seconds,
element/set/event labels and one `<subset>_label` / `<subset>_split` pair per benchmark subset such as gym99 /
gym288). Every reader collects `Problem`s instead of stopping at the first; `read_annotations` raises `GymError`
holding all of them. `subset_rows` turns the elements into a benchmark task (Gym99 / Gym288 label ids and splits).
"""
from __future__ import annotations

import gzip
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from curate.core import manifest as mf
from curate.formats import DATA

SHIPPED = DATA / "finegym"   # set/gym99/gym288/gym530 categories, gym99/gym288 split files (v1.0, v1.1, val)

VIDEO_ID = re.compile(r"[A-Za-z0-9_-]+")
EVENT_KEY = re.compile(r"E_(\d{6})_(\d{6})")
ACTION_KEY = re.compile(r"A_(\d{4})_(\d{4})")
CLIP_ID = re.compile(r"(?P<video>[A-Za-z0-9_-]+)_(?P<event>E_\d{6}_\d{6})_(?P<action>A_\d{4}_\d{4})")
SUBSET_LINE = re.compile(r"Clabel:\s*(\d+);\s*set:\s*(\d+);\s*Glabel:\s*(\d+);\s*\(([^)]+)\)\s?(.*)")
FULL_LINE = re.compile(r"Glabel:\s*(\d+);\s*set:\s*(\d+);\s*\(([^)]+)\)\s?(.*)")
LIST_LINE = re.compile(r"(set|event):\s*(\d+);\s*(.*)")
SPLIT_FILE = re.compile(r"(?P<subset>\w+?)_(?P<split>train|val|test)_element(?:_(?P<version>v[\d.]+))?\.txt(?:\.gz)?")
# FineGym's JSON numbers the women's apparatus 1..4; the order of the six men's events (5..10) is not published.
DEFAULT_EVENTS = {1: "VT", 2: "FX", 3: "BB", 4: "UB", **{i: f"men_{i}" for i in range(5, 11)}}
EPS = 1e-3  # annotation precision (ms)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an annotation file: where (file:line or file: key path) and what."""

    where: str
    message: str

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


class GymError(ValueError):
    """Annotation files with problems; `problems` lists every one, the message shows the first 30."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        shown = "\n  ".join(map(str, problems[:30]))
        more = f"\n  ... and {len(problems) - 30} more" if len(problems) > 30 else ""
        super().__init__(f"{len(problems)} annotation problem(s):\n  {shown}{more}")


@dataclass
class Categories:
    """The class lists: event id -> name, set id -> name, Glabel -> (name, set id, event name), subsets."""

    events: dict[int, str] = field(default_factory=lambda: dict(DEFAULT_EVENTS))
    sets: dict[int, str] = field(default_factory=dict)
    elements: dict[int, tuple[str, int, str]] = field(default_factory=dict)
    subsets: dict[str, dict[int, int]] = field(default_factory=dict)  # subset -> Clabel -> Glabel
    full: str | None = None  # name of the full element list (gym530), whose split labels are Glabels

    def event_id(self, name: str) -> int | None:
        return next((i for i, n in self.events.items() if n == name), None)


# ----------------------------------------------------------------------------------------------- ids

def event_key(start_s: float, end_s: float) -> str:
    """`E_XXXXXX_YYYYYY` from absolute event seconds (truncated, as FineGym does)."""
    return f"E_{int(start_s):06d}_{int(end_s):06d}"


def action_key(rel_start_s: float, rel_end_s: float) -> str:
    """`A_ZZZZ_WWWW` from seconds relative to the event start (truncated)."""
    return f"A_{int(rel_start_s):04d}_{int(rel_end_s):04d}"


def parse_clip_id(clip: str) -> tuple[str, str, str]:
    """`<video>_E_..._A_...` -> (video id, event key, action key); the video id may hold '_' and '-'."""
    m = CLIP_ID.fullmatch(clip)
    if not m:
        raise ValueError(f"{clip!r} is not '<video id>_E_XXXXXX_YYYYYY_A_ZZZZ_WWWW'")
    return m["video"], m["event"], m["action"]


# ----------------------------------------------------------------------------------------------- category files

def _lines(path: Path) -> list[tuple[int, str]]:
    text = gzip.decompress(path.read_bytes()).decode("utf-8") if path.suffix == ".gz" else path.read_text("utf-8")
    return [(i, ln.rstrip("\r\n")) for i, ln in enumerate(text.split("\n"), 1) if ln.strip()]


def read_categories(folder: str | Path, problems: list[Problem]) -> Categories:
    """Every `*_categories.txt` in folder: set/event lists, the full element list (`Glabel:` lines) and subsets."""
    folder = Path(folder)
    cats = Categories()
    for kind in ("event", "set"):
        path = folder / f"{kind}_categories.txt"
        if not path.exists():
            if kind == "set":
                problems.append(Problem(str(path), "missing"))
            continue
        table: dict[int, str] = {}
        for no, line in _lines(path):
            m = LIST_LINE.fullmatch(line.strip())
            if not m or m[1] != kind:
                problems.append(Problem(f"{path}:{no}", f"expected '{kind}: <id>; <name>', got {line!r}"))
            elif int(m[2]) in table:
                problems.append(Problem(f"{path}:{no}", f"{kind} {m[2]} listed twice"))
            else:
                table[int(m[2])] = m[3].strip()
        setattr(cats, f"{kind}s", table)
    rows: dict[str, list] = {}
    for path in sorted(folder.glob("*_categories.txt")):
        name = path.name[: -len("_categories.txt")]
        if name in ("event", "set"):
            continue
        parsed = []
        for no, line in _lines(path):
            sub, full = SUBSET_LINE.fullmatch(line), FULL_LINE.fullmatch(line)
            if sub:
                parsed.append((no, int(sub[1]), int(sub[3]), int(sub[2]), sub[4], sub[5].strip()))
            elif full:
                parsed.append((no, None, int(full[1]), int(full[2]), full[3], full[4].strip()))
            else:
                problems.append(Problem(f"{path}:{no}", f"not a category line: {line!r}"))
        rows[name] = (path, parsed)
    has_full = any(p[1] is None for _, parsed in rows.values() for p in parsed)
    for name, (path, parsed) in sorted(rows.items(), key=lambda kv: any(p[1] is not None for p in kv[1][1])):
        subset: dict[int, int] = {}
        for no, clabel, glabel, set_id, ev, text in parsed:
            where = f"{path}:{no}"
            if set_id not in cats.sets:
                problems.append(Problem(where, f"set {set_id} is not in set_categories.txt"))
            if ev not in cats.events.values():
                problems.append(Problem(where, f"event {ev!r} is not a known event"))
            known = cats.elements.get(glabel)
            if clabel is None:
                cats.full = name
                if known is not None:
                    problems.append(Problem(where, f"Glabel {glabel} listed twice"))
                cats.elements[glabel] = (text, set_id, ev)
                continue
            if known is None and has_full:
                problems.append(Problem(where, f"Glabel {glabel} is not in the full element list"))
            elif known is None:
                cats.elements[glabel] = (text, set_id, ev)
            elif known[1:] != (set_id, ev):
                problems.append(Problem(where, f"Glabel {glabel} is set {known[1]} ({known[2]}) in another file"))
            if clabel in subset:
                problems.append(Problem(where, f"Clabel {clabel} listed twice"))
            subset[clabel] = glabel
        if subset:
            if sorted(subset) != list(range(len(subset))):
                problems.append(Problem(str(path), f"Clabel values must run 0..{len(subset) - 1}"))
            cats.subsets[name] = subset
    if not cats.elements:
        problems.append(Problem(str(folder), "no element category file (*_categories.txt with Glabel lines)"))
    return cats


# ----------------------------------------------------------------------------------------------- split files

def find_split_files(folder: str | Path, version: str | None = None) -> dict[tuple[str, str], Path]:
    """(subset, split) -> split file; of several versions of one file the given one, else the newest."""
    found: dict[tuple[str, str], list[tuple[str, Path]]] = {}
    for path in sorted(Path(folder).glob("*_element*.txt*")):
        m = SPLIT_FILE.fullmatch(path.name)
        if m:
            found.setdefault((m["subset"], m["split"]), []).append((m["version"] or "", path))
    chosen = {}
    for key, options in found.items():
        exact = [p for v, p in options if v == version]
        chosen[key] = exact[0] if exact else max(options, key=lambda o: [int(x) for x in re.findall(r"\d+", o[0])])[1]
    return chosen


def read_split(path: Path, problems: list[Problem]) -> list[tuple[int, str, int]]:
    """`<clip id> <Clabel>` lines -> (line number, clip id, Clabel)."""
    out = []
    for no, line in _lines(path):
        parts = line.split()
        if len(parts) != 2 or not parts[1].isdigit() or not CLIP_ID.fullmatch(parts[0]):
            problems.append(Problem(f"{path}:{no}",
                                    f"expected '<video>_E_XXXXXX_YYYYYY_A_ZZZZ_WWWW <label>', got {line!r}"))
            continue
        out.append((no, parts[0], int(parts[1])))
    return out


# ----------------------------------------------------------------------------------------------- annotation JSON

def _pair(v: Any) -> bool:
    return (isinstance(v, list) and len(v) == 2 and all(isinstance(x, (int, float)) and not isinstance(x, bool)
                                                       for x in v))


def check_annotation(data: Any, where: str, cats: Categories, problems: list[Problem],
                     warnings: list[Problem] | None = None) -> dict:
    """Every structural and temporal problem of a parsed FineGym annotation JSON; returns its well-formed part.
    An event or element key whose truncated seconds disagree with its timestamps (the ids are names, the
    millisecond timestamps the truth) goes to `warnings` when given, else it is a problem like any other."""
    clean: dict[str, dict] = {}
    naming = problems if warnings is None else warnings
    if not isinstance(data, dict):
        problems.append(Problem(where, "top level must be an object keyed by video id"))
        return clean
    for vid, events in data.items():
        if not VIDEO_ID.fullmatch(vid) or not isinstance(events, dict):
            problems.append(Problem(f"{where}: {vid}", "not '<video id>: {E_...: event}'"))
            continue
        for ek, ev in events.items():
            at = f"{where}: {vid}/{ek}"
            if not EVENT_KEY.fullmatch(ek) or not isinstance(ev, dict):
                problems.append(Problem(at, "event keys are 'E_XXXXXX_YYYYYY' holding an object"))
                continue
            ts = ev.get("timestamps")
            if not (isinstance(ts, list) and len(ts) == 1 and _pair(ts[0])):
                problems.append(Problem(at, f"timestamps must be one [start, end] pair, got {ts!r}"))
                continue
            start, end = ts[0]
            if not 0 <= start < end:
                problems.append(Problem(at, f"event [{start}, {end}] does not run forward from >= 0"))
            elif event_key(start, end) != ek:
                naming.append(Problem(at, f"key does not match timestamps [{start}, {end}] "
                                            f"({event_key(start, end)})"))
            if ev.get("event") not in cats.events:
                problems.append(Problem(at, f"event label {ev.get('event')!r} is not in the event categories"))
            segs = ev.get("segments")
            good = clean.setdefault(vid, {})[ek] = {"event": ev.get("event"), "timestamps": ts, "segments": {}}
            if segs is None:
                continue
            if not isinstance(segs, dict):
                problems.append(Problem(at, "segments must be null or an object keyed 'A_ZZZZ_WWWW'"))
                continue
            spans = []
            for ak, seg in segs.items():
                sat = f"{at}/{ak}"
                if not ACTION_KEY.fullmatch(ak) or not isinstance(seg, dict):
                    problems.append(Problem(sat, "segment keys are 'A_ZZZZ_WWWW' holding an object"))
                    continue
                st, n = seg.get("timestamps"), seg.get("stages")
                if not (isinstance(st, list) and st and all(_pair(p) for p in st)):
                    problems.append(Problem(sat, f"timestamps must be a list of [start, end] pairs, got {st!r}"))
                    continue
                good["segments"][ak] = seg
                if n != len(st):
                    problems.append(Problem(sat, f"stages is {n!r} but {len(st)} stage timestamps are given"))
                for i, (a, b) in enumerate(st):
                    if b <= a:
                        problems.append(Problem(sat, f"stage {i + 1} [{a}, {b}] does not run forward"))
                    if i and a < st[i - 1][1] - EPS:
                        problems.append(Problem(sat, f"stage {i + 1} starts before stage {i} ends"))
                lo, hi = st[0][0], st[-1][1]
                if lo < -EPS or start + hi > end + EPS:
                    problems.append(Problem(sat, f"element [{lo}, {hi}] (relative) lies outside its event "
                                                 f"of {end - start:.3f} s"))
                if action_key(lo, hi) != ak:
                    naming.append(Problem(sat, f"key does not match stage timestamps ({action_key(lo, hi)})"))
                spans.append((lo, hi, ak))
            spans.sort()
            for (_, b0, k0), (a1, _, k1) in zip(spans, spans[1:]):
                if a1 < b0 - EPS:
                    problems.append(Problem(f"{at}/{k1}", f"overlaps {k0} ({a1} < {b0})"))
    return clean


def load_json(path: str | Path, problems: list[Problem]) -> Any:
    """The parsed JSON, or None with a problem for unreadable files."""
    try:
        return json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        problems.append(Problem(str(path), f"not readable JSON: {exc}"))
        return None


# ----------------------------------------------------------------------------------------------- manifests

def _url(source: str, vid: str) -> str | None:
    return f"https://www.youtube.com/watch?v={vid}" if source == "youtube" else None


def to_manifests(data: dict, cats: Categories, split_rows: dict[tuple[str, str], list[tuple[str, str, int]]],
                 problems: list[Problem], source: str = "youtube",
                 primary: str | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Annotation dict + categories + split rows ((subset, split) -> [(where, clip id, label)]) -> (events, elements).

    `data` is check_annotation's well-formed part. `split` is the split in the `primary` subset (default:
    the subset with split files and the fewest classes); every subset also gets `<subset>_label` / `<subset>_split`.
    """
    events, elements = [], {}
    for vid, evs in data.items():
        for ek, ev in evs.items():
            (start, end), = ev["timestamps"]
            eid = mf.item_id(source, vid, start, end)
            name = cats.events.get(ev["event"])
            events.append({"item_id": eid, "source": source, "source_id": vid, "url": _url(source, vid),
                           "label": name, "label_id": sorted(cats.events).index(ev["event"]) if name else None,
                           "media": "video", "start_s": float(start), "end_s": float(end), "status": "planned",
                           "parent_id": mf.item_id(source, vid), "event": name, "event_id": ev["event"],
                           "clip_id": f"{vid}_{ek}"})
            for ak, seg in (ev["segments"] or {}).items():
                stages = [[round(start + a, 6), round(start + b, 6)] for a, b in seg["timestamps"]]
                lo, hi = stages[0][0], stages[-1][1]
                elements[f"{vid}_{ek}_{ak}"] = {
                    "item_id": mf.item_id(source, vid, lo, hi), "source": source, "source_id": vid,
                    "url": _url(source, vid), "media": "video", "start_s": lo, "end_s": hi, "status": "planned",
                    "parent_id": eid, "event": name, "event_id": ev["event"], "clip_id": f"{vid}_{ek}_{ak}",
                    "stages": json.dumps(stages)}
    names = sorted(cats.subsets) + ([cats.full] if cats.full else [])
    inverse = {s: {g: c for c, g in cats.subsets[s].items()} for s in cats.subsets}
    seen: dict[tuple[str, str], str] = {}
    for (subset, split), rows in sorted(split_rows.items()):
        table = cats.subsets.get(subset) or ({g: g for g in cats.elements} if subset == cats.full else None)
        if table is None:
            problems.append(Problem(subset, f"split files for {subset!r} but no {subset}_categories.txt"))
            continue
        for where, clip, label in rows:
            rec = elements.get(clip)
            if rec is None:
                problems.append(Problem(where, f"clip {clip} is not in the annotation JSON"))
                continue
            if label not in table:
                problems.append(Problem(where, f"label {label} is not in {subset}_categories.txt"))
                continue
            if (subset, clip) in seen:
                problems.append(Problem(where, f"clip {clip} is also in {seen[subset, clip]}"))
                continue
            seen[subset, clip] = where
            glabel = table[label]
            if rec.get("element_id") is not None and rec["element_id"] != glabel:
                problems.append(Problem(where, f"clip {clip} is element {glabel} here but {rec['element_id']} "
                                               "in another subset"))
                continue
            text, set_id, ev_name = cats.elements[glabel]
            if ev_name != rec["event"]:
                problems.append(Problem(where, f"element {glabel} ({ev_name}) lies in an event of {rec['event']}"))
            rec.update(label=text, label_id=glabel, element=text, element_id=glabel, set=cats.sets.get(set_id),
                       set_id=set_id)
            rec[f"{subset}_split"] = split
    with_splits = sorted({s for s, _ in split_rows if s in names},
                         key=lambda s: (len(cats.subsets.get(s, cats.elements)), s))
    primary = primary or (with_splits[0] if with_splits else None)
    for rec in elements.values():
        g = rec.get("element_id")
        for s in names:
            rec[f"{s}_label"] = g if s == cats.full and g is not None else inverse.get(s, {}).get(g)
        for s in with_splits:
            rec.setdefault(f"{s}_split", None)
        rec["split"] = rec.get(f"{primary}_split") if primary else None
    return mf.from_records(events), mf.from_records(list(elements.values()))


def read_annotations(annotation: str | Path, categories: str | Path = SHIPPED, version: str | None = None,
                     source: str = "youtube", primary: str | None = None, problems: list[Problem] | None = None,
                     warnings: list[Problem] | None = None, splits: str | Path | None = None
                     ) -> tuple[pd.DataFrame, pd.DataFrame, Categories]:
    """FineGym files -> (events, elements, categories); raises GymError listing every problem (unless `problems`
    is given, which then collects them and the tables are built from what could be read). Categories and split
    files default to the shipped ones (splits: a folder of `<subset>_<split>_element[_vX.Y].txt` files, default the
    categories folder); key-vs-timestamp mismatches go to `warnings` when given (check_annotation)."""
    collect = problems if problems is not None else []
    cats = read_categories(categories, collect)
    data = load_json(annotation, collect)
    data = check_annotation(data, str(annotation), cats, collect, warnings) if data is not None else {}
    split_rows = {}
    for (subset, split), path in sorted(find_split_files(splits or categories, version).items()):
        split_rows[subset, split] = [(f"{path}:{no}", clip, label) for no, clip, label in read_split(path, collect)]
    events, elements = to_manifests(data, cats, split_rows, collect, source, primary)
    if problems is None and collect:
        raise GymError(collect)
    return events, elements, cats


def categories_to_json(cats: Categories) -> str:
    """Categories as JSON text (stored in the manifests' metadata, so export needs no other file)."""
    return json.dumps({"events": cats.events, "sets": cats.sets, "elements": cats.elements,
                       "subsets": cats.subsets, "full": cats.full})


def categories_from_json(text: str) -> Categories:
    d = json.loads(text)
    ints = lambda m: {int(k): v for k, v in m.items()}  # noqa: E731 - JSON keys are strings
    return Categories(ints(d["events"]), ints(d["sets"]), {int(k): tuple(v) for k, v in d["elements"].items()},
                      {s: ints(m) for s, m in d["subsets"].items()}, d["full"])


def subset_rows(elements: pd.DataFrame, cats: Categories, subset: str) -> tuple[pd.DataFrame, list[str]]:
    """The elements of a benchmark subset (gym99, gym288) as a recognition task: label_id = its official label
    (Clabel), label = the element's name, split = the subset's split; with the subset's class names in label-id
    order (all of them, whether or not the manifest holds every class)."""
    table = cats.subsets.get(subset)
    if table is None or f"{subset}_label" not in elements:
        have = sorted(cats.subsets)
        raise GymError([Problem(subset, f"no subset {subset!r} in these manifests' categories (they have {have})")])
    rows = elements[elements[f"{subset}_label"].notna()].copy()
    rows["label_id"] = rows[f"{subset}_label"].astype("Int32")
    rows["split"] = rows[f"{subset}_split"] if f"{subset}_split" in rows else None
    names = [cats.elements[table[c]][0] for c in range(len(table))]
    rows["label"] = [names[int(c)] for c in rows["label_id"]]
    return rows.reset_index(drop=True), names
