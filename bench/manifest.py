"""Manifest storage at 10^5..10^7 rows: the cost of a crawl commit (an upsert of 500 rows), a full read, a filtered
read of one class (label), and compaction, for today's single file (`manifest.upsert` of the whole DataFrame +
`manifest.write` of the whole file), curate's folder of part files (curate/core/store.py, `manifest.commit`),
Delta Lake (`deltalake`: MERGE, and append + last-writer-wins at read) and Lance (`pylance`: merge_insert), all in
the same run; plus the peak memory (VmHWM of a fresh process) of a 10^7-row plan + commit loop through the
folder, and `curate crawl --dry-run` of a Kinetics-700-sized CSV.

The single file's commit at the largest size is projected linearly from the size below it unless --old-at-max
(it is O(manifest) per commit; the table says which numbers are projected). Delta and Lance run when installed.

PYTHONPATH=. python bench/manifest.py [--sizes 100000 1000000 10000000] [--commits 64] [--dry-run-rows 1000000]
"""
from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from curate.core import manifest as mf
from curate.core import store

OUT = Path("bench/out/manifest")
BATCH = 500
CLASSES = [f"class {i}" for i in range(700)]
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)


def _fixed(chars: np.ndarray) -> pa.Array:
    """(n, w) uint8 characters -> a string array of n strings of width w, without a Python loop."""
    n, w = chars.shape
    return pa.StringArray.from_buffers(n, pa.py_buffer(np.arange(0, (n + 1) * w, w, dtype=np.int32)),
                                       pa.py_buffer(np.ascontiguousarray(chars)))


def planned(n: int, offset: int = 0, status: str = "planned") -> pa.Table:
    """n Kinetics-like manifest rows (ids offset..offset+n), every schema column, as the crawler plans them."""
    idx = np.arange(offset, offset + n, dtype=np.uint64)
    key = (idx * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(1)
    ids = _fixed(_HEX[np.stack([(key >> np.uint64(4 * (15 - k))) & np.uint64(15) for k in range(16)], 1)])
    yid = _fixed(np.stack([np.full(n, ord("v"), np.uint8)] + [((idx // np.uint64(10 ** (9 - k))) % np.uint64(10)
                                                                + np.uint64(48)).astype(np.uint8) for k in range(10)], 1))
    rng = np.random.default_rng(offset)
    label = rng.integers(0, len(CLASSES), n).astype(np.int32)
    start = rng.integers(0, 300, n).astype(np.float64)
    zeros = np.zeros(n, np.int32)
    cols = {"item_id": ids, "source": pa.array(["kinetics"]).take(zeros), "source_id": yid,
            "url": pc.binary_join_element_wise("https://www.youtube.com/watch?v=", yid, ""),
            "label": pa.array(CLASSES).take(label), "label_id": pa.array(label), "split": pa.array(["train"]).take(zeros),
            "media": pa.array(["video"]).take(zeros), "start_s": pa.array(start), "end_s": pa.array(start + 10),
            "status": pa.array([status]).take(zeros)}
    if status == "ok":
        cols["path"] = pc.binary_join_element_wise("kinetics/", ids, ".mp4", "")
        cols["bytes"] = pa.array(np.full(n, 1 << 20, np.int64))
    return pa.Table.from_arrays([cols[f.name].cast(f.type) if f.name in cols else pa.nulls(n, f.type)
                                 for f in mf.SCHEMA], schema=mf.SCHEMA)


def batch(n: int, k: int) -> pa.Table:
    """Commit k: 500 planned rows spread over the manifest, now fetched (status ok, a path)."""
    return planned(BATCH, (k * 7919 * BATCH) % max(n - BATCH, 1), "ok")


def timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def stats(seconds: list[float]) -> dict:
    s = np.array(seconds) * 1e3
    return {"median_ms": float(np.median(s)), "mean_ms": float(s.mean()), "max_ms": float(s.max()), "n": len(s)}


def bench_single(n: int, base: pa.Table, commits: int) -> dict:
    """Today: the crawler's commit is manifest.upsert of the whole DataFrame, then manifest.write of the whole file."""
    path = OUT / f"single_{n}.parquet"
    df = mf.from_table(base)
    mf.write(df, path)
    up, wr = [], []
    for k in range(commits):
        part = mf.from_table(batch(n, k))
        t = time.perf_counter()
        df = mf.upsert(df, part)
        up.append(time.perf_counter() - t)
        wr.append(timed(lambda d=df: mf.write(d, path)))
    label = pc.field("label") == CLASSES[7]
    return {"commit": stats([u + w for u, w in zip(up, wr)]), "upsert_ms": stats(up)["median_ms"],
            "write_ms": stats(wr)["median_ms"], "read_s": timed(lambda: pq.read_table(path)),
            "filtered_s": timed(lambda: pq.read_table(path, filters=label)), "compact_s": None}


def bench_folder(n: int, base: pa.Table, commits: int) -> dict:
    """curate: manifest.commit (validation + one part file) per batch; reads merge the parts, last writer wins."""
    path = OUT / f"folder_{n}.parquet"
    shutil.rmtree(path, ignore_errors=True)
    store.commit(path, base, {"curate_schema": mf.SCHEMA_VERSION})
    parts = [mf.from_table(batch(n, k)) for k in range(commits)]
    times = [timed(lambda p=p: mf.commit(path, p)) for p in parts]
    label = pc.field("label") == CLASSES[7]
    files = len(store.parts(path))
    out = {"commit": stats(times), "files": files, "read_s": timed(lambda: store.read_table(path)),
           "filtered_s": timed(lambda: store.read_table(path, filter=label)),
           "compact_s": timed(lambda: store.compact(path))}
    out["read_compacted_s"] = timed(lambda: store.read_table(path))
    out["filtered_compacted_s"] = timed(lambda: store.read_table(path, filter=label))
    out["duckdb_s"] = _duckdb(path)
    return out


def _duckdb(path: Path) -> float | None:
    """A reader without curate: DuckDB counting one class in the compacted folder."""
    try:
        import duckdb
    except ImportError:
        return None
    return timed(lambda: duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}/*.parquet') "
                                    f"WHERE label = '{CLASSES[7]}'").fetchall())


def bench_delta(n: int, base: pa.Table, commits: int) -> dict | None:
    """Delta Lake: MERGE on item_id (copy-on-write: rewrites every file holding a matched row), and plain appends
    (readers would then have to keep the last row per item_id themselves)."""
    try:
        from deltalake import DeltaTable, QueryBuilder, write_deltalake
    except ImportError:
        return None
    path = OUT / f"delta_{n}"
    shutil.rmtree(path, ignore_errors=True)
    write_deltalake(path, base)

    def merge(k: int) -> None:
        (DeltaTable(path).merge(batch(n, k), "t.item_id = s.item_id", source_alias="s", target_alias="t")
         .when_matched_update_all().when_not_matched_insert_all().execute())
    merges = [timed(lambda k=k: merge(k)) for k in range(min(commits, 3))]
    appends = [timed(lambda k=k: write_deltalake(path, batch(n, 1000 + k), mode="append")) for k in range(commits)]
    return {"commit": stats(merges), "append": stats(appends),
            "read_s": timed(lambda: DeltaTable(path).to_pyarrow_table()),
            "filtered_s": timed(lambda: QueryBuilder().register("t", DeltaTable(path)).execute(
                f"SELECT * FROM t WHERE label = '{CLASSES[7]}'").read_all()),
            "compact_s": timed(lambda: DeltaTable(path).optimize.compact())}


def bench_lance(n: int, base: pa.Table, commits: int) -> dict | None:
    """Lance: merge_insert on item_id (deletion files + a new fragment), compaction by optimize.compact_files."""
    try:
        import lance
    except ImportError:
        return None
    path = OUT / f"lance_{n}.lance"
    shutil.rmtree(path, ignore_errors=True)
    lance.write_dataset(base, path)

    def merge(k: int) -> None:
        lance.dataset(path).merge_insert("item_id").when_matched_update_all().when_not_matched_insert_all().execute(
            batch(n, k))
    times = [timed(lambda k=k: merge(k)) for k in range(min(commits, 8))]
    return {"commit": stats(times), "read_s": timed(lambda: lance.dataset(path).to_table()),
            "filtered_s": timed(lambda: lance.dataset(path).to_table(filter=f"label = '{CLASSES[7]}'")),
            "compact_s": timed(lambda: lance.dataset(path).optimize.compact_files())}


def peak_rss_gb() -> float:
    """This process's peak resident memory: VmHWM (ru_maxrss would report the parent's peak, which a Linux child
    inherits across fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def memory_loop(n: int, commits: int) -> dict:
    """In a fresh process: plan n rows into a folder (written as it is generated), read the rows to do (item_id,
    url), commit `commits` batches of 500 through manifest.commit, compact; peak RSS."""
    path = OUT / f"memory_{n}.parquet"
    shutil.rmtree(path, ignore_errors=True)
    t0 = time.perf_counter()
    step = 1_000_000
    store.commit(path, (planned(min(step, n - lo), lo) for lo in range(0, n, step)), {"curate_schema": "1"})
    plan_s = time.perf_counter() - t0
    todo = store.read_table(path, ["item_id", "url", "status"], filter=pc.field("status") == "planned")
    times = [timed(lambda k=k: mf.commit(path, mf.from_table(batch(n, k)))) for k in range(commits)]
    compact_s = timed(lambda: store.compact(path))
    return {"rows": n, "todo": todo.num_rows, "plan_s": plan_s, "commit": stats(times), "compact_s": compact_s,
            "peak_rss_gb": peak_rss_gb()}


def dry_run(rows: int) -> dict:
    """`crawl(recipe, dry_run=True)` of a generated Kinetics-700-sized CSV (label,youtube_id,time_start,time_end,split)."""
    from curate.crawl.crawler import crawl
    from curate.crawl.recipe import load_recipe

    folder = OUT / "dry"
    folder.mkdir(parents=True, exist_ok=True)
    csv = folder / f"k{rows}.csv"
    if not csv.exists():
        rng = np.random.default_rng(0)
        start = rng.integers(0, 300, rows)
        pd.DataFrame({"label": np.array(CLASSES)[rng.integers(0, len(CLASSES), rows)],
                      "youtube_id": [f"v{i:010d}" for i in range(rows)], "time_start": start,
                      "time_end": start + 10, "split": "train"}).to_csv(csv, index=False)
    (folder / "k.yaml").write_text(f"name: k\nclasses: {json.dumps(CLASSES)}\ntarget: {{csv: [{csv.name}]}}\n"
                                   "output: {manifest: m.parquet, data_root: data}\n")
    t = time.perf_counter()
    res = crawl(load_recipe(folder / "k.yaml"), dry_run=True)
    return {"rows": len(res.df), "seconds": time.perf_counter() - t,
            "peak_rss_gb": peak_rss_gb()}


def _child(what: str, n: int, commits: int) -> dict:
    """Run memory_loop or dry_run in a fresh interpreter, so its peak RSS is its own."""
    out = subprocess.run([sys.executable, __file__, f"--{what}", str(n), "--commits", str(commits)],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def row(name: str, r: dict | None, projected: bool = False) -> str:
    if r is None:
        return f"{name:<22} not installed"
    c = r["commit"]

    def s(key: str) -> str:
        v = r.get(key)
        return "-" if v is None else f"{v:.2f}"
    mark = " (projected)" if projected else ""
    return (f"{name:<22} commit median {c['median_ms']:9.1f} ms  mean {c['mean_ms']:9.1f}  max {c['max_ms']:9.1f} "
            f"(n={c['n']}){mark}  read {s('read_s')} s  filtered {s('filtered_s')} s  compact {s('compact_s')} s")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000, 10_000_000])
    ap.add_argument("--commits", type=int, default=64, help="500-row commits per candidate (Delta MERGE: 3, Lance: 8)")
    ap.add_argument("--old-at-max", action="store_true", help="Measure the single file at the largest size too.")
    ap.add_argument("--memory-rows", type=int, default=10_000_000, help="Rows of the plan + commit loop (0: skip).")
    ap.add_argument("--dry-run-rows", type=int, default=1_000_000, help="Kinetics CSV rows to dry-run (0: skip).")
    ap.add_argument("--memory-loop", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--dry-run", type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    if a.memory_loop:
        print(json.dumps(memory_loop(a.memory_loop, a.commits)))
        return
    if a.dry_run:
        print(json.dumps(dry_run(a.dry_run)))
        return
    results: dict[int, dict] = {}
    for n in a.sizes:
        base = planned(n)
        old_measured = n != max(a.sizes) or a.old_at_max or len(a.sizes) == 1
        single = bench_single(n, base, min(a.commits, 8 if n <= 100_000 else 3)) if old_measured else None
        results[n] = {"single": single, "folder": bench_folder(n, base, a.commits),
                      "delta": bench_delta(n, base, a.commits), "lance": bench_lance(n, base, a.commits)}
        del base
        if single is None:      # O(manifest) per commit and per read: scale the size below linearly
            below = max(m for m in results if m < n)
            f = n / below
            prev = results[below]["single"]
            results[n]["single"] = {**{k: (v * f if isinstance(v, float) else v) for k, v in prev.items()},
                                    "commit": {k: (v * f if k != "n" else v) for k, v in prev["commit"].items()},
                                    "projected": True}
        r = results[n]
        fo, si = r["folder"], r["single"]
        print(f"\n{n:,} rows (commits of {BATCH} rows):")
        print(row("single file (today)", si, si.get("projected", False)))
        print(f"{'':<22} = upsert {si['upsert_ms']:.0f} ms + write {si['write_ms']:.0f} ms")
        print(row("folder (curate)", fo) + f"  [{fo['files']} files before compaction]")
        print(f"{'':<22} compacted: read {fo['read_compacted_s']:.2f} s  filtered {fo['filtered_compacted_s']:.2f} s"
              + (f"  DuckDB count of one class {fo['duckdb_s']:.2f} s" if fo["duckdb_s"] is not None else ""))
        print(row("delta MERGE", r["delta"]))
        if r["delta"]:
            ap_ = r["delta"]["append"]
            print(f"{'delta append (+LWW)':<22} commit median {ap_['median_ms']:9.1f} ms  mean {ap_['mean_ms']:9.1f}  "
                  f"max {ap_['max_ms']:9.1f} (n={ap_['n']})  (readers must dedupe by item_id themselves)")
        print(row("lance merge_insert", r["lance"]))
        print(f"commit ratio single file / folder (median): {si['commit']['median_ms'] / fo['commit']['median_ms']:.0f}x")
    if a.memory_rows:
        m = _child("memory-loop", a.memory_rows, 200)
        print(f"\nplan + commit loop, {m['rows']:,} rows in a fresh process: plan written in {m['plan_s']:.1f} s, "
              f"{m['todo']:,} rows to do read back, {m['commit']['n']} commits of {BATCH}: median "
              f"{m['commit']['median_ms']:.1f} ms, max {m['commit']['max_ms']:.0f} ms; compaction {m['compact_s']:.1f} s; "
              f"peak RSS {m['peak_rss_gb']:.2f} GB (target < 4 GB)")
    if a.dry_run_rows:
        d = _child("dry-run", a.dry_run_rows, 0)
        print(f"\ncurate crawl --dry-run of a {d['rows']:,}-row Kinetics CSV (700 classes): {d['seconds']:.1f} s, "
              f"peak RSS {d['peak_rss_gb']:.2f} GB (target < 60 s)")
    (OUT / "results.json").write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1))


if __name__ == "__main__":
    main()
