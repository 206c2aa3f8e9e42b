"""The loopback web: serves a demo world's web corpus over HTTP on 127.0.0.1 the way real sites do.

Endpoints: image/video search JSON (`/search`), hashtag feeds (`/tags/<tag>`, JSON or HTML), watch pages
(`/watch?v=<id>`, a <video> tag yt-dlp's generic extractor downloads), direct media with Range support, Kinetics-style
CSVs (`/datasets/target.csv`), `robots.txt`, `X-Robots-Tag: noai` on opted-out items, optional fault injection (error
pages with real bodies on keep-alive connections) and request counters with a timeline (`/_stats`).
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import html
import json
import os
import socket
import struct
import threading
import time
from dataclasses import dataclass
from email.utils import formatdate
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Iterator
from urllib.parse import parse_qs, unquote, urlencode, urlsplit

import pandas as pd

from curate.crawl.plan import normalise_query, normalise_tag
from curate.demo.synth.faults import Faults, Stats, forced

ROBOTS_TXT = "User-agent: *\nDisallow: /private/\n\nUser-agent: GPTBot\nDisallow: /\n"
_CACHE_LIMIT = 512 * 2**20
SEARCHED = ("web_image", "distractor_image", "untrimmed", "montage")   # kinds image / video search finds by query


class Site:
    """A world's web corpus indexed for serving: items by id and URL, search lists by query, feeds by tag."""

    def __init__(self, root: str | os.PathLike, search_cap: int | None = None):
        self.root = Path(root)
        index = self.root / "web" / "index.json"
        if not index.exists():
            raise FileNotFoundError(f"{self.root} holds no demo world web (no web/index.json); run `curate demo` or make_world")
        self.items = {it["id"]: it for it in json.loads(index.read_text(encoding="utf-8"))["items"]}
        self.by_url = {it["url"]: it for it in self.items.values() if it["url"]}
        self.search: dict[tuple[str, str], list[dict]] = {}
        self.tags: dict[tuple[str, str], list[dict]] = {}
        for it in sorted(self.items.values(), key=lambda i: hashlib.sha256(i["id"].encode()).hexdigest()):
            if it["gone"] or not it["url"]:
                continue
            if it["query"] and it["kind"] in SEARCHED:
                self.search.setdefault((normalise_query(it["query"]), it["media"]), []).append(it)
            if it["tag"]:
                self.tags.setdefault((it["tag"], it["media"]), []).append(it)
        self.queries = sorted({q for q, _ in self.search}, key=len, reverse=True)
        self.search_cap = search_cap
        csv = self.root / "target.csv"
        self.csv = pd.read_csv(csv, dtype=str, keep_default_na=False) if csv.exists() else None
        self._cache: dict[str, bytes] = {}
        self._cached = 0
        self._lock = threading.Lock()

    def match(self, q: str) -> str | None:
        """The indexed query a search string asks for: exact, or the longest one it contains as whole words."""
        nq = f" {normalise_query(q)} "
        return next((k for k in self.queries if f" {k} " in nq), None)

    def body(self, item: dict) -> bytes:
        """An item's bytes (kept in memory after the first read while the cache is under its limit)."""
        data = self._cache.get(item["id"])
        if data is None:
            data = (self.root / item["file"]).read_bytes()
            with self._lock:
                if self._cached + len(data) <= _CACHE_LIMIT:
                    self._cache[item["id"]] = data
                    self._cached += len(data)
        return data

    def dataset_csv(self, name: str) -> str | None:
        """target.csv, or target_<split>.csv with that split's rows."""
        if self.csv is None or not name.startswith("target") or not name.endswith(".csv"):
            return None
        split = name[len("target"):-len(".csv")].lstrip("_")
        df = self.csv if not split else self.csv[self.csv["split"] == split]
        return None if split and df.empty else df.to_csv(index=False, lineterminator="\n")


def _page(query: dict[str, list[str]]) -> tuple[int, int]:
    page = max(1, int((query.get("page") or ["1"])[0]))
    per_page = min(100, max(1, int((query.get("per_page") or ["20"])[0])))
    return page, per_page


class Handler(BaseHTTPRequestHandler):
    server: "WebServer"
    protocol_version = "HTTP/1.1"
    server_version = "curate-loopback/1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle stall between header and body
        self.server.stats.add(connection=True)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - quiet by default
        if self.server.verbose:
            super().log_message(format, *args)

    def do_HEAD(self) -> None:  # noqa: N802
        self._handle(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._handle(head=False)

    # ---------------------------------------------------------------- dispatch

    def _handle(self, head: bool) -> None:
        self.head, self.fault = head, None
        parts = urlsplit(self.path)
        path, query = unquote(parts.path), parse_qs(parts.query)
        if path == "/_stats":
            stats = self.server.stats.snapshot()
            if "reset" in query:
                self.server.stats.reset()
            return self._send(200, json.dumps(stats).encode(), "application/json", count=False)
        with self.server.stats.handling():
            attempt = self.server.stats.attempt(self.path)
            try:
                self.fault = forced(query, attempt) or self.server.faults.pick(self.path, attempt)
                self._route(path, query)
            except ValueError as exc:
                self.fault = None
                self._send(400, json.dumps({"error": str(exc)}).encode(), "application/json")

    def _route(self, path: str, query: dict[str, list[str]]) -> None:
        site = self.server.site
        if path == "/robots.txt":
            return self._send(200, ROBOTS_TXT.encode(), "text/plain; charset=utf-8")
        if path == "/":
            return self._html(200, "curate loopback web", "<p>Endpoints: /search?q=&amp;type=image|video&amp;page=, "
                              "/tags/&lt;tag&gt;?type=image|video, /watch?v=&lt;id&gt;, /datasets/target.csv, /_stats</p>")
        if path == "/search":
            return self._search(query)
        if path.startswith("/tags/"):
            return self._feed(normalise_tag(path[len("/tags/"):]), query)
        if path == "/watch":
            return self._watch((query.get("v") or [""])[0])
        if path.startswith("/datasets/"):
            text = site.dataset_csv(path[len("/datasets/"):])
            if text is not None:
                return self._send(200, text.encode(), "text/csv; charset=utf-8")
        item = site.by_url.get(path)
        if item is not None:
            return self._media(item)
        self._html(404, "Not found", "<p>No such page.</p>")

    # ---------------------------------------------------------------- endpoints

    def _abs(self, url: str) -> str:
        host = self.headers.get("Host") or f"127.0.0.1:{self.server.server_port}"
        return f"http://{host}{url}"

    def _listing(self, items: list[dict], query: dict[str, list[str]], base: str, extra: dict) -> dict:
        page, per_page = _page(query)
        after, before = (query.get("after") or [""])[0], (query.get("before") or [""])[0]
        items = [it for it in items if (not after or it["uploaded"] >= after) and (not before or it["uploaded"] < before)]
        if self.server.site.search_cap is not None and base == "/search":
            items = items[: self.server.site.search_cap]
        chunk = items[(page - 1) * per_page: page * per_page]
        more = page * per_page < len(items)
        args = {k: v[0] for k, v in query.items() if k not in ("fault", "fault_times")}
        return {**extra, "page": page, "per_page": per_page, "total": len(items),
                "next": self._abs(f"{base}?{urlencode({**args, 'page': page + 1})}") if more else None,
                "results": [self._result(it) for it in chunk]}

    def _result(self, it: dict) -> dict:
        out = {"id": it["id"], "title": it["title"], "url": self._abs(it["url"]), "mime": it["mime"],
               "media": it["media"], "width": it["width"], "height": it["height"], "uploaded": it["uploaded"]}
        if it["media"] == "video":
            out.update(page_url=self._abs(f"/watch?v={it['id']}"), duration=it["duration_s"])
        return out

    def _search(self, query: dict[str, list[str]]) -> None:
        q = (query.get("q") or [""])[0]
        kind = (query.get("type") or ["image"])[0]
        if kind not in ("image", "video"):
            raise ValueError(f"type must be image or video, not {kind!r}")
        key = self.server.site.match(q)
        items = self.server.site.search.get((key, kind), []) if key else []
        body = self._listing(items, query, "/search", {"query": q, "type": kind})
        self._send(200, json.dumps(body).encode(), "application/json")

    def _feed(self, tag: str, query: dict[str, list[str]]) -> None:
        kind = (query.get("type") or ["image"])[0]
        if kind not in ("image", "video"):
            raise ValueError(f"type must be image or video, not {kind!r}")
        body = self._listing(self.server.site.tags.get((tag, kind), []), query, f"/tags/{tag}", {"tag": tag, "type": kind})
        if (query.get("format") or ["json"])[0] != "html":
            return self._send(200, json.dumps(body).encode(), "application/json")
        posts = []
        for r in body["results"]:
            media = (f'<video src="{html.escape(r["url"])}" controls></video>' if r["media"] == "video"
                     else f'<img src="{html.escape(r["url"])}" width="{r["width"]}" height="{r["height"]}">')
            link = r.get("page_url") or r["url"]
            posts.append(f'<article data-id="{r["id"]}"><a href="{html.escape(link)}">{media}</a>'
                         f'<p>{html.escape(r["title"])}</p></article>')
        nxt = f'<a rel="next" href="{html.escape(body["next"])}">more</a>' if body["next"] else ""
        self._html(200, f"#{tag}", "\n".join(posts) + nxt)

    def _watch(self, vid: str) -> None:
        it = self.server.site.items.get(vid)
        if it is None or it["media"] != "video":
            return self._html(404, "Video unavailable", "<p>This video does not exist.</p>")
        if it["gone"]:
            return self._html(404, "Video unavailable", "<p>This video has been removed by the uploader.</p>")
        title, src = html.escape(it["title"]), html.escape(self._abs(it["url"]))
        head = (f'<meta property="og:title" content="{title}">\n<meta property="og:type" content="video.other">\n'
                f'<meta property="og:video" content="{src}">\n<meta property="og:video:type" content="video/mp4">\n'
                f'<meta property="og:video:width" content="{it["width"]}">\n'
                f'<meta property="og:video:height" content="{it["height"]}">\n'
                f'<meta name="video_id" content="{it["id"]}">\n<meta itemprop="uploadDate" content="{it["uploaded"]}">')
        body = (f'<video controls width="{it["width"]}" height="{it["height"]}">'
                f'<source src="{html.escape(it["url"])}" type="video/mp4"></video>\n'
                f'<p class="uploaded">{it["uploaded"]}</p>')
        self._html(200, it["title"], body, head)

    def _media(self, item: dict) -> None:
        data = self.server.site.body(item)
        headers = {"Accept-Ranges": "bytes", "ETag": f'"{hashlib.md5(data).hexdigest()}"',  # noqa: S324 - an ETag
                   "Last-Modified": formatdate(0, usegmt=True)}
        if item["noai"]:
            headers["X-Robots-Tag"] = "noai, noimageai"
        rng = self.headers.get("Range")
        start, end = 0, len(data) - 1
        status = 200
        if rng:
            span = _parse_range(rng, len(data))
            if span is None:
                headers["Content-Range"] = f"bytes */{len(data)}"
                return self._send(416, b"", item["mime"], headers)
            start, end = span
            status = 206
            headers["Content-Range"] = f"bytes {start}-{end}/{len(data)}"
        done = item["url"] if end == len(data) - 1 else None
        self._send(status, data[start:end + 1], item["mime"], headers, completed=done)

    # ---------------------------------------------------------------- responses and faults

    def _html(self, status: int, title: str, body: str, head: str = "") -> None:
        page = (f'<!doctype html>\n<html><head><meta charset="utf-8">\n<title>{html.escape(title)}</title>\n{head}\n'
                f'</head><body>\n<h1>{html.escape(title)}</h1>\n{body}\n</body></html>\n')
        self._send(status, page.encode(), "text/html; charset=utf-8")

    def _send(self, status: int, body: bytes, ctype: str, headers: dict | None = None, completed: str | None = None,
              count: bool = True) -> None:
        fault = getattr(self, "fault", None) if count else None
        stats = self.server.stats
        if fault == "reset":
            stats.add(fault=fault)
            self.close_connection = True
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.connection.close()
            return
        if fault in ERROR_FAULTS:
            stats.add(fault=fault)
            status, completed, headers = ERROR_FAULTS[fault], None, {}
            if fault == "429":
                headers["Retry-After"] = str(self.server.faults.retry_after_s)
            body, ctype = _fault_page(status), "text/html; charset=utf-8"
        if count:   # stamped before the headers go out: no client can have seen them earlier
            stats.add(status=status, target=self.path)
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        if self.head:
            return
        try:
            if fault == "truncate":
                stats.add(fault=fault)
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if fault == "slow":
                stats.add(fault=fault)
                pieces = 8
                step = max(1, -(-len(body) // pieces))
                for i in range(0, len(body), step):
                    self.wfile.write(body[i:i + step])
                    self.wfile.flush()
                    time.sleep(self.server.faults.slow_s / pieces)
            else:
                self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
            return
        stats.add(completed=completed, sent=len(body))


ERROR_FAULTS = {"429": 429, "500": 500, "503": 503, "404": 404, "410": 410, "html": 200}   # fault -> status


@functools.cache
def _fault_page(status: int) -> bytes:
    """The page a faulty response carries, as big as a real site's: an error page (about 4 KB: the site's header,
    a message, a footer of links) or, with status 200, a sign-in wall where media was expected (about 200 KB of
    inline script and style). A client that leaves one unread has it waiting on the connection."""
    links = "".join(f'<li><a href="/section/{i}">Section {i}</a></li>' for i in range(40))
    nav = f'<header><nav><ul class="site-nav">{links}</ul></nav></header>'
    if status == 200:
        title, text = "Sign in", "<p>Please sign in to continue.</p>"
        filler = "<script>/* " + "the site's bundled code, as real sign-in walls inline it " * 3600 + "*/</script>"
    else:
        title, text = f"Error {status}", f"<p>Sorry, this page answered {status}. Try again later or go home.</p>"
        filler = ""
    page = (f'<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>{filler}</head>'
            f'<body>{nav}<main><h1>{title}</h1>{text}</main><footer>{nav}</footer></body></html>\n')
    return page.encode()


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One 'bytes=a-b' / 'bytes=a-' / 'bytes=-n' range clipped to the file, None when unsatisfiable."""
    if not value.startswith("bytes=") or "," in value or size == 0:
        return None
    a, _, b = value[len("bytes="):].strip().partition("-")
    try:
        if not a:
            n = int(b)
            return (max(0, size - n), size - 1) if n > 0 else None
        start = int(a)
        end = min(int(b), size - 1) if b else size - 1
    except ValueError:
        return None
    return (start, end) if start <= end and start < size else None


class WebServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def __init__(self, site: Site, host: str = "127.0.0.1", port: int = 0, faults: Faults | None = None,
                 verbose: bool = False):
        self.site, self.faults, self.stats, self.verbose = site, faults or Faults(), Stats(), verbose
        super().__init__((host, port), Handler)

    def handle_error(self, request, client_address) -> None:
        """A client that hangs up mid-request (yt-dlp and ffmpeg do) is normal traffic, not a traceback."""
        import sys

        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)


@dataclass
class WebHandle:
    """A running loopback web: its base URL, its counters, and a way to stop it."""

    server: WebServer
    thread: threading.Thread

    @property
    def url(self) -> str:
        host, port = self.server.server_address[:2]
        return f"http://{host}:{port}"

    def stats(self) -> dict:
        return self.server.stats.snapshot()

    def reset_stats(self) -> None:
        self.server.stats.reset()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.thread.join(timeout=5)


def start(root: str | os.PathLike, port: int = 0, faults: Faults | None = None, host: str = "127.0.0.1",
          search_cap: int | None = None, verbose: bool = False) -> WebHandle:
    """Serve a world's web in a background thread; call .close() when done (or use `serve`)."""
    server = WebServer(Site(root, search_cap), host, port, faults, verbose)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True,
                              name=f"curate-web:{server.server_port}")
    thread.start()
    return WebHandle(server, thread)


@contextlib.contextmanager
def serve(root: str | os.PathLike, port: int = 0, faults: Faults | None = None, host: str = "127.0.0.1",
          search_cap: int | None = None, verbose: bool = False) -> Iterator[WebHandle]:
    """Context manager: the loopback web of the world at root, on 127.0.0.1 (port 0 = any free port)."""
    handle = start(root, port, faults, host, search_cap, verbose)
    try:
        yield handle
    finally:
        handle.close()
