"""The loopback web: every endpoint, Range, robots/noai, fault injection and its clearing, counters, real yt-dlp."""
import hashlib
import http.client
import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pandas as pd
import pytest

from curate.demo.synth.faults import FAULT_KINDS, Faults
from curate.demo.synth.web import serve

WEB_FAULTS = Faults(slow_s=0.3)   # the `web` fixture serves with these


def get(url, headers=None, timeout=10):
    req = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        return r.status, dict(r.headers), r.read()


def get_json(url):
    return json.loads(get(url)[2])


def sha(b):
    return hashlib.sha256(b).hexdigest()


def test_image_search_pages_through_every_result(web, truth, tiny_world):
    label = tiny_world.classes[0]
    expect = truth[(truth["kind"] == "web_image") & (truth["query"] == label)]
    seen, url = [], f"{web.url}/search?q={label.replace(' ', '+')}&type=image&per_page=4"
    while url:
        page = get_json(url)
        assert page["total"] == len(expect) and len(page["results"]) <= 4
        seen += page["results"]
        url = page["next"]
    assert sorted(r["id"] for r in seen) == sorted(expect["source_id"])
    first = seen[0]
    row = truth.set_index("source_id").loc[first["id"]]
    assert (first["width"], first["height"]) == (row["width"], row["height"])
    status, headers, body = get(first["url"])
    assert status == 200 and headers["Content-Type"] == first["mime"]
    assert sha(body) == row["sha256"]
    # extra words around the class name still find it; unknown queries find nothing
    assert get_json(f"{web.url}/search?q={label.replace(' ', '+')}+photos&type=image")["total"] == len(expect)
    assert get_json(f"{web.url}/search?q=zebra+crossing&type=image")["total"] == 0


def test_video_search_gives_watch_pages(web, truth, tiny_world):
    label = tiny_world.classes[1]
    page = get_json(f"{web.url}/search?q={label}&type=video".replace(" ", "%20"))
    expect = truth[(truth["kind"] == "untrimmed") & (truth["query"] == label)]
    assert sorted(r["id"] for r in page["results"]) == sorted(expect["source_id"])
    assert all(r["page_url"].endswith(f"/watch?v={r['id']}") and r["duration"] > 0 for r in page["results"])


def test_date_filters_split_a_query(web, tiny_world):
    q = f"{web.url}/search?q={tiny_world.classes[0]}&type=image&per_page=100".replace(" ", "+")
    total = get_json(q)["total"]
    early, late = get_json(q + "&before=2017-06-01")["total"], get_json(q + "&after=2017-06-01")["total"]
    assert early + late == total and early > 0 and late > 0


def test_hashtag_feeds_json_and_html(web, truth):
    posts = truth[truth["kind"].isin(["feed_image", "feed_video"]) & truth["tag"].notna() & ~truth["gone"]]
    tag = posts["tag"].iloc[0]
    for media in ("image", "video"):
        expect = posts[(posts["tag"] == tag) & (posts["media"] == media)]
        feed = get_json(f"{web.url}/tags/{tag}?type={media}&per_page=100")
        assert sorted(r["id"] for r in feed["results"]) == sorted(expect["source_id"])
    # '#Tag' spellings normalise to the stored tag
    upper = get_json(f"{web.url}/tags/%23{tag.upper()}?type=image")
    assert upper["total"] == get_json(f"{web.url}/tags/{tag}?type=image")["total"]
    status, headers, page = get(f"{web.url}/tags/{tag}?type=image&format=html")
    assert headers["Content-Type"].startswith("text/html") and page.count(b"<article") >= 1 and b"<img" in page


def test_watch_pages_and_removed_videos(web, truth):
    vid = truth[(truth["kind"] == "untrimmed") & truth["broken"].isna()].iloc[0]
    status, _, page = get(f"{web.url}/watch?v={vid['source_id']}")
    text = page.decode()
    assert f'<source src="{vid["url"]}" type="video/mp4">' in text
    assert f'<meta name="video_id" content="{vid["source_id"]}">' in text and 'property="og:title"' in text
    gone = truth[truth["gone"]]
    for wid in list(gone["source_id"][:1]) + ["nonexistent1"]:
        with pytest.raises(urllib.error.HTTPError) as err:
            get(f"{web.url}/watch?v={wid}")
        assert err.value.code == 404


def test_kinetics_csv_ids_resolve_to_watch_pages(web, tiny_world):
    _, _, body = get(f"{web.url}/datasets/target.csv")
    assert body.decode() == tiny_world.target_csv.read_text()
    _, _, body = get(f"{web.url}/datasets/target_val.csv")
    lines = body.decode().splitlines()
    assert lines[0] == "label,youtube_id,time_start,time_end,split" and all(ln.endswith(",val") for ln in lines[1:])
    truth = pd.read_parquet(tiny_world.truth_web).set_index("source_id")
    yid = next(ln.split(",")[1] for ln in lines[1:] if not truth.loc[ln.split(",")[1], "gone"])
    assert get(f"{web.url}/watch?v={yid}")[0] == 200


def test_robots_and_noai(web, truth):
    _, _, body = get(f"{web.url}/robots.txt")
    assert b"Disallow: /private/" in body
    private = truth[truth["private"] & truth["path"].notna()]
    assert len(private) and all(u.startswith("/private/") for u in private["url"])
    noai = truth[truth["noai"] & truth["path"].notna()].iloc[0]
    assert get(web.url + noai["url"])[1]["X-Robots-Tag"] == "noai, noimageai"
    plain = truth[~truth["noai"] & truth["path"].notna()].iloc[0]
    assert "X-Robots-Tag" not in get(web.url + plain["url"])[1]


def test_range_requests(web, truth):
    row = truth[(truth["media"] == "video") & truth["path"].notna() & truth["broken"].isna()].iloc[0]
    full = get(web.url + row["url"])[2]
    status, headers, part = get(web.url + row["url"], {"Range": "bytes=10-99"})
    assert status == 206 and part == full[10:100] and headers["Content-Range"] == f"bytes 10-99/{len(full)}"
    assert get(web.url + row["url"], {"Range": "bytes=-16"})[2] == full[-16:]
    assert get(web.url + row["url"], {"Range": f"bytes={len(full) - 5}-"})[2] == full[-5:]
    with pytest.raises(urllib.error.HTTPError) as err:
        get(web.url + row["url"], {"Range": f"bytes={len(full)}-"})
    assert err.value.code == 416


def test_forced_faults_and_their_clearing(web, truth):
    url = web.url + truth[(truth["media"] == "image") & truth["path"].notna()].iloc[0]["url"]
    expect = get(url)[2]
    for kind in FAULT_KINDS:
        u = f"{url}?fault={kind}&fault_times=2&k={kind}"  # a fresh target per kind
        for _ in range(2):
            t0 = time.perf_counter()
            if kind in ("429", "500", "503", "404", "410"):
                with pytest.raises(urllib.error.HTTPError) as err:
                    get(u)
                assert err.value.code == int(kind)
                if kind == "429":
                    assert err.value.headers["Retry-After"] == "1"
            elif kind == "reset":
                with pytest.raises((ConnectionResetError, http.client.RemoteDisconnected, urllib.error.URLError)):
                    get(u)
            elif kind == "truncate":
                with pytest.raises(http.client.IncompleteRead):
                    get(u)
            elif kind == "html":
                status, headers, body = get(u)
                assert status == 200 and headers["Content-Type"].startswith("text/html") and b"sign in" in body
            elif kind == "slow":
                assert get(u)[2] == expect and time.perf_counter() - t0 >= 0.25
        assert get(u)[2] == expect, f"{kind} did not clear after its two failures"
    with pytest.raises(urllib.error.HTTPError) as err:
        get(url + "?fault=teapot")
    assert err.value.code == 400


def _fetch(url):
    try:
        return get(url)[2]
    except (urllib.error.URLError, ConnectionError, http.client.HTTPException):
        return None


def test_server_faults_are_deterministic_and_clear(tiny_world, truth):
    faults = Faults(rate=0.5, seed=7, max_failures=2, slow_s=0.05)
    want = truth[truth["path"].notna() & truth["url"].str.startswith("/i/")].set_index("url")["sha256"][:40]
    first_failures = []
    for _ in range(2):
        with serve(tiny_world.root, faults=faults) as web:
            first = {u: _fetch(web.url + u) for u in want.index}
            first_failures.append({u for u, b in first.items() if b is None or sha(b) != want[u]})
            for u in want.index:  # a client retrying up to max_failures times gets every file
                tries = 1
                while first[u] is None or sha(first[u]) != want[u]:
                    first[u] = _fetch(web.url + u)
                    tries += 1
                    assert tries <= faults.max_failures + 1, f"{u} still failing"
            stats = web.stats()
    predicted = {u for u in want.index if faults.pick(u, 0) not in (None, "slow")}
    assert first_failures[0] == first_failures[1] == predicted
    assert 0.25 < len(predicted) / len(want) < 0.7
    assert sum(stats["faults"].values()) >= len(predicted)
    # a page picked to be gone (404, 410) stays gone; other kinds clear after max_failures
    assert Faults(rate=1, kinds=("404", "410")).pick("/i/x.jpg", 99) in ("404", "410")
    assert Faults(rate=1, kinds=("503",), max_failures=1).pick("/i/x.jpg", 1) is None


def test_counters_count_requests_and_full_deliveries(tiny_world, truth):
    rows = truth[truth["path"].notna() & (truth["media"] == "video")].head(5)
    with serve(tiny_world.root) as web:
        for u in rows["url"]:
            get(web.url + u)
        get(web.url + rows["url"].iloc[0], {"Range": "bytes=0-9"})        # partial: not a full delivery
        get(web.url + rows["url"].iloc[1], {"Range": "bytes=100-"})       # a resumed download finishes the file
        stats = get_json(web.url + "/_stats")
        assert stats["requests"][rows["url"].iloc[0]] == 2
        assert stats["completed"] == {u: 1 + (u == rows["url"].iloc[1]) for u in rows["url"]}
        assert stats["status"] == {"200": 5, "206": 2}
        assert get_json(web.url + "/_stats?reset=1")["total_requests"] == 7
        assert web.stats()["total_requests"] == 0


def test_yt_dlp_downloads_a_watch_page(web, truth, tmp_path):
    yt_dlp = pytest.importorskip("yt_dlp")
    row = truth[(truth["kind"] == "untrimmed") & truth["broken"].isna() & ~truth["gone"]].iloc[0]
    opts = {"outtmpl": str(tmp_path / "clip.%(ext)s"), "quiet": True, "no_warnings": True, "noprogress": True}
    with yt_dlp.YoutubeDL(opts) as ydl:
        info = ydl.extract_info(f"{web.url}/watch?v={row['source_id']}", download=True)
    assert info["title"].startswith(row["title"])
    assert sha((tmp_path / "clip.mp4").read_bytes()) == row["sha256"]


def test_serve_web_command(tiny_world):
    proc = subprocess.Popen([sys.executable, "-m", "curate", "serve-web", str(tiny_world.root), "--port", "0",
                             "--faults", "0.1"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        line = proc.stdout.readline()
        assert "serving" in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        assert b"Disallow" in get(url + "/robots.txt")[2]
    finally:
        proc.send_signal(signal.SIGTERM)    # what a service manager sends (SIGINT may be ignored in CI's jobs)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "served 1 requests" in out


def test_yt_dlp_fetches_only_a_kinetics_segment(web, tiny_world, tmp_path):
    yt_dlp = pytest.importorskip("yt_dlp")
    from yt_dlp.utils import download_range_func

    from curate import media

    csv = pd.read_csv(tiny_world.target_csv)
    gone = pd.read_parquet(tiny_world.truth_web).set_index("source_id")["gone"]
    row = csv[~csv["youtube_id"].map(gone)].iloc[0]
    opts = {"outtmpl": str(tmp_path / "seg.%(ext)s"), "quiet": True, "no_warnings": True, "noprogress": True,
            "download_ranges": download_range_func(None, [(row["time_start"], row["time_end"])]),
            "force_keyframes_at_cuts": True}
    with yt_dlp.YoutubeDL(opts) as ydl:
        ydl.extract_info(f"{web.url}/watch?v={row['youtube_id']}", download=True)
    probe = media.probe(tmp_path / "seg.mp4")
    assert probe.frames == tiny_world.spec.clip_frames
    assert abs(probe.duration_s - (row["time_end"] - row["time_start"])) <= 1 / tiny_world.spec.fps
