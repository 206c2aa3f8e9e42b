"""Source videos of FineGym manifests: plan them for crawling (event spans only, or whole videos), cut events and
elements (exact, resumable).

Clips follow MMAction2's FineGym layout under the data root: `gym/events/<video>_E_XXXXXX_YYYYYY.mp4` and
`gym/subactions/<clip id>.mp4`. Names come from clip ids, whose characters `curate.formats.finegym` has checked
(`[A-Za-z0-9_-]` and digits), never from titles.
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from curate import media
from curate.core import manifest as mf
from curate.core.files import sha256_file
from curate.formats import finegym as fg

EVENT_DIR, ELEMENT_DIR = "gym/events", "gym/subactions"
PROBE_COLUMNS = ("width", "height", "fps", "frames", "duration_s", "codec", "bytes")


def plan_sources(events: pd.DataFrame, url_template: str = "https://www.youtube.com/watch?v={id}",
                 whole_videos: bool = False) -> pd.DataFrame:
    """`planned` rows for `curate crawl`: one per event span (its seconds of the source video only, fetched with
    yt-dlp's download ranges; item_id = the event's), or with whole_videos one per source video."""
    if whole_videos:
        spans = events.groupby(["source", "source_id"], sort=True).agg(event=("event", _joined)).reset_index()
        spans["start_s"] = spans["end_s"] = None
    else:
        spans = events[["source", "source_id", "start_s", "end_s", "event"]].sort_values(["source_id", "start_s"])
    rows = [{"item_id": mf.item_id(r.source, r.source_id, r.start_s, r.end_s), "source": r.source,
             "source_id": r.source_id, "url": url_template.format(id=r.source_id), "media": "video",
             "start_s": r.start_s, "end_s": r.end_s, "status": "planned", "event": r.event}
            for r in spans.itertuples()]
    return mf.from_records(rows)


def _joined(names: pd.Series) -> str:
    return ",".join(sorted(names.dropna().unique()))


def source_finder(videos: str | Path | None = None, sources: pd.DataFrame | None = None,
                  sources_root: str | Path | None = None) -> Callable[[pd.Series], tuple[Path | None, float]]:
    """A row (event or element) -> (a local file holding its span, the file's start in the source video):
    `<videos>/<id>.<ext>` (MMAction2's `videos/` folder, offset 0), or an `ok` row of a crawled sources manifest
    whose span covers the row's (a whole video, or an event span fetched alone)."""
    spans: dict[str, list[tuple[float, float, Path]]] = {}
    if sources is not None:
        ok = sources[(sources["status"] == "ok") & sources["path"].notna()]
        for r in ok.itertuples():
            lo = 0.0 if pd.isna(r.start_s) else float(r.start_s)
            hi = float("inf") if pd.isna(r.end_s) else float(r.end_s)
            spans.setdefault(r.source_id, []).append((lo, hi, Path(sources_root or ".") / r.path))

    def find(row: pd.Series) -> tuple[Path | None, float]:
        vid, start, end = row["source_id"], float(row["start_s"]), float(row["end_s"])
        for lo, hi, path in sorted(spans.get(vid, ()), key=lambda s: s[1] - s[0]):
            if lo <= start + fg.EPS and end <= hi + fg.EPS:
                return path, lo
        if videos is not None and fg.VIDEO_ID.fullmatch(vid):
            hits = sorted(p for p in Path(videos).glob(f"{vid}.*") if p.suffix.lower() in (".mp4", ".mkv", ".webm"))
            return (hits[0] if hits else None), 0.0
        return None, 0.0

    return find


def _done(root: Path, rel: str) -> dict:
    """Manifest columns of a clip on disk (probe + hash); raises MediaError for an unusable file."""
    p = media.probe(root / rel)
    row = {k: v for k, v in p.as_row().items() if k in PROBE_COLUMNS}
    return {**row, "path": rel, "status": "ok", "error": None, "sha256": sha256_file(root / rel)}


def trim_rows(df: pd.DataFrame, root: str | Path, folder: str,
              source_of: Callable[[pd.Series], tuple[Path | None, float, str]],
              on_item: Callable[[int, str], None] | None = None, save: Callable[[pd.DataFrame], None] | None = None,
              save_every: int = 50) -> pd.DataFrame:
    """Cut every row to `<root>/<folder>/<clip_id>.mp4`; `source_of(row)` = (file, its start in the row's
    time base, why missing). Rows already `ok` with their file are skipped (resume); a file left by a crash
    is probed and kept if usable. Failures keep the media error codes (`missing`, `trim_failed`, ...)."""
    root = Path(root)
    df = df.copy()
    todo = 0
    for n, i in enumerate(df.index):
        row = df.loc[i]
        rel = f"{folder}/{row['clip_id']}.mp4"
        if row["status"] == "ok" and row["path"] == rel and (root / rel).is_file():
            outcome = "skipped"
        else:
            update = {}
            try:
                if (root / rel).is_file():
                    try:
                        update = _done(root, rel)
                    except media.MediaError:
                        (root / rel).unlink()
                if not update:
                    src, offset, why = source_of(row)
                    if src is None:
                        raise media.MediaError("missing", why)
                    media.trim(src, root / rel, float(row["start_s"]) - offset, float(row["end_s"]) - offset)
                    update = _done(root, rel)
                outcome = "ok"
            except media.MediaError as exc:
                update = {"status": "failed", "error": str(exc), "path": None}
                outcome = exc.code
            for k, v in update.items():
                df.at[i, k] = v
            todo += 1
            if save is not None and todo % save_every == 0:
                save(df)
        if on_item is not None:
            on_item(n, outcome)
    if save is not None:
        save(df)
    return df


def trim_events(events: pd.DataFrame, root: str | Path, find: Callable[[pd.Series], tuple[Path | None, float]],
                **kw) -> pd.DataFrame:
    """Events cut from their source videos or crawled spans (source_finder)."""
    def source_of(row: pd.Series) -> tuple[Path | None, float, str]:
        return (*find(row), f"no file of source video {row['source_id']} covers {row['clip_id']}")
    return trim_rows(events, root, EVENT_DIR, source_of, **kw)


def trim_elements(elements: pd.DataFrame, events: pd.DataFrame, root: str | Path,
                  find: Callable[[pd.Series], tuple[Path | None, float]] | None = None, **kw) -> pd.DataFrame:
    """Elements cut from their trimmed event clips (times relative to the event), or straight from the source
    video when `find` is given (absolute times; no event clips needed)."""
    root = Path(root)
    ev = events.set_index("item_id")

    def source_of(row: pd.Series) -> tuple[Path | None, float, str]:
        if find is not None:
            return (*find(row), f"no file of source video {row['source_id']} covers {row['clip_id']}")
        parent = ev.loc[row["parent_id"]]
        if parent["status"] != "ok" or pd.isna(parent["path"]):
            why = parent["error"] if isinstance(parent["error"], str) else parent["status"]
            return None, 0.0, f"event clip {parent['clip_id']} is not trimmed ({why})"
        return root / parent["path"], float(parent["start_s"]), ""
    return trim_rows(elements, root, ELEMENT_DIR, source_of, **kw)
