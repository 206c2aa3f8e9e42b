"""Crawl speed: (1) planning a 250k-row Kinetics CSV vs a naive per-row loop; (2) images/s of `curate crawl` on
loopback vs a plain thread-pool urllib downloader and img2dataset (when installed) on the same URL list and thread
count, the loopback web served by its own process. Prints ratios. Both in one process (curate's threads vs
img2dataset --processes_count 1) and over one process per CPU (curate --executor processes vs img2dataset
--processes_count N), the same total threads.

PYTHONPATH=. python bench/crawl.py [--rows 250000] [--images 5000] [--workers 16] [--profile]
"""
from __future__ import annotations

import argparse
import csv
import hashlib
import os
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pandas as pd

from curate.core import manifest as mf
from curate.crawl.crawler import crawl, select_labels
from curate.crawl.recipe import load_recipe
from curate.crawl.sources import plan

OUT = Path("bench/out/crawl")


def bench_plan(rows: int) -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    classes = [f"class {i}" for i in range(400)]
    rng = np.random.default_rng(0)
    start = rng.integers(0, 300, rows)
    pd.DataFrame({"label": np.array(classes)[rng.integers(0, 400, rows)],
                  "youtube_id": [f"v{i:010d}" for i in range(rows)], "time_start": start, "time_end": start + 10,
                  "split": "train"}).to_csv(OUT / "k.csv", index=False)
    (OUT / "k.yaml").write_text(f"name: k\nclasses: {classes}\ntarget: {{csv: [k.csv]}}\n")
    recipe = load_recipe(OUT / "k.yaml")
    t = time.perf_counter()
    df, _ = plan(recipe, select_labels(recipe, None), None)
    ours = time.perf_counter() - t
    t = time.perf_counter()  # the naive peer: csv.DictReader, one dict per row, then the manifest
    labels = {c: i for i, c in enumerate(classes)}
    with open(OUT / "k.csv", newline="") as fh:
        recs = [{"item_id": mf.item_id("kinetics", r["youtube_id"], float(r["time_start"]), float(r["time_end"])),
                 "source": "kinetics", "source_id": r["youtube_id"], "label": r["label"],
                 "label_id": labels[r["label"]], "url": f"https://www.youtube.com/watch?v={r['youtube_id']}",
                 "start_s": float(r["time_start"]), "end_s": float(r["time_end"]), "split": r["split"],
                 "media": "video", "status": "planned"} for r in csv.DictReader(fh) if r["label"] in labels]
    naive_df = mf.from_records(recs)
    naive = time.perf_counter() - t
    assert len(df) == len(naive_df) == rows
    print(f"plan {rows} Kinetics rows: curate {ours:.2f} s, naive per-row loop {naive:.2f} s, ratio {naive / ours:.1f}x")


def serve_process(root: Path):
    """`curate serve-web ROOT` in its own process (so no client shares its GIL); (process, base URL)."""
    import socket
    import subprocess
    import sys

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "curate", "serve-web", str(root), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    for _ in range(200):
        try:
            urllib.request.urlopen(url + "/_stats?reset=1", timeout=1).read()
            return proc, url
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise RuntimeError("the loopback web did not start")


def run_img2dataset(urls_file: Path, out: Path, workers: int, processes: int = 1) -> tuple[float, int] | None:
    """(images/s, successes) of img2dataset on the URL list (files output, no resizing), or None when missing."""
    import json
    import shutil
    import subprocess

    exe = shutil.which("img2dataset") or str(Path(__import__("sys").executable).with_name("img2dataset"))
    if not Path(exe).exists():
        return None
    shutil.rmtree(out, ignore_errors=True)
    cmd = [exe, "--url_list", str(urls_file), "--output_folder", str(out), "--input_format", "txt",
           "--output_format", "files", "--resize_mode", "no", "--processes_count", str(processes),
           "--thread_count", str(-(-workers // processes)), "--retries", "0", "--timeout", "20",
           "--enable_wandb", "False", "--compute_hash", "sha256"]
    t = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True, env={**__import__("os").environ,
                                                             "NO_ALBUMENTATIONS_UPDATE": "1"})
    seconds = time.perf_counter() - t
    ok = sum(json.loads(f.read_text())["successes"] for f in out.glob("*_stats.json"))
    return ok / seconds, ok


def bench_images(n: int, workers: int, profile: bool = False) -> None:
    import shutil

    from curate.demo.synth import make_world

    per = -(-n // 4)
    world = make_world(OUT / "world", num_classes=4, seed=5, workers=2, train_per_class=1, val_per_class=1,
                       test_per_class=1, web_images_per_class=per, feed_images_per_class=1, feed_videos_per_class=1,
                       untrimmed_per_class=1, near_copies=0, routines_per_event=0, scenes=0, broken=0,
                       opt_out_rate=0.0, private_rate=0.0)
    truth = pd.read_parquet(world.truth_web)
    paths = truth.loc[(truth["kind"] == "web_image") & truth["path"].notna(), "url"].tolist()[:n]
    proc, base = serve_process(world.root)
    try:
        urls = [base + p for p in paths]
        (OUT / "urls.txt").write_text("\n".join(urls) + "\n")

        def get(u: str) -> str:
            with urllib.request.urlopen(u, timeout=20) as r:
                return hashlib.sha256(r.read()).hexdigest()
        t = time.perf_counter()
        with ThreadPoolExecutor(workers) as pool:
            list(pool.map(get, urls))
        peer = len(urls) / (time.perf_counter() - t)
        shutil.rmtree(OUT / "data", ignore_errors=True)
        (OUT / "m.parquet").unlink(missing_ok=True)
        (OUT / "r.yaml").write_text(
            f"name: b\nclasses: [a]\nsources:\n  - {{name: l, kind: urls, file: urls.txt}}\n"
            f"download: {{workers: {workers}, per_host: {workers}, rate_per_host: 0, commit_every: 2000}}\n"
            "output: {manifest: m.parquet, data_root: data}\n")
        recipe = load_recipe(OUT / "r.yaml")
        procs = os.cpu_count() or 1

        def ours(executor: str) -> float:
            shutil.rmtree(OUT / "data", ignore_errors=True)
            for f in OUT.glob("m.parquet*"):
                f.unlink()
            prof = _thread_profiler() if profile and executor == "local" else None
            t = time.perf_counter()
            res = crawl(recipe, executor=executor, shard_size=-(-len(urls) // (4 * procs)))
            rate = len(urls) / (time.perf_counter() - t)
            if prof:
                prof()
            assert (res.df["status"] == "ok").sum() == len(urls)
            return rate
        one, many = ours("local"), ours("processes")
        i2d = run_img2dataset(OUT / "urls.txt", OUT / "img2dataset", workers)
        i2d_many = run_img2dataset(OUT / "urls.txt", OUT / "img2dataset", workers, procs) if i2d else None
    finally:
        proc.kill()
        proc.wait()
    print(f"{len(urls)} loopback images, {workers} threads in all, server in its own process:\n"
          f"  curate crawl {one:.0f} img/s in one process, {many:.0f} img/s over {procs} processes (fetch + robots + "
          f"sniff + probe + sha256 + atomic place + attempt log + manifest)\n"
          f"  plain thread pool urllib {peer:.0f} img/s (fetch + sha256 only), ratio {one / peer:.2f}x")
    if i2d is None or i2d_many is None:
        print("  img2dataset: not installed (pip install img2dataset), no ratio")
    else:
        print(f"  img2dataset {i2d[0]:.0f} img/s in one process, {i2d_many[0]:.0f} img/s over {procs} processes "
              f"({i2d[1]} / {i2d_many[1]} ok; files, no resize)\n"
              f"  ratio curate / img2dataset: {one / i2d[0]:.2f}x in one process, {many / i2d_many[0]:.2f}x over "
              f"{procs}, {max(one, many) / max(i2d[0], i2d_many[0]):.2f}x best against best")


def _thread_profiler():
    """cProfile every thread started from now on (and this one); the returned function prints the merged top 25."""
    import cProfile
    import pstats
    import threading

    profiles = [cProfile.Profile()]

    def start(*_):
        p = cProfile.Profile()
        profiles.append(p)
        p.enable()
    threading.setprofile(start)
    profiles[0].enable()

    def report() -> None:
        threading.setprofile(None)
        for p in profiles:
            p.disable()
        stats = pstats.Stats(profiles[0])
        for p in profiles[1:]:
            stats.add(p)
        stats.sort_stats("tottime").print_stats(25)
    return report


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rows", type=int, default=250_000)
    ap.add_argument("--images", type=int, default=5000)
    ap.add_argument("--workers", type=int, default=16)
    ap.add_argument("--profile", action="store_true", help="cProfile the crawl's threads and print the top 25.")
    a = ap.parse_args()
    if a.rows:
        bench_plan(a.rows)
    bench_images(a.images, a.workers, a.profile)
