"""Polite HTTP for crawling: failure codes, retries with backoff and Retry-After, per-host caps, robots.txt, opt-outs."""
from __future__ import annotations

import dataclasses
import email.utils
import hashlib
import http.client
import io
import json
import random
import threading
import time
import urllib.robotparser
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3 import exceptions as u3

from curate import __version__
from curate.crawl.recipe import DownloadSpec
from curate.media import NOT_MEDIA_KINDS, sniff

USER_AGENT = f"curate/{__version__} (dataset crawler; honours robots.txt and noai)"
ROBOTS_AGENT = "curate"
OPT_OUT = ("noai", "noimageai", "noml")

# code -> transient? Transient codes are retried within a run (backoff) and by a rerun; permanent ones only with
# --retry-failed. HTTP and network classes first, then yt-dlp's reasons, then what probing the file can say.
CODES: dict[str, bool] = {
    "http_404": False, "http_410": False, "http_403": False, "http_4xx": False, "http_429": True, "http_5xx": True,
    "timeout": True, "reset": True, "truncated": True, "unreachable": True, "not_media": False, "too_big": False,
    "too_long": False, "opted_out": False, "bad_url": False,
    "removed": False, "private": False, "copyright": False, "geo_blocked": False, "sign_in": True, "age_gated": False,
    "members_only": False, "no_format": False, "drm": False, "live": True, "rate_limited": True, "ip_blocked": True,
    "unsupported": False, "ytdlp_error": True,
    "empty": False, "undecodable": False, "no_video": False, "trim_failed": False, "encode_failed": False,
    "missing": True, "duplicate": False, "crawler_error": True,
}


HOLD_OFF = ("http_429", "rate_limited", "ip_blocked")   # failures that pause the whole host, not only the row
DRAIN_MAX = 64 << 10   # an unread rest up to this size is read and dropped to keep the connection; larger: closed
# urllib3 resends nothing by itself (a retry it made would be a request our attempt log never sees): every retry is
# ours. FOLLOW is for the few requests that follow redirects inside urllib3 (robots.txt, HEAD checks).
NO_RETRIES = urllib3.Retry(total=0, connect=0, read=0, status=0, redirect=0, other=0, raise_on_redirect=False,
                           raise_on_status=False, respect_retry_after_header=False)
FOLLOW = NO_RETRIES.new(total=5, redirect=5)


def http_code(status: int) -> str:
    """Our failure code for an HTTP error status."""
    return {404: "http_404", 410: "http_410", 403: "http_403", 429: "http_429"}.get(
        status, "http_5xx" if status >= 500 else "http_4xx")


def retry_after(value: str | None) -> float | None:
    """Seconds a Retry-After header asks for (delay-seconds or an HTTP date), None when absent or unreadable."""
    value = (value or "").strip()
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, email.utils.parsedate_to_datetime(value).timestamp() - time.time()) if value else None
    except (TypeError, ValueError):
        return None


def refuse_opt_out(headers: Any) -> None:
    """Raise opted_out when the response's X-Robots-Tag says noai, noimageai or noml."""
    value = headers.get("X-Robots-Tag", "")
    if any(t in OPT_OUT for t in value.lower().replace(",", " ").split()):
        raise FetchError("opted_out", f"X-Robots-Tag: {value}")


def is_transient(code: str | None) -> bool:
    """Whether a failure with this code is worth retrying without being asked (unknown codes: yes)."""
    return CODES.get(code or "", True)


class FetchError(Exception):
    """A failed fetch: `code` is a key of CODES; `retry_after` (s) when the server said how long to wait."""

    def __init__(self, code: str, message: str, retry_after: float | None = None):
        self.code, self.retry_after = code, retry_after
        super().__init__(f"{code}: {message}")


@dataclass
class Fetched:
    """A body written to a file: where, how big, its sha256, what its first bytes are, its content type."""

    path: Path
    bytes: int
    sha256: str
    kind: str
    content_type: str
    url: str
    body: bytes | None = None   # the bytes themselves when fetched into memory (download with dest=None)


class _Gate:
    """One host's concurrency cap, request spacing and pause (after a 429 or a Retry-After, every worker holds off
    the host until it ends). Callers start in the order they came; each start is spaced from the last real one, so
    a thread that wakes late under load does not let the next one in right behind it."""

    def __init__(self, per_host: int, rate: float):
        self.cap, self.active = max(1, per_host), 0
        self.interval = 1.0 / rate if rate > 0 else 0.0
        self.cond = threading.Condition()
        self.queue: list[object] = []   # waiting callers, first come first
        self.last = -float("inf")       # the last start (monotonic time)
        self.resume_at = 0.0            # the end of the host's pause

    def __enter__(self) -> None:
        me = object()
        with self.cond:
            self.queue.append(me)
            try:
                while True:
                    now, first = time.monotonic(), self.queue[0] is me
                    at = max(self.last + self.interval, self.resume_at)
                    if first and now >= at and self.active < self.cap:
                        self.active += 1
                        self.last = now
                        return
                    self.cond.wait(at - now if first and now < at else None)
            finally:   # started or interrupted: the next in line times its start
                self.queue.remove(me)
                self.cond.notify_all()

    def __exit__(self, *exc: Any) -> None:
        with self.cond:
            self.active -= 1
            self.cond.notify_all()

    def pause(self, seconds: float) -> None:
        with self.cond:
            self.resume_at = max(self.resume_at, time.monotonic() + seconds)

    def wait_pause(self) -> None:
        """Sleep until the host's pause (if any) is over."""
        while (left := self.resume_at - time.monotonic()) > 0:
            time.sleep(left)


class Http:
    """A shared, thread-safe HTTP client: connection pools, per-host gates, a robots.txt cache, the retry loop."""

    def __init__(self, spec: DownloadSpec, log: Callable[[dict], None] | None = None):
        self.spec = spec
        self.log = log
        self.user_agent = spec.user_agent or USER_AGENT
        self.pool = urllib3.PoolManager(num_pools=256, maxsize=max(2, spec.per_host), retries=NO_RETRIES,
                                        timeout=urllib3.Timeout(connect=spec.timeout_s, read=spec.timeout_s),
                                        headers={"User-Agent": self.user_agent})
        self._gates: dict[str, _Gate] = {}
        self._pools: dict[str, urllib3.HTTPConnectionPool] = {}
        self._robots: dict[str, urllib.robotparser.RobotFileParser | None] = {}
        self._robots_locks: dict[str, threading.Lock] = {}   # one reader per site: threads wait, not re-fetch
        self._lock = threading.Lock()

    # ---------------------------------------------------------------- public

    def get_json(self, url: str, headers: dict[str, str] | None = None, what: str = "") -> Any:
        """GET a JSON document with retries (search APIs, feeds)."""
        buf = io.BytesIO()
        self.retrying(lambda: self._get(url, buf, headers, media=False, max_bytes=64 << 20), what or url, url,
                      reset=buf)
        try:
            return json.loads(buf.getvalue())
        except ValueError as exc:
            raise FetchError("not_media", f"{url} did not return JSON") from exc

    def get_text(self, url: str, what: str = "") -> str:
        """GET a text document with retries (annotation CSVs, URL lists)."""
        buf = io.BytesIO()
        self.retrying(lambda: self._get(url, buf, None, media=False, max_bytes=1 << 30), what or url, url, reset=buf)
        return buf.getvalue().decode("utf-8")

    def download(self, url: str, dest: Path | None, what: str = "") -> Fetched:
        """GET media into dest (overwritten), or into memory (Fetched.body) when dest is None, with retries;
        checks robots, opt-outs, caps and magic bytes; the sha256 is computed as the body streams in."""
        def once() -> Fetched:
            if dest is None:
                buf = io.BytesIO()
                got = self._get(url, buf, None, media=True, max_bytes=self.spec.max_bytes)
                return dataclasses.replace(got, body=buf.getvalue())
            with open(dest, "wb") as fh:
                return self._get(url, fh, None, media=True, max_bytes=self.spec.max_bytes, dest=dest)
        return self.retrying(once, what, url)

    def retrying(self, fn: Callable[[], Any], what: str, url: str, reset: Any = None) -> Any:
        """Call fn until it succeeds, a permanent FetchError, or retries run out; back off exponentially."""
        attempt = 0
        while True:
            if self.log is not None:   # written ahead: a process killed mid-request still accounts for the request
                self.log({"item": what, "url": url, "code": "start"})
            t0 = time.monotonic()
            try:
                out = fn()
                self._log(what, url, "ok", time.monotonic() - t0, getattr(out, "bytes", None))
                return out
            except FetchError as exc:
                self._log(what, url, exc.code, time.monotonic() - t0, None, str(exc))
                if not is_transient(exc.code) or attempt >= self.spec.retries:
                    raise
                delay = self.spec.backoff_s * 2 ** attempt * (1 + random.random())  # noqa: S311 - jitter
                if exc.retry_after is not None:
                    delay = max(delay, min(exc.retry_after, self.spec.retry_after_max_s))
                time.sleep(delay)
                attempt += 1
                if reset is not None:
                    reset.seek(0)
                    reset.truncate()

    def allowed(self, url: str) -> bool:
        """What robots.txt of url's site says about our user agent (allowed when it cannot be read)."""
        parts = urlsplit(url)
        origin = f"{parts.scheme}://{parts.netloc}"
        with self._lock:
            site_lock = self._robots_locks.setdefault(origin, threading.Lock())
        with site_lock:
            if origin not in self._robots:
                self._robots[origin] = self._read_robots(origin)
            rp = self._robots[origin]
        return rp is None or rp.can_fetch(ROBOTS_AGENT, url)

    def gate(self, url: str) -> _Gate:
        """The gate of url's host: `with http.gate(url):` around a request (or a whole download) waits for a free
        start under the host's concurrency cap, rate and pause."""
        host = urlsplit(url).netloc
        with self._lock:
            if host not in self._gates:
                self._gates[host] = _Gate(self.spec.per_host, self.spec.rate_per_host)
            return self._gates[host]

    def hold_off(self, url: str, seconds: float | None = None) -> None:
        """Pause url's host for every worker of this process: `seconds` (a Retry-After, capped by
        retry_after_max_s) or, when the server named no time, backoff_s."""
        wait = self.spec.backoff_s if seconds is None else seconds
        self.gate(url).pause(min(wait, self.spec.retry_after_max_s))

    def refused(self, url: str, status: int, header: str | None) -> float | None:
        """Note an error response: a 429, or any status with a Retry-After header, pauses the host. Returns the
        seconds Retry-After asked for."""
        after = retry_after(header)
        if status == 429 or after is not None:
            self.hold_off(url, after)
        return after

    def head(self, url: str) -> urllib3.BaseHTTPResponse | None:
        """HEAD url (redirects followed) once its host's pause is over; None when it cannot be reached. Not gated
        by rate or concurrency: it belongs to a download that went through the gate."""
        self.gate(url).wait_pause()
        try:
            r = self.pool.request("HEAD", url, redirect=True, retries=FOLLOW, headers={"User-Agent": self.user_agent})
        except (u3.HTTPError, OSError):
            return None
        if r.status >= 400:
            self.refused(url, r.status, r.headers.get("Retry-After"))
        return r

    # ---------------------------------------------------------------- one attempt

    def _read_robots(self, origin: str) -> urllib.robotparser.RobotFileParser | None:
        try:
            r = self.pool.request("GET", origin + "/robots.txt", redirect=True, retries=FOLLOW,
                                  timeout=self.spec.timeout_s)
        except (u3.HTTPError, OSError):
            return None
        if r.status != 200:
            return None
        rp = urllib.robotparser.RobotFileParser()
        rp.parse(r.data.decode("utf-8", errors="replace").splitlines())
        return rp

    def _get(self, url: str, sink: BinaryIO, headers: dict[str, str] | None, media: bool, max_bytes: int,
             dest: Path | None = None) -> Fetched:
        for _ in range(6):  # at most 5 redirects, each checked like the first URL
            parts = urlsplit(url)
            if parts.scheme not in ("http", "https") or not parts.hostname:
                raise FetchError("bad_url", f"refusing to fetch {url[:200]!r} (only http and https)")
            if media and self.spec.respect_robots and not self.allowed(url):
                raise FetchError("opted_out", "robots.txt disallows this path")
            with self.gate(url):
                resp = self._open(parts, headers)
                drain = False   # whether an unread rest may be drained: not on a connection that broke mid-body
                try:
                    if resp.status in (301, 302, 303, 307, 308) and resp.headers.get("Location"):
                        url, drain = urljoin(url, resp.headers["Location"]), True
                        continue
                    return self._read(resp, url, sink, media, max_bytes, dest)   # read to the end: nothing left
                except FetchError as exc:
                    drain = exc.code not in ("timeout", "reset", "truncated", "unreachable")
                    raise
                finally:
                    _release(resp, drain)
        raise FetchError("bad_url", "too many redirects")

    def _open(self, parts, headers: dict[str, str] | None) -> urllib3.BaseHTTPResponse:
        """GET on the origin's connection pool, kept here so each request skips the PoolManager's URL parsing."""
        try:
            pool = self._pools.get(parts.netloc)
            if pool is None or pool.pool is None:   # new origin, or the PoolManager closed it to make room
                if len(self._pools) > 1024:
                    self._pools.clear()
                pool = self._pools[parts.netloc] = self.pool.connection_from_host(parts.hostname, parts.port,
                                                                                  parts.scheme)
            target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
            return pool.urlopen("GET", target, headers={"User-Agent": self.user_agent, **(headers or {})},
                                preload_content=False, redirect=False)
        except u3.MaxRetryError as exc:
            raise _network_error(exc.reason or exc) from exc
        except (u3.HTTPError, OSError) as exc:
            raise _network_error(exc) from exc

    def _read(self, resp: urllib3.BaseHTTPResponse, url: str, sink: BinaryIO, media: bool, max_bytes: int,
              dest: Path | None) -> Fetched:
        status = resp.status
        if status >= 400:
            after = self.refused(url, status, resp.headers.get("Retry-After"))
            raise FetchError(http_code(status), f"HTTP {status} from {url[:200]}", after)
        ctype = resp.headers.get("Content-Type", "")
        if media and self.spec.respect_opt_out:
            refuse_opt_out(resp.headers)
        length = resp.headers.get("Content-Length")
        if length and length.isdigit() and int(length) > max_bytes:
            raise FetchError("too_big", f"Content-Length {length} > cap {max_bytes}")
        h, n, kind = hashlib.sha256(), 0, ""
        deadline = time.monotonic() + 3 * self.spec.timeout_s
        try:
            for chunk in resp.stream(1 << 16):
                if not n and media:
                    kind = sniff(chunk)
                    if kind in NOT_MEDIA_KINDS:
                        raise FetchError("not_media", f"got {kind} ({ctype or 'no content type'}), not media")
                n += len(chunk)
                if n > max_bytes:
                    raise FetchError("too_big", f"body passed the cap of {max_bytes} bytes")
                if time.monotonic() > deadline:
                    raise FetchError("timeout", f"body still arriving after {3 * self.spec.timeout_s:.0f} s")
                h.update(chunk)
                sink.write(chunk)
        except u3.ProtocolError as exc:
            text = str(exc)
            code = "truncated" if "IncompleteRead" in text or "incomplete" in text.lower() else "reset"
            raise FetchError(code, f"{text[:200]}") from exc
        except (u3.ReadTimeoutError, TimeoutError) as exc:
            raise FetchError("timeout", f"no data for {self.spec.timeout_s:.0f} s") from exc
        except (u3.HTTPError, OSError) as exc:
            raise _network_error(exc) from exc
        if media and n == 0:
            raise FetchError("empty", "the body is empty")
        return Fetched(dest or Path(), n, h.hexdigest(), kind, ctype, url)

    def _log(self, what: str, url: str, code: str, seconds: float, nbytes: int | None, message: str = "") -> None:
        if self.log is not None:
            self.log({"item": what, "url": url, "code": code, "s": round(seconds, 4), "bytes": nbytes,
                      "message": message[:300]})


def _release(resp: urllib3.BaseHTTPResponse, drain: bool) -> None:
    """Give resp's connection back to its pool with nothing of this response left on it.

    An unread rest of a body is what the next request on that connection would read first: http.client then refuses
    the new response, and urllib3 (when allowed a read retry) resent the request unseen, so a host got it twice. A
    rest that ends within DRAIN_MAX bytes (and a second) is read and dropped, keeping the connection; a longer one,
    or one on a connection that broke, is closed instead (the pool opens a new connection when it needs one).
    """
    try:
        if drain and not resp.closed and (resp.length_remaining or 0) <= DRAIN_MAX:
            n, deadline = 0, time.monotonic() + 1.0
            while n <= DRAIN_MAX and time.monotonic() < deadline:
                chunk = resp.read(1 << 14, decode_content=False)
                if not chunk:
                    break
                n += len(chunk)
    except (u3.HTTPError, OSError, http.client.HTTPException):
        pass
    if not resp.closed:
        resp.close()
    resp.release_conn()


def _network_error(exc: BaseException) -> FetchError:
    text = str(exc)
    if isinstance(exc, (u3.NameResolutionError, u3.NewConnectionError, ConnectionRefusedError)):  # before timeouts:
        return FetchError("unreachable", text[:200])                               # NewConnectionError subclasses one
    if isinstance(exc, (u3.ConnectTimeoutError, u3.ReadTimeoutError, TimeoutError)):
        return FetchError("timeout", text[:200])
    if isinstance(exc, u3.LocationParseError):
        return FetchError("bad_url", text[:200])
    if isinstance(exc, u3.ProtocolError) and "IncompleteRead" in text:
        return FetchError("truncated", text[:200])
    return FetchError("reset", text[:200])
