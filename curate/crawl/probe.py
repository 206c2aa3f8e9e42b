"""The probe stage: every fetched row's file measured by `curate.media.probe` (size, fps, frames, duration, codec);
files that cannot be decoded become `failed` rows with the media error code. Runs through `curate.core.executor`, so the
same call works in this process or on a Ray cluster, and a rerun only probes rows still pending.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from curate import media
from curate.core import manifest as mf
from curate.core import store
from curate.core.executor import ShardContext, ShardResult, commit, run_shards

PROBE_COLUMNS = ("media", "width", "height", "fps", "frames", "duration_s", "codec", "bytes")


def pending(df: pd.DataFrame) -> pd.Series:
    """Rows with a file that neither a probe nor an earlier stage has settled (no codec, no error yet)."""
    return df["path"].notna() & df["codec"].isna() & df["error"].isna() & (df["status"] != "rejected")


def probe_shard(shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    """Probe the files of shard's rows under ctx.options['root'] (a shard function for curate.core.executor)."""
    root = Path(ctx.options["root"])
    rows = []
    for row in shard.to_dict("records"):
        try:
            row.update(media.probe(root / row["path"]).as_row(), status="ok", error=None)
        except media.MediaError as exc:
            row.update(status="failed", error=str(exc))           # 'code: message (path)'
        rows.append(row)
    return mf.from_records(rows)


@dataclass
class ProbeResult:
    manifest: pd.DataFrame
    todo: int                   # rows pending when the run started
    run: ShardResult


def probe_manifest(path: str | Path, out: str | Path | None = None, root: str | Path | None = None,
                   executor: str = "local", address: str | None = None, shard_size: int = 32, workers: int = 1,
                   progress=None) -> ProbeResult:
    """Probe the pending rows of the manifest at path into out (default: in place), committing every shard."""
    from curate.core.manifest import find_data_root

    path = Path(path)
    out = Path(out or path)
    started = out != path and mf.exists(out)
    df = mf.read(out if started else path)
    root = find_data_root(path, df, root)
    todo = df[pending(df)]
    meta = {**mf.read_metadata(path), "data_root": str(Path(root).resolve())}
    meta.pop("curate_schema", None)
    if not started and out != path:
        mf.write(df, out, meta)
    run = run_shards(probe_shard, todo, shard_size, executor, address, workers=workers, on_part=commit(out, meta),
                     options={"root": str(Path(root).resolve())}, progress=progress)
    return ProbeResult(mf.read(store.compact(out) if store.is_folder(out) else out), len(todo), run)
