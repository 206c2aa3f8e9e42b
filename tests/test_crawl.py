"""curate crawl against the loopback web: real yt-dlp, real ffmpeg, faults, resume, kills, malicious input, dry run."""
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pandas as pd
import pytest

from curate import media
from curate.core import manifest as mf
from curate.crawl.crawler import crawl
from curate.crawl.recipe import RecipeError, load_recipe
from curate.demo.synth.faults import Faults
from curate.demo.synth.web import serve

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "recipes" / "demo.yaml"
CODE_OF_BROKEN = {"truncated_mp4": "truncated", "html_mp4": "not_media", "empty_jpg": "empty",
                  "random_jpg": "undecodable", "truncated_jpg": "truncated"}


WEB_FAULTS = Faults(slow_s=2.0)   # the `web` fixture serves with these


def demo_recipe(tmp_path, web_url, text=None, **download):
    """recipes/demo.yaml pointed at a running loopback web, writing under tmp_path."""
    text = (text or DEMO.read_text()).replace("http://127.0.0.1:8000", web_url)
    text = text.replace("demo_out/crawl/", f"{tmp_path}/")
    for k, v in download.items():
        text = text.replace("download:\n", f"download:\n  {k}: {v}\n", 1)
    path = tmp_path / "recipe.yaml"
    path.write_text(text)
    return load_recipe(path)


def files_under(root):
    return sorted(p for p in Path(root).rglob("*") if p.is_file() and ".tmp" not in p.parts)


def test_end_to_end_crawl_of_the_loopback_web(tmp_path, web, truth, tiny_world):
    recipe = demo_recipe(tmp_path, web.url)
    web.reset_stats()
    res = crawl(recipe)
    df = mf.read(res.manifest)
    assert len(df) and not (df["status"] == "planned").any()
    assert set(df["source"]) == {"kinetics", "web_image", "youtube", "feed_image", "feed_video"}
    assert df.loc[df["status"].isin(["failed", "rejected"]), "error"].notna().all()
    # Kinetics segments: fetched through yt-dlp download_ranges, one clip's length to within a frame
    kin = df[(df["source"] == "kinetics") & (df["status"] == "ok")]
    csv = pd.read_csv(tiny_world.target_csv)
    assert len(kin) == (~csv["youtube_id"].isin(truth.loc[truth["gone"], "source_id"])).sum()
    for r in kin.itertuples():
        p = media.probe(tmp_path / "data" / r.path)
        assert abs(p.duration_s - (r.end_s - r.start_s)) <= 1 / p.fps + 1e-6
    gone = df[(df["source"] == "kinetics") & df["source_id"].isin(truth.loc[truth["gone"], "source_id"])]
    assert (gone["error"].map(mf.error_code) == "http_404").all()
    # images and videos are the served bytes; names come from ids
    t = truth.set_index("source_id")
    ok = df[(df["status"] == "ok") & (df["source"] != "kinetics")]
    assert (ok["sha256"] == t.loc[ok["source_id"], "sha256"].to_numpy()).all()
    assert all(p == mf.media_relpath(s, i, p.rsplit(".", 1)[1]) for s, i, p in zip(ok["source"], ok["item_id"], ok["path"]))
    assert {"jpg", "mp4"} <= {p.rsplit(".", 1)[1] for p in ok["path"]}
    # consent: robots.txt paths and noai items are never stored
    crawled = t.loc[df["source_id"][df["source"] != "kinetics"]]
    codes = df.set_index("source_id")["error"].map(mf.error_code)
    for sid in crawled.index[crawled["noai"] | crawled["private"]]:
        assert codes[sid] == "opted_out"
    # planted broken files get the media layer's codes; they arrived whole, so they are rejected, not retried
    for sid, kind in crawled["broken"].dropna().items():
        if kind in CODE_OF_BROKEN and not (crawled.loc[sid, "noai"] or crawled.loc[sid, "private"]):
            assert codes[sid] == CODE_OF_BROKEN[kind], sid
            expected = "failed" if kind in ("html_mp4", "empty_jpg") else "rejected"
            assert df.set_index("source_id").loc[sid, "status"] == expected, kind
    stats = json.loads(Path(str(res.manifest) + ".stats.json").read_text())
    assert sum(r["rows"] for r in stats["by_source_status_code"]) == len(df)
    attempts = [json.loads(ln) for ln in Path(str(res.manifest) + ".attempts.jsonl").read_text().splitlines()]
    assert {a["item"] for a in attempts} >= set(df.loc[df["status"] != "rejected", "item_id"])
    # a rerun fetches nothing again
    time.sleep(0.5)   # the server counts a body after its last write returns; the client may be done first
    before = web.stats()["completed"]
    res2 = crawl(recipe)
    assert res2.fetched == 0 and web.stats()["completed"] == before
    whole = ok["url"].map(lambda u: truth.set_index("source_id").loc[u.rsplit("=", 1)[-1], "url"] if "watch" in u
                          else u.replace(web.url, ""))
    # each whole file was served once per logged request for it (a timed-out first try under load is a second
    # request and says so in the log), and once where the log has one request (ffmpeg's segment reads are excluded)
    requests = Counter(a["url"].replace(web.url, "") for a in attempts if a["code"] == "start")
    assert all(1 <= before[u] <= max(requests[u], 1) for u in whole)
    assert all(before[u] == 1 for u in whole if requests[u] <= 1)


def test_segments_full_download_then_ffmpeg_trim(tmp_path, web, tiny_world):
    text = DEMO.read_text().split("sources:")[0] + "download: {segments: full, trim: exact}\n" + \
        "output: {manifest: demo_out/crawl/manifest.parquet, data_root: demo_out/crawl/data}\n"
    recipe = demo_recipe(tmp_path, web.url, text)
    res = crawl(recipe, limit=4)
    ok = res.df[res.df["status"] == "ok"]
    tried = res.df[res.df["status"] != "planned"]
    assert len(ok) >= 2 and res.fetched == len(tried) == 4
    assert (tried.loc[tried["status"] != "ok", "error"].map(mf.error_code) == "http_404").all()  # removed sources
    for r in ok.itertuples():
        p = media.probe(tmp_path / "data" / r.path)
        assert abs(p.duration_s - (r.end_s - r.start_s)) <= 1 / p.fps + 1e-6
        assert p.frames == tiny_world.spec.clip_frames
    assert (res.df["status"] == "planned").sum() == len(res.df) - 4   # --limit leaves the rest for later


def url_list_recipe(tmp_path, urls, **download):
    (tmp_path / "urls.txt").write_text("\n".join(urls) + "\n")
    opts = {"workers": 4, "retries": 2, "backoff_s": 0.05, "timeout_s": 2, "rate_per_host": 0, **download}
    path = tmp_path / "r.yaml"
    path.write_text(f"name: faults\nclasses: [a]\nsources:\n  - {{name: list, kind: urls, file: urls.txt}}\n"
                    f"download: {json.dumps(opts)}\noutput: {{manifest: m.parquet, data_root: data}}\n")
    return load_recipe(path)


def test_faults_get_retried_or_clear_codes(tmp_path, web, truth):
    img = truth[(truth["media"] == "image") & truth["broken"].isna() & ~truth["noai"] & ~truth["private"]
                & truth["path"].notna()].iloc[0]
    base = web.url + img["url"]
    cases = {"429": ("fault=429&fault_times=1", "ok"), "500_once": ("fault=500&fault_times=1", "ok"),
             "500_always": ("fault=500&fault_times=99", "http_5xx"), "reset": ("fault=reset&fault_times=2", "ok"),
             "truncate": ("fault=truncate&fault_times=1", "ok"), "slow": ("fault=slow&fault_times=99", "timeout"),
             "html": ("fault=html&fault_times=99", "not_media")}
    urls = [f"{base}?{q}&case={name}" for name, (q, _) in cases.items()]
    urls.append(web.url + "/i/does-not-exist.jpg")
    recipe = url_list_recipe(tmp_path, urls, timeout_s=0.5, retries=2)
    t0 = time.perf_counter()
    res = crawl(recipe)
    df = res.df.set_index("url")
    for name, (q, want) in cases.items():
        row = df.loc[f"{base}?{q}&case={name}"]
        got = "ok" if row["status"] == "ok" or pd.notna(row["dup_of"]) else mf.error_code(row["error"])
        assert got == want, (name, row["error"])
    assert mf.error_code(df.loc[web.url + "/i/does-not-exist.jpg", "error"]) == "http_404"
    assert time.perf_counter() - t0 >= 1.0           # the 429's Retry-After: 1 was honoured
    # the successes of retried URLs are one file each; the duplicate bytes are recorded once
    ok = res.df[res.df["status"] == "ok"]
    dups = res.df[res.df["status"] == "rejected"]
    assert len(ok) == 1 and len(dups) == 3 and (dups["dup_of"] == ok["item_id"].iloc[0]).all()
    assert len(files_under(tmp_path / "data")) == 1


class _Redirect(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802
        self.send_response(302)
        self.send_header("Location", "file:///etc/passwd" if "file" in self.path else "/../../etc/passwd")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *a):
        pass


def test_malicious_inputs_stay_inside_the_data_root(tmp_path, web, truth):
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Redirect)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        red = f"http://127.0.0.1:{server.server_port}"
        img = truth[(truth["media"] == "image") & truth["broken"].isna() & ~truth["noai"] & ~truth["private"]
                    & truth["path"].notna()].iloc[1]
        urls = ["file:///etc/passwd", f"{red}/to-file", f"{red}/dotdot", "http://127.0.0.1:1/x.jpg",
                f"{web.url}{img['url']}?name=../../../../etc/passwd", f"{web.url}{img['url']}?n=" + "x" * 300,
                "javascript:alert(1)"]
        recipe = url_list_recipe(tmp_path, urls, retries=0)
        res = crawl(recipe)
    finally:
        server.shutdown()
    codes = res.df.set_index("url")["error"].map(mf.error_code)
    assert codes["file:///etc/passwd"] == codes[f"{red}/to-file"] == codes["javascript:alert(1)"] == "bad_url"
    assert codes["http://127.0.0.1:1/x.jpg"] == "unreachable"
    data = (tmp_path / "data").resolve()
    files = files_under(tmp_path)
    assert all(data in f.resolve().parents or f.parent in (tmp_path, tmp_path / "m.parquet") for f in files)
    stored = [f for f in files if data in f.resolve().parents]
    assert all(len(f.name) < 30 and "." in f.name for f in stored)


def test_dry_run_touches_nothing_and_typos_name_their_key(tmp_path, web):
    recipe = demo_recipe(tmp_path, web.url)
    web.reset_stats()
    res = crawl(recipe, dry_run=True)
    assert web.stats()["total_requests"] == 0
    manifest = Path(recipe.resolve(recipe.output.manifest))
    assert not manifest.exists() and res.manifest.name == "manifest.plan.parquet"
    q = pd.DataFrame(res.plan.queries)
    assert set(q["source"]) >= {"web_images", "web_videos", "feed_images", "feed_videos", "file"}
    assert (q.loc[q["source"] == "web_images", "label"].value_counts() == 2).all()     # "{label}", "{label} meme"
    bad = tmp_path / "bad.yaml"
    bad.write_text(DEMO.read_text().replace("per_class: 48", "per_clas: 48"))
    with pytest.raises(RecipeError, match=r"sources\[0\]: unknown key 'per_clas' \(did you mean 'per_class'\?\)"):
        load_recipe(bad)
    out = subprocess.run([sys.executable, "-m", "curate", "crawl", str(bad), "--dry-run"], capture_output=True,
                         text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode != 0 and "per_clas" in out.stderr and "Traceback" not in out.stderr
    out = subprocess.run([sys.executable, "-m", "curate", "crawl", str(tmp_path / "recipe.yaml"), "--dry-run"],
                         capture_output=True, text=True, cwd=REPO, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert out.returncode == 0 and "queries a crawl would send" in out.stdout, out.stderr
    assert web.stats()["total_requests"] == 0


@pytest.mark.slow
def test_fault_storm_with_three_sigkills_loses_nothing(tmp_path_factory):
    """>= 1,000 images, ~20 % faulty requests; the crawler is SIGKILLed three times and rerun to the end."""
    from curate.demo.synth import make_world

    world = make_world(tmp_path_factory.mktemp("storm_world"), num_classes=4, seed=1, workers=2, train_per_class=1,
                       val_per_class=1, test_per_class=1, web_images_per_class=300, feed_images_per_class=1,
                       feed_videos_per_class=1, untrimmed_per_class=1, near_copies=0, routines_per_event=0,
                       scenes=0, broken=0)
    tmp = tmp_path_factory.mktemp("storm")
    faults = Faults(rate=0.2, seed=3, kinds=("429", "500", "reset", "slow", "truncate", "html"), max_failures=2,
                    permanent=0.1, slow_s=0.4, retry_after_s=0)   # 429s without a pause: tests/test_polite.py has those
    with serve(world.root, faults=faults) as web:
        recipe = tmp / "r.yaml"
        recipe.write_text(
            f"name: storm\nclasses: {json.dumps(world.classes)}\nsources:\n"
            f"  - {{name: img, kind: image_search, provider: loopback, endpoint: '{web.url}', per_class: 320}}\n"
            "download: {workers: 12, retries: 3, backoff_s: 0.05, timeout_s: 2, rate_per_host: 0, per_host: 12,"
            " commit_every: 50}\noutput: {manifest: m.parquet, data_root: data}\n")
        cmd = [sys.executable, "-m", "curate", "crawl", str(recipe), "--quiet"]
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        manifest, data = tmp / "m.parquet", tmp / "data"
        finished_at_kill: dict[str, int] = {}
        for _ in range(3):
            proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
            seen = len(mf.read(manifest).query("status != 'planned'")) if manifest.exists() else 0
            deadline = time.monotonic() + 60
            while time.monotonic() < deadline:  # kill once this run has committed some new rows
                time.sleep(0.2)
                if manifest.exists():
                    try:
                        now = len(mf.read(manifest).query("status != 'planned'"))
                    except mf.ManifestError:
                        continue
                    if now >= seen + 150:
                        break
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            df = mf.read(manifest)                       # readable after every kill
            assert len(df) >= 1000
            time.sleep(0.5)   # the server counts a body after its last write returns, the client may be done first
            completed = web.stats()["completed"]
            for f in files_under(data):                  # placed files are finished items
                url = df.set_index("item_id").loc[f.stem, "url"].replace(web.url, "").split("?")[0]
                finished_at_kill.setdefault(url, completed.get(url, 0))
        out = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr[-2000:]
        stats = web.stats()
    df = mf.read(manifest)
    assert len(df) >= 1000 and set(df["status"]) <= {"ok", "failed", "rejected"}
    failed = df[df["status"] == "failed"]
    assert failed["error"].map(mf.error_code).notna().all() and (df["status"] == "ok").sum() > 0.8 * len(df)
    assert sum(stats["faults"].values()) > 150
    assert len(finished_at_kill) > 300
    for url, n in finished_at_kill.items():              # nothing finished before a kill was fetched again
        assert stats["completed"].get(url, 0) == n, url
    ok = df[df["status"] == "ok"]
    assert all((data / p).exists() for p in ok["path"])
