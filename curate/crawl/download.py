"""Fetching one manifest row: images over polite HTTP, videos (and their segments) through yt-dlp, then probing.

`crawl_rows(rows, ctx)` is the unit of work: a plain function over a batch of manifest rows, safe to run in
threads, processes or Ray tasks. Files land atomically at `media_relpath(source, item_id, ext)` under the data
root, so a file that exists there is finished, whoever fetched it.
"""
from __future__ import annotations

import contextlib
import datetime as dt
import functools
import json
import os
import re
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from curate import media
from curate.core import manifest as mf
from curate.core.files import sha256_file
from curate.crawl.fetch import HOLD_OFF, FetchError, Http, http_code, refuse_opt_out
from curate.crawl.recipe import DownloadSpec
from curate.media.image import probe_image

EXT = {"jpeg": "jpg", "png": "png", "gif": "gif", "webp": "webp", "bmp": "bmp", "tiff": "tif", "avif": "avif",
       "heic": "heic", "mp4": "mp4", "mov": "mov", "mkv": "mkv", "webm": "webm", "avi": "avi", "mpegts": "ts",
       "flv": "flv", "mpeg": "mpg", "ogg": "ogv", "y4m": "y4m"}


_SHARED_HTTP: dict[str, Http] = {}   # CrawlContext.run -> this process's client for that crawl
_SHARED_LOCK = threading.Lock()


@dataclass
class CrawlContext:
    """What a worker needs to fetch rows: the data root, the download options, the attempt log (picklable)."""

    data_root: str
    download: DownloadSpec = field(default_factory=DownloadSpec)
    attempts_log: str | None = None
    run: str = field(default_factory=lambda: uuid.uuid4().hex)   # one crawl: its shards in a process share one Http

    def __post_init__(self) -> None:
        self._log_lock = threading.Lock()
        self._http, self._log_fd, self._tmp = None, None, None
        self._listed: dict[Path, dict[str, str]] = {}
        self._made: set[Path] = set()

    def __del__(self) -> None:
        if getattr(self, "_log_fd", None) is not None:
            os.close(self._log_fd)

    def __getstate__(self) -> dict:
        return {k: getattr(self, k) for k in ("data_root", "download", "attempts_log", "run")}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.__post_init__()

    def http(self) -> Http:
        """This process's client for the crawl: shards unpickled in the same worker share its robots.txt cache,
        connection pools and per-host gates instead of starting over (robots.txt once per host, not per shard)."""
        if self._http is None:
            with _SHARED_LOCK:
                if self.run not in _SHARED_HTTP:
                    _SHARED_HTTP.clear()   # a new crawl in this process: the last one's client is not needed here
                    _SHARED_HTTP[self.run] = Http(self.download, self.log)
                self._http = _SHARED_HTTP[self.run]
        return self._http

    def log(self, entry: dict) -> None:
        """Append one fetch attempt (time, item, url, code, seconds, bytes) to the attempt log."""
        if not self.attempts_log:
            return
        line = json.dumps({"t": dt.datetime.now(dt.timezone.utc).isoformat(timespec="milliseconds"), **entry}) + "\n"
        if self._log_fd is None:
            with self._log_lock:
                if self._log_fd is None:
                    Path(self.attempts_log).parent.mkdir(parents=True, exist_ok=True)
                    self._log_fd = os.open(self.attempts_log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.write(self._log_fd, line.encode("utf-8"))   # one O_APPEND write per line: whole lines, no lock, no buffer

    def tmp_dir(self) -> Path:
        if self._tmp is None:   # set only once the folder exists: other threads use it without checking
            tmp = Path(self.data_root) / ".tmp"
            tmp.mkdir(parents=True, exist_ok=True)
            self._tmp = tmp
        return self._tmp

    def make_dir(self, folder: Path) -> None:
        """mkdir -p, once per folder and context."""
        if folder not in self._made:
            folder.mkdir(parents=True, exist_ok=True)
            self._made.add(folder)

    def finished_file(self, source: str, iid: str) -> Path | None:
        """The file an earlier (interrupted) run placed for this item, if any.

        Each folder is listed once per context: files this context places later are for rows it is fetching, and a
        row is fetched once per run, so the first listing is all adoption needs.
        """
        folder = Path(self.data_root) / Path(mf.media_relpath(source, iid, "x")).parent
        names = self._listed.get(folder)
        if names is None:   # two threads may list a new folder at once: both see the same files
            listing = sorted(os.listdir(folder), reverse=True) if folder.is_dir() else []
            names = self._listed.setdefault(folder, {n.split(".", 1)[0]: n for n in listing})   # first name per stem
        name = names.get(iid)
        return folder / name if name else None


def crawl_rows(rows: pd.DataFrame, ctx: CrawlContext, workers: int | None = None) -> pd.DataFrame:
    """Fetch and probe a batch of manifest rows with a thread pool; every returned row has a final status."""
    records = rows.to_dict("records")
    with ThreadPoolExecutor(workers or ctx.download.workers) as pool:
        out = list(pool.map(lambda r: crawl_row(r, ctx), records))
    return mf.from_records(out)


def crawl_row(row: dict, ctx: CrawlContext) -> dict:
    """Fetch one row (or adopt its file from an earlier, interrupted run) and fill path, sha256, probe and status."""
    row = dict(row)
    iid, source = row["item_id"], row["source"]
    root = Path(ctx.data_root)
    try:
        done = ctx.finished_file(source, iid)
        if done is None:
            done, info, sha = _fetch_video(row, ctx) if row.get("media") == "video" else _fetch_image(row, ctx)
        else:
            ctx.log({"item": iid, "url": row.get("url"), "code": "adopted", "s": 0, "bytes": done.stat().st_size})
            info, sha = media.probe(done), sha256_file(done)
        row.update(info.as_row(), path=done.relative_to(root).as_posix(), sha256=sha, status="ok",
                   error=None, fetched_at=pd.Timestamp(dt.datetime.now(dt.timezone.utc)))
    except FetchError as exc:
        row.update(status="failed", error=str(exc)[:500], path=None)
    except media.MediaError as exc:  # the bytes arrived whole but are not usable media: rejected, not retried
        row.update(status="rejected", error=f"{exc.code}: {str(exc).split(': ', 1)[-1]}"[:500], path=None)
    except Exception as exc:  # noqa: BLE001 - one bad item must not end a crawl; its row says what happened
        row.update(status="failed", error=f"crawler_error: {type(exc).__name__}: {exc}"[:500], path=None)
        ctx.log({"item": iid, "url": row.get("url"), "code": "crawler_error", "message": repr(exc)[:300]})
    return row


def _place(tmp: Path, ctx: CrawlContext, source: str, iid: str, kind: str, info: media.Probe | None = None
           ) -> tuple[Path, media.Probe]:
    """Check a fetched file (magic bytes, probe unless info is given) and move it to its id-derived place atomically."""
    if kind in media.NOT_MEDIA_KINDS:
        raise media.MediaError("not_media", f"the file is {kind}, not media")
    info = info or media.probe(tmp)
    dest = Path(ctx.data_root) / mf.media_relpath(source, iid, EXT.get(kind, "bin"))
    ctx.make_dir(dest.parent)
    os.replace(tmp, dest)
    return dest, info


def _fetch_image(row: dict, ctx: CrawlContext) -> tuple[Path, media.Probe, str]:
    """(placed file, its probe, sha256): the body is fetched into memory (hashed as it streams), images are probed
    there (other kinds by the full media probe of the file), then written once and renamed into place."""
    iid = row["item_id"]
    got = ctx.http().download(row["url"], None, what=iid)
    info = probe_image(row["url"], got.kind, got.bytes, data=got.body) if got.kind in media.IMAGE_KINDS else None
    tmp = ctx.tmp_dir() / f"{iid}.{os.getpid()}-{threading.get_ident()}.part"   # this process's, thread's and row's
    try:
        with open(tmp, "wb") as fh:
            fh.write(got.body)
        return (*_place(tmp, ctx, row["source"], iid, got.kind, info), got.sha256)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


# ---------------------------------------------------------------- videos through yt-dlp

_local = threading.local()

_YTDLP_HEAD = re.compile(r"^(?:(?:ERROR|WARNING): )?(?:\[[\w:.-]+\] (?:[^\s:]+: )?)?")   # "ERROR: [site] <id>: "
_YTDLP_REASONS = [(re.compile(pat), code) for pat, code in (  # over the lowercased text after the head; first wins
    (r"http error 404\b", "http_404"), (r"http error 410\b", "http_410"), (r"http error 403\b", "http_403"),
    (r"http error 429\b|too many requests", "http_429"), (r"http error 5\d\d\b", "http_5xx"),
    (r"http error 4\d\d\b", "http_4xx"),
    (r"try again later|rate.?limit", "rate_limited"), (r"\bip\b.*\bblocked\b", "ip_blocked"),
    (r"private video|\bis private\b", "private"),
    (r"confirm your age|age.?restrict|inappropriate for some users", "age_gated"),
    (r"members.?only|join this channel", "members_only"),
    (r"sign in|\blog ?in\b|not a bot|captcha", "sign_in"), (r"copyright", "copyright"),
    (r"made this video available in your country|not available (?:from|in) your (?:location|country|region)"
     r"|geo.?restrict", "geo_blocked"),
    (r"\bdrm\b", "drm"), (r"live event|\bis live\b|premieres? in", "live"),
    (r"unavailable|no longer available|removed|terminated|deleted|content isn.t available", "removed"),
    (r"requested format is not available|no video formats", "no_format"), (r"unsupported url", "unsupported"),
    (r"timed out|timeout", "timeout"), (r"connection reset|reset by peer|remote end closed", "reset"),
    (r"incomplete|content too short|fewer bytes|downloaded file is empty|fragment \d+ not found", "truncated"),
    (r"larger than max-filesize|max_filesize", "too_big"),
    (r"invalid data found|moov atom not found|does not look like", "not_media"),
)]


def ytdlp_code(message: str, http_status: int | None = None) -> str:
    """yt-dlp's error text → one of our failure codes (ytdlp_error when nothing matches).

    Only the text after yt-dlp's "ERROR: [site] <id>: " head is read, so an id such as `privateXYZ` says nothing.
    http_status: the last HTTP error status a request of this download got. yt-dlp turns some of them into
    messages that do not say so (YouTube's 403 / 429 end as "Failed to extract any player response", fragments
    refused with 403 as "The downloaded file is empty"); a 403, 429 or 5xx then names the failure.
    """
    text = _YTDLP_HEAD.sub("", message, count=1).lower()
    code = next((code for pat, code in _YTDLP_REASONS if pat.search(text)), "ytdlp_error")
    if code in ("ytdlp_error", "truncated") and http_status and (http_status in (403, 429) or http_status >= 500):
        return http_code(http_status)
    return code


class _QuietLogger:
    def debug(self, msg: str) -> None:
        pass

    info = warning = debug

    def error(self, msg: str) -> None:
        pass


@functools.cache
def _gated_ydl() -> type:
    """yt_dlp.YoutubeDL whose requests (pages, APIs, media, fragments: all that goes through `urlopen`) are watched:
    a download's first request calls `first_request` (its start through the gate, see _fetch_video), the others
    wait out their host's pause; a 429 or a Retry-After pauses that host for every worker at once, and
    `last_status` names failures that yt-dlp's message hides (ytdlp_code)."""
    import yt_dlp
    from yt_dlp.networking.exceptions import HTTPError

    class GatedYoutubeDL(yt_dlp.YoutubeDL):
        http: Http
        first_request: Callable[[], Any] | None = None
        last_status: int | None = None

        def urlopen(self, req):
            url = req if isinstance(req, str) else getattr(req, "url", None)
            start, self.first_request = self.first_request, None
            if start is not None:
                start()
            elif isinstance(url, str):
                self.http.gate(url).wait_pause()
            try:
                return super().urlopen(req)
            except HTTPError as exc:
                self.last_status = exc.status
                if isinstance(url, str):
                    self.http.refused(url, exc.status, exc.response.headers.get("Retry-After"))
                raise

    return GatedYoutubeDL


def _ydl(ctx: CrawlContext):
    """This thread's YoutubeDL object (reused across its items); the segment comes from a thread-local."""
    ydl = getattr(_local, "ydl", None)
    if ydl is not None and _local.key == id(ctx):
        return ydl
    spec = ctx.download
    _local.workdir = Path(ctx.data_root) / ".tmp" / f"ytdlp-{os.getpid()}-{threading.get_ident()}"
    fmt = "best" if spec.max_height is None else f"best[height<={spec.max_height}]/bv*[height<={spec.max_height}]+ba"
    params: dict[str, Any] = {
        "quiet": True, "no_warnings": True, "noprogress": True, "logger": _QuietLogger(), "noplaylist": True,
        "outtmpl": str(_local.workdir / "v.%(ext)s"), "overwrites": True, "format": fmt, "retries": 1,
        "fragment_retries": 1, "extractor_retries": 0, "socket_timeout": spec.timeout_s,
        "max_filesize": spec.max_bytes, "http_headers": {"User-Agent": ctx.http().user_agent},
        "force_keyframes_at_cuts": spec.trim == "exact", "cachedir": False,
    }
    for key, value in (("cookiefile", spec.cookies or os.environ.get("CURATE_COOKIES")),
                       ("proxy", spec.proxy or os.environ.get("CURATE_PROXY")),
                       ("sleep_interval", spec.sleep_interval_s)):
        if value:
            params[key] = value
    _local.ydl, _local.key = _gated_ydl()(params), id(ctx)
    _local.ydl.http = ctx.http()
    return _local.ydl


def _fetch_video(row: dict, ctx: CrawlContext) -> tuple[Path, media.Probe, str]:
    """Download a video (or its span) with yt-dlp, with retries.

    Each attempt is one start through the gate of the watch page's host (its concurrency cap, rate and pause),
    taken by yt-dlp's first request (the page: what the host sees start) and held until yt-dlp is done. The other
    requests of one download (APIs, media, fragments) are not spaced or counted one by one; each only waits out a
    pause of its own host. ffmpeg's reads (download_ranges on formats yt-dlp hands to ffmpeg) bypass even that.
    """
    http, spec = ctx.http(), ctx.download
    url, iid = row["url"], row["item_id"]
    if not str(url).startswith(("http://", "https://")):
        raise FetchError("bad_url", f"refusing to fetch {str(url)[:200]!r} (only http and https)")
    if spec.respect_robots and not http.allowed(url):
        raise FetchError("opted_out", "robots.txt disallows this path")
    start, end = row.get("start_s"), row.get("end_s")
    span = (float(start), float(end)) if pd.notna(start) and pd.notna(end) else None
    ydl = _ydl(ctx)
    ranged = span if span and spec.segments == "ranges" else None  # this thread's ydl: set per item
    if ranged:
        ydl.params["download_ranges"] = lambda info, _: [{"start_time": ranged[0], "end_time": ranged[1]}]
    else:
        ydl.params.pop("download_ranges", None)
    return http.retrying(lambda: _ytdlp_once(ydl, row, ctx, span), iid, url)


def _ytdlp_once(ydl, row: dict, ctx: CrawlContext, span: tuple[float, float] | None
                ) -> tuple[Path, media.Probe, str]:
    from yt_dlp.utils import DownloadError

    spec, work, http = ctx.download, _local.workdir, ctx.http()
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    ydl.last_status = None
    try:
        with contextlib.ExitStack() as held:
            ydl.first_request = lambda: held.enter_context(http.gate(row["url"]))
            info = ydl.extract_info(row["url"], download=False)
            if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
                raise FetchError("live", "the video is live or upcoming")
            length = (span[1] - span[0]) if span else info.get("duration")
            if length and length > spec.max_duration_s:
                raise FetchError("too_long", f"{length:.0f} s > cap {spec.max_duration_s:.0f} s")
            if spec.respect_robots and info.get("url") and not http.allowed(info["url"]):
                raise FetchError("opted_out", "robots.txt disallows the media file the page points at")
            if spec.respect_opt_out and info.get("url") and (head := http.head(info["url"])) is not None:
                refuse_opt_out(head.headers)   # before the download, not after
            info = ydl.process_ie_result(info, download=True)
    except DownloadError as exc:
        text = str(exc).removeprefix("ERROR: ")
        code = ytdlp_code(text, ydl.last_status)
        if code in HOLD_OFF:   # also a rate limit or block that yt-dlp only reports in words
            http.hold_off(row["url"])
        raise FetchError(code, text[:300]) from exc
    finally:
        ydl.first_request = None
    files = [d.get("filepath") for d in info.get("requested_downloads") or [] if d.get("filepath")]
    if not files or not Path(files[0]).exists():
        raise FetchError("too_big" if info.get("filesize", 0) and info["filesize"] > spec.max_bytes else "ytdlp_error",
                         "yt-dlp wrote no file")
    got = Path(files[0])
    kind = media.sniff(got)
    if kind in media.NOT_MEDIA_KINDS:
        raise FetchError("not_media", f"got {kind} where a video should be")
    if span is not None:
        got = _exact_span(got, span, spec)
    sha = sha256_file(got)
    return (*_place(got, ctx, row["source"], row["item_id"], media.sniff(got)), sha)


def _exact_span(path: Path, span: tuple[float, float], spec: DownloadSpec) -> Path:
    """Trim with ffmpeg unless the file already is the segment (yt-dlp download_ranges) to within one frame."""
    info = media.probe(path)
    want = span[1] - span[0]
    if spec.segments == "ranges" and info.fps and abs(info.duration_s - want) <= 1.0 / info.fps + 1e-6:
        return path
    out = path.with_name("cut.mp4")
    media.trim(path, out, *span, exact=spec.trim == "exact")
    return out

