"""Source videos of FineGym manifests: plan them for crawling, cut events and elements (exact, resumable).

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


def plan_sources(events: pd.DataFrame, url_template: str = "https://www.youtube.com/watch?v={id}") -> pd.DataFrame:
    """One `planned` row per source video (item_id = the events' parent_id), ready for `curate crawl`."""
    rows = []
    for (source, vid), grp in events.groupby(["source", "source_id"], sort=True):
        rows.append({"item_id": mf.item_id(source, vid), "source": source, "source_id": vid,
                     "url": url_template.format(id=vid), "media": "video", "status": "planned",
                     "event": ",".join(sorted(grp["event"].dropna().unique()))})
    return mf.from_records(rows)


def video_finder(videos: str | Path | None = None, sources: pd.DataFrame | None = None,
                 sources_root: str | Path | None = None) -> Callable[[str], Path | None]:
    """video id -> local file: `<videos>/<id>.<ext>` (MMAction2's `videos/` folder) or an `ok` row of a crawled
    sources manifest (its `path` under sources_root)."""
    known: dict[str, Path] = {}
    if sources is not None:
        ok = sources[(sources["status"] == "ok") & sources["path"].notna()]
        known = {sid: Path(sources_root or ".") / p for sid, p in zip(ok["source_id"], ok["path"])}

    def find(vid: str) -> Path | None:
        if vid in known:
            return known[vid]
        if videos is not None and fg.VIDEO_ID.fullmatch(vid):
            hits = sorted(p for p in Path(videos).glob(f"{vid}.*") if p.suffix.lower() in (".mp4", ".mkv", ".webm"))
            return hits[0] if hits else None
        return None

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


def trim_events(events: pd.DataFrame, root: str | Path, find: Callable[[str], Path | None], **kw) -> pd.DataFrame:
    """Events cut from their source videos (absolute times)."""
    def source_of(row: pd.Series) -> tuple[Path | None, float, str]:
        return find(row["source_id"]), 0.0, f"source video {row['source_id']} is not on disk"
    return trim_rows(events, root, EVENT_DIR, source_of, **kw)


def trim_elements(elements: pd.DataFrame, events: pd.DataFrame, root: str | Path,
                  find: Callable[[str], Path | None] | None = None, **kw) -> pd.DataFrame:
    """Elements cut from their trimmed event clips (times relative to the event), or straight from the source
    video when `find` is given (absolute times; no event clips needed)."""
    root = Path(root)
    ev = events.set_index("item_id")

    def source_of(row: pd.Series) -> tuple[Path | None, float, str]:
        if find is not None:
            return find(row["source_id"]), 0.0, f"source video {row['source_id']} is not on disk"
        parent = ev.loc[row["parent_id"]]
        if parent["status"] != "ok" or pd.isna(parent["path"]):
            why = parent["error"] if isinstance(parent["error"], str) else parent["status"]
            return None, 0.0, f"event clip {parent['clip_id']} is not trimmed ({why})"
        return root / parent["path"], float(parent["start_s"]), ""
    return trim_rows(elements, root, ELEMENT_DIR, source_of, **kw)
