"""Sources: Kinetics CSV planning at scale, image search providers against faithful fakes, URL lists, feeds via yt-dlp."""
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np
import pandas as pd
import pytest

from curate.core import manifest as mf
from curate.crawl.crawler import crawl, select_labels
from curate.crawl.fetch import Http
from curate.crawl.plan import queries_for
from curate.crawl.recipe import DownloadSpec, RecipeError, load_recipe
from curate.crawl.sources import plan


def write_recipe(tmp_path, body, classes=("a", "b")):
    p = tmp_path / "r.yaml"
    p.write_text(f"name: t\nclasses: {json.dumps(list(classes))}\n{body}\noutput: {{manifest: m.parquet, data_root: data}}\n")
    return load_recipe(p)


def test_kinetics_csv_of_250k_rows_plans_every_row(tmp_path):
    classes = [f"class {i}" for i in range(400)]
    rng = np.random.default_rng(0)
    n = 250_000
    start = rng.integers(0, 300, n)
    df = pd.DataFrame({"label": np.array(classes)[rng.integers(0, 400, n)],
                       "youtube_id": [f"v{i:010d}" for i in range(n)], "time_start": start, "time_end": start + 10,
                       "split": np.where(rng.random(n) < 0.9, "train", "validate"), "is_cc": 0})
    df.loc[:9, "label"] = "not a class"                                  # skipped, and said so
    df.to_csv(tmp_path / "k.csv", index=False)
    recipe = write_recipe(tmp_path, "target: {csv: [k.csv], video_url: 'https://yt.example/w?v={youtube_id}'}",
                          classes)
    rows, ctx = plan(recipe, select_labels(recipe, None), http=None)
    assert len(rows) == n - 10 and rows["item_id"].is_unique
    assert set(rows["split"]) == {"train", "val"} and (rows["end_s"] - rows["start_s"] == 10).all()
    r = rows.iloc[123]
    assert r["item_id"] == mf.item_id("kinetics", r["source_id"], r["start_s"], r["end_s"])
    assert r["url"] == f"https://yt.example/w?v={r['source_id']}" and classes[r["label_id"]] == r["label"]
    assert any("10 annotation rows" in note for note in ctx.notes)
    mf.check(rows)


class _FakeApis(BaseHTTPRequestHandler):
    """Openverse's /v1/images/ and Pexels' /v1/search in their public JSON shapes; images point at the loopback web."""

    images: list = []
    key = "sekret"

    def do_GET(self):  # noqa: N802
        parts = urlsplit(self.path)
        q = {k: v[0] for k, v in parse_qs(parts.query).items()}
        if parts.path == "/v1/images/":
            page, size = int(q.get("page", 1)), int(q.get("page_size", 20))
            chunk = self.images[(page - 1) * size: page * size]
            body = {"result_count": len(self.images), "page_count": -(-len(self.images) // size), "page_size": size,
                    "page": page, "results": [{"id": f"ov-{q['q']}-{i}", "title": f"{q['q']} {i}", "url": u,
                                               "thumbnail": u, "width": 64, "height": 48, "license": "by",
                                               "provider": "flickr", "filetype": "jpg"}
                                              for i, u in enumerate(chunk, (page - 1) * size)]}
        elif parts.path == "/v1/search":
            if self.headers.get("Authorization") != self.key:
                return self._send(401, {"error": "Unauthorized"})
            page, per = int(q.get("page", 1)), int(q.get("per_page", 15))
            chunk = self.images[(page - 1) * per: page * per]
            more = page * per < len(self.images)
            body = {"page": page, "per_page": per, "total_results": len(self.images),
                    "photos": [{"id": 1000 * ord(q["query"][0]) + i, "width": 64, "height": 48, "url": f"https://www.pexels.com/photo/{i}/",
                                "alt": q["query"], "src": {"original": u, "large": u}}
                               for i, u in enumerate(chunk, (page - 1) * per)],
                    **({"next_page": f"/v1/search/?page={page + 1}&per_page={per}"} if more else {})}
        else:
            return self._send(404, {"error": "not found"})
        self._send(200, body)

    def _send(self, status, body):
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *a):
        pass


@pytest.fixture(scope="module")
def apis(web, truth):
    ok = truth[(truth["media"] == "image") & truth["broken"].isna() & ~truth["noai"] & ~truth["private"]
               & truth["path"].notna()]
    _FakeApis.images = [web.url + u for u in ok["url"][:7]]
    server = ThreadingHTTPServer(("127.0.0.1", 0), _FakeApis)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}"
    server.shutdown()


@pytest.mark.parametrize("provider", ["openverse", "pexels"])
def test_image_providers_page_through_public_api_shapes(tmp_path, apis, provider, monkeypatch):
    monkeypatch.setenv("PEXELS_API_KEY", _FakeApis.key)
    recipe = write_recipe(tmp_path, f"sources:\n  - {{name: s, kind: image_search, provider: {provider}, "
                                    f"endpoint: '{apis}', per_class: 5, per_query: 5}}\n"
                                    "download: {retries: 0, rate_per_host: 0}")
    res = crawl(recipe)
    df = res.df
    assert len(df) == 10 and (df.groupby("label").size() == 5).all()   # quota per class, pages of 5 then more
    assert (df["status"] == "ok").sum() == 5 and set(df["source"]) == {"web_image"}
    dups = df[df["status"] == "rejected"]                                 # class b found class a's URLs again
    assert len(dups) == 5 and dups["dup_of"].isin(df.loc[df["status"] == "ok", "item_id"]).all()
    assert set(df["url"]) <= set(_FakeApis.images)


def test_keyed_provider_takes_its_key_from_the_environment_only(tmp_path, apis, monkeypatch):
    monkeypatch.delenv("PEXELS_API_KEY", raising=False)
    body = f"sources:\n  - {{name: s, kind: image_search, provider: pexels, endpoint: '{apis}'}}"
    with pytest.raises(RecipeError, match="PEXELS_API_KEY"):
        crawl(write_recipe(tmp_path, body))
    monkeypatch.setenv("PEXELS_API_KEY", "wrong")
    rows, ctx = plan(write_recipe(tmp_path, body), {"a": 0}, Http(DownloadSpec(retries=0)))
    assert len(rows) == 0 and "http_403" not in ctx.notes[0] and "401" in ctx.notes[0]
    with pytest.raises(RecipeError, match=r"sources\[0\].provider: 'bing' is not one of"):
        crawl(write_recipe(tmp_path, body.replace("pexels", "bing")))


def test_url_lists_txt_csv_parquet(tmp_path, web, truth):
    urls = [web.url + u for u in truth.loc[truth["media"] == "image", "url"].dropna()[:4]]
    (tmp_path / "l.txt").write_text("# a comment\n" + "\n".join(urls) + "\n\n")
    pd.DataFrame({"url": urls, "label": ["a", "b", "zzz", "a"]}).to_csv(tmp_path / "l.csv", index=False)
    pd.DataFrame({"url": urls + [web.url + "/v/x.mp4"]}).to_parquet(tmp_path / "l.parquet")
    for name, want in (("l.txt", 4), ("l.csv", 3), ("l.parquet", 5)):
        recipe = write_recipe(tmp_path, f"sources:\n  - {{name: s, kind: urls, file: {name}}}")
        rows, _ = plan(recipe, {"a": 0, "b": 1}, None)
        assert len(rows) == want, name
    assert rows["media"].tolist() == ["image"] * 4 + ["video"]
    with pytest.raises(RecipeError, match="no 'url' column"):
        pd.DataFrame({"link": urls}).to_csv(tmp_path / "bad.csv", index=False)
        plan(write_recipe(tmp_path, "sources:\n  - {name: s, kind: urls, file: bad.csv}"), {"a": 0}, None)


def test_hashtag_feeds_loopback_json_and_ytdlp_tag_pages(tmp_path, web, tiny_world, truth):
    label = tiny_world.classes[0]
    assert queries_for(["#{tag}", "{label}"], "square slides left") == [
        "#squareslidesleft", "#squareslideleft", "#leftslidesquare", "square slides left"]
    posts = truth[(truth["kind"] == "feed_image") & truth["tag"].notna() & ~truth["gone"]]
    body = (f"sources:\n  - {{name: f, kind: feed, media: image, endpoint: '{web.url}', per_class: 100}}\n"
            f"  - {{name: v, kind: feed, provider: ytdlp, media: video, per_class: 100, "
            f"options: {{url: '{web.url}/tags/{{tag}}?type=video&format=html'}}}}")
    recipe = write_recipe(tmp_path, body, tiny_world.classes)
    rows, ctx = plan(recipe, {label: 0}, Http(DownloadSpec()))
    imgs = rows[rows["source"] == "feed_image"]
    tags = [q.lstrip("#") for q in queries_for(["#{tag}"], label)]
    want = posts[posts["tag"].isin(tags)]
    assert sorted(imgs["source_id"]) == sorted(want["source_id"])
    vids = rows[rows["source"] == "feed_video"]
    vposts = truth[(truth["kind"] == "feed_video") & truth["tag"].isin(tags) & ~truth["gone"]]
    assert len(vids) == len(vposts) > 0 and all(u.startswith(web.url) for u in vids["url"])
