"""`curate crawl`: recipe → candidate rows → downloads → probed manifest; resumable, incremental and polite.

The manifest is a folder of Parquet parts (curate/core/store.py): each batch is committed atomically as one part,
in time proportional to the batch, and a finished run compacts it back to one file. Every fetch attempt goes to
`<manifest>.attempts.jsonl` (a `start` line before its request, a line with its code after), and a rerun skips
`ok` rows, retries transient failures (permanent ones only with retry_failed) and adopts files an interrupted run
finished but did not commit, so no item is fetched twice.
Rows are fetched on this process's thread pool (executor='local') or in shards on Ray workers (executor='ray',
through curate/core/executor.py); either way the driver commits each finished batch or shard.
"""
from __future__ import annotations

import dataclasses
import json
import os
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import pandas as pd

from curate.core import manifest as mf
from curate.core import store
from curate.core.executor import EXECUTORS, ExecutorError, ShardContext, ShardResult, run_shards
from curate.core.files import write_text
from curate.crawl.download import CrawlContext, crawl_row, crawl_rows
from curate.crawl.fetch import Http, is_transient
from curate.crawl.plan import PlanContext
from curate.crawl.recipe import Recipe, RecipeError
from curate.crawl.sources import plan


@dataclass
class CrawlResult:
    manifest: Path
    df: pd.DataFrame
    fetched: int = 0            # rows attempted this run
    seconds: float = 0.0
    plan: PlanContext | None = None
    stats: dict = field(default_factory=dict)
    run: ShardResult | None = None   # how the shards went (executor='ray')
    quotas: pd.DataFrame | None = None   # the budget's share per source x class x query (curate/crawl/feedback.py)


def select_labels(recipe: Recipe, classes: list[str] | None) -> dict[str, int]:
    """Class name → label id for the classes asked for (names or ids; all when None)."""
    names = recipe.class_names()
    if not classes:
        return {n: i for i, n in enumerate(names)}
    out = {}
    for c in classes:
        if c.isdigit() and int(c) < len(names):
            out[names[int(c)]] = int(c)
        elif c in names:
            out[c] = names.index(c)
        else:
            raise RecipeError(f"--classes: {c!r} is neither a class of {recipe.name} nor a label id")
    return out


def paths(recipe: Recipe) -> tuple[Path, Path]:
    """(manifest, data root) of a recipe, resolved against its folder."""
    return Path(recipe.resolve(recipe.output.manifest)), Path(recipe.resolve(recipe.output.data_root))


def merge_plan(existing: pd.DataFrame, planned: pd.DataFrame) -> pd.DataFrame:
    """Append planned rows not yet in the manifest; rows with a URL already taken by another row become duplicates."""
    new = planned[~planned["item_id"].isin(existing["item_id"])].drop_duplicates("item_id")
    if new.empty:
        return existing
    whole = new["start_s"].isna()
    seen = existing[existing["start_s"].isna()].drop_duplicates("url").set_index("url")["item_id"]
    first = new[whole].drop_duplicates("url").set_index("url")["item_id"]
    owner = pd.concat([seen, first[~first.index.isin(seen.index)]])
    dup_of = new["url"].map(owner).where(whole)
    is_dup = dup_of.notna() & (dup_of != new["item_id"])
    new = new.copy()
    new.loc[is_dup, "status"] = "rejected"
    new.loc[is_dup, "dup_of"] = dup_of[is_dup]
    new.loc[is_dup, "dup_sim"] = 1.0
    new.loc[is_dup, "error"] = "duplicate: same URL as " + dup_of[is_dup].astype(str)
    return mf.upsert(existing, new) if len(existing) else new.reset_index(drop=True)


def todo_mask(df: pd.DataFrame, retry_failed: bool) -> pd.Series:
    """Rows to fetch: planned ones, transient failures, and permanent failures when asked to."""
    codes = df["error"].map(mf.error_code)
    failed = (df["status"] == "failed") & (retry_failed | codes.map(is_transient))
    return (df["status"] == "planned") | failed


def interleave_hosts(df: pd.DataFrame) -> pd.DataFrame:
    """Order rows round-robin over hosts so per-host caps never idle the other workers."""
    host = df["url"].map(lambda u: urlsplit(str(u)).netloc)
    rank = host.groupby(host).cumcount()
    return df.assign(_r=rank.to_numpy()).sort_values("_r", kind="stable").drop(columns="_r")


def mark_content_duplicates(rows: pd.DataFrame, by_sha: dict[str, str], data_root: Path) -> pd.DataFrame:
    """ok rows whose bytes equal an earlier ok row's become rejected duplicates (file removed, dup_of set)."""
    ok = rows.index[rows["status"] == "ok"]
    owners = [by_sha.setdefault(sha, iid) for sha, iid in zip(rows.loc[ok, "sha256"], rows.loc[ok, "item_id"])]
    dup = [i for i, owner, iid in zip(ok, owners, rows.loc[ok, "item_id"]) if owner != iid]
    if not dup:
        return rows
    rows = rows.copy()
    for i in dup:
        owner = by_sha[rows.at[i, "sha256"]]
        (data_root / rows.at[i, "path"]).unlink(missing_ok=True)
        rows.loc[i, ["status", "error", "dup_of", "dup_sim", "path"]] = [
            "rejected", f"duplicate: same bytes as {owner}", owner, 1.0, None]
    return rows


def crawl_shard(shard: pd.DataFrame, sctx: ShardContext) -> pd.DataFrame:
    """run_shards' unit of work: fetch a shard of rows with the CrawlContext in sctx.options['crawl']."""
    return crawl_rows(shard, sctx.options["crawl"])


def crawl(recipe: Recipe, *, classes: list[str] | None = None, limit: int | None = None, workers: int | None = None,
          dry_run: bool = False, retry_failed: bool = False, executor: str = "local", address: str | None = None,
          shard_size: int = 64, max_retries: int = 3,
          progress: Callable[[str, pd.DataFrame | None, int], None] | None = None,
          feedback: pd.DataFrame | None = None, values: dict[str, float] | None = None) -> CrawlResult:
    """Plan the recipe, merge into its manifest, fetch what is left, commit in batches; return the final manifest.

    executor='ray' fetches shards of shard_size rows as Ray tasks (cluster at address, else a local one), each on
    `workers` threads; max_retries: Ray's re-runs of a task whose worker died (its rows stay pending otherwise).
    executor='processes' fetches shards on one spawned process per CPU here, sharing out the recipe's threads,
    per-host cap and rate between them (one interpreter's GIL caps a crawl of small images near 800/s).
    progress(event, rows, total) is called with 'start' (todo rows), 'done' (a finished batch) and 'commit'.
    feedback (a filtered manifest of an earlier crawl) shares the budget out by its keep rates, values (media -> the
    accuracy an item bought, from curate efficiency) weigh them (curate/crawl/feedback.py); the shares go to
    <manifest>.quotas.csv.
    """
    t0 = time.monotonic()
    if executor not in EXECUTORS:
        raise ExecutorError(f"executor {executor!r} is not one of {list(EXECUTORS)}")
    labels = select_labels(recipe, classes)
    every = not classes
    manifest, data_root = paths(recipe)
    quotas, shares = None, None
    if recipe.budget is not None or feedback is not None:
        from curate.crawl.feedback import budget_quotas

        quotas, shares = budget_quotas(recipe, labels, feedback, values)
        manifest.parent.mkdir(parents=True, exist_ok=True)
        write_text(Path(str(manifest) + ".quotas.csv"), shares.to_csv(index=False))
    if dry_run:
        planned, pctx = plan(recipe, labels, None, every, quotas)
        out = manifest.with_name(manifest.stem + ".plan.parquet")
        mf.write(merge_plan(mf.empty(), planned), out, {"recipe": recipe.name, "recipe_sha": recipe.sha()})
        return CrawlResult(out, planned, 0, time.monotonic() - t0, pctx, quotas=shares)

    spec = dataclasses.replace(recipe.download, workers=workers) if workers else recipe.download
    procs = os.cpu_count() or 1
    if executor == "processes":   # the same totals as one process: threads, per-host cap and rate shared out
        spec = dataclasses.replace(spec, workers=-(-spec.workers // procs), per_host=-(-spec.per_host // procs),
                                   rate_per_host=spec.rate_per_host / procs)
    ctx = CrawlContext(str(data_root), spec, str(manifest) + ".attempts.jsonl")
    known = mf.exists(manifest)
    existing = mf.read(manifest) if known else mf.empty()
    planned, pctx = plan(recipe, labels, Http(recipe.download, ctx.log), every, quotas)
    df = merge_plan(existing, planned)
    meta = {**(mf.read_metadata(manifest) if known else {}), "recipe": recipe.name,
            "recipe_sha": recipe.sha(), "data_root": str(data_root.resolve())}
    mf.commit(manifest, df.iloc[len(existing):], meta)      # the rows planned now (merge_plan appends them)

    # rows of the classes asked for, rows planned now, and rows without a label (a test split, source videos of
    # FineGym events) unless only some classes were asked for
    wanted = df["label"].isin(list(labels)) | df["item_id"].isin(planned["item_id"]) | (df["label"].isna() & every)
    todo = df[todo_mask(df, retry_failed) & wanted]
    todo = interleave_hosts(todo)
    if limit is not None:
        todo = todo.head(limit)
    by_sha = {s: i for s, i in zip(df.loc[df["status"] == "ok", "sha256"], df.loc[df["status"] == "ok", "item_id"])}
    if progress:
        progress("start", todo, len(todo))

    def commit(part: pd.DataFrame) -> None:
        """Mark content duplicates and commit the finished rows: one part file of the manifest folder, O(rows)."""
        rows = mark_content_duplicates(part, by_sha, data_root)
        mf.commit(manifest, rows)
        if progress:
            progress("commit", rows, len(rows))

    run = None
    if executor == "local":
        _run(todo, ctx, commit, progress)
    elif len(todo):
        def on_part(part: pd.DataFrame) -> None:
            if progress:
                progress("done", part, len(part))
            commit(part)
        run = run_shards(crawl_shard, todo.reset_index(drop=True), shard_size, executor, address,
                         workers=procs, on_part=on_part, options={"crawl": ctx},
                         max_retries=max_retries)
    df = mf.read(store.compact(manifest))      # one file again: exact for any Parquet reader
    seconds = time.monotonic() - t0
    stats = crawl_stats(df, todo, seconds, pctx)
    _write_json(Path(str(manifest) + ".stats.json"), stats)
    return CrawlResult(manifest, df, len(todo), seconds, pctx, stats, run, shares)


def _run(todo: pd.DataFrame, ctx: CrawlContext, commit: Callable[[pd.DataFrame], None],
         progress: Callable | None) -> None:
    """Fetch todo rows on `workers` threads; commit finished rows every commit_every rows or 5 s, and on exit.

    Workers pull rows from one iterator and push finished rows onto a queue that the driver drains ten times a
    second (no futures to wait on, no wake-up per row); Ctrl-C lets every worker finish its row, and those rows are
    committed.
    """
    spec = ctx.download
    records = iter(todo.to_dict("records"))
    take, stop, finished = threading.Lock(), threading.Event(), queue.SimpleQueue()

    def worker() -> None:
        try:
            while not stop.is_set():
                with take:
                    rec = next(records, None)
                if rec is None:
                    break
                finished.put(crawl_row(rec, ctx))
        finally:
            finished.put(None)      # this worker is done

    threads = [threading.Thread(target=worker, name=f"crawl-{i}", daemon=True)
               for i in range(max(1, min(spec.workers, len(todo))))]
    for t in threads:
        t.start()
    alive, pending, shown = len(threads), [], []
    last_commit = last_shown = time.monotonic()

    def take_rows() -> None:
        """Move what the workers finished onto pending (a 0.1 s poll: a blocking get would wake on every row)."""
        nonlocal alive
        while True:
            try:
                row = finished.get_nowait()
            except queue.Empty:
                return
            if row is None:
                alive -= 1
            else:
                pending.append(row)
                shown.append(row)

    def flush() -> None:
        nonlocal pending, last_commit
        if pending:
            commit(mf.from_records(pending))
        pending, last_commit = [], time.monotonic()

    try:
        while alive:
            time.sleep(0.1)
            take_rows()
            now = time.monotonic()
            if progress and shown and (now - last_shown > 0.2 or not alive):
                progress("done", pd.DataFrame(shown), len(shown))
                shown.clear()
                last_shown = now
            if len(pending) >= spec.commit_every or (pending and now - last_commit > 5.0):
                flush()
    finally:
        stop.set()                  # Ctrl-C: running rows finish and are kept
        for t in threads:
            t.join()
        take_rows()
        if progress and shown:
            progress("done", pd.DataFrame(shown), len(shown))
        flush()


def crawl_stats(df: pd.DataFrame, todo: pd.DataFrame, seconds: float, pctx: PlanContext | None) -> dict:
    """Counts by source × status × error code, bytes, and this run's items/s."""
    codes = df["error"].map(mf.error_code).fillna("-")
    table = df.assign(code=codes).groupby(["source", "status", "code"], dropna=False).agg(
        rows=("item_id", "size"), bytes=("bytes", "sum")).reset_index()
    run = df[df["item_id"].isin(todo["item_id"])]
    return {
        "rows": int(len(df)), "fetched_this_run": int(len(todo)), "seconds": round(seconds, 3),
        "items_per_s": round(len(todo) / seconds, 2) if seconds > 0 else None,
        "ok_this_run": int((run["status"] == "ok").sum()),
        "bytes_ok": int(df.loc[df["status"] == "ok", "bytes"].fillna(0).sum()),
        "by_split": split_counts(df),
        "by_source_status_code": [{k: (int(v) if k in ("rows", "bytes") else v) for k, v in r.items()}
                                  for r in table.to_dict("records")],
        "notes": list(pctx.notes) if pctx else [],
    }


def split_counts(df: pd.DataFrame) -> dict[str, dict[str, int]]:
    """Per split: rows, ok rows, and rows without a label (a label-less test file's)."""
    g = df.assign(ok=df["status"] == "ok", unlabelled=df["label"].isna()).groupby(df["split"].fillna("-"))
    return {str(k): {"rows": int(len(p)), "ok": int(p["ok"].sum()), "no_label": int(p["unlabelled"].sum())}
            for k, p in g}


def _write_json(path: Path, data: dict) -> None:
    write_text(path, json.dumps(data, indent=2, default=str) + "\n")
