"""Fetching one manifest row: images over polite HTTP, videos (and their segments) through yt-dlp, then probing.

`crawl_rows(rows, ctx)` is the unit of work: a plain function over a batch of manifest rows, safe to run in
threads, processes or Ray tasks. Files land atomically at `media_relpath(source, item_id, ext)` under the data
root, so a file that exists there is finished, whoever fetched it.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import threading
import uuid
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from curate import media
from curate.core import manifest as mf
from curate.core.files import sha256_file
from curate.crawl.fetch import FetchError, Http
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

_YTDLP_REASONS = [  # (pattern in yt-dlp's error text, code); first match wins
    (r"HTTP Error 404|not found", "http_404"), (r"HTTP Error 410", "http_410"), (r"HTTP Error 403", "http_403"),
    (r"HTTP Error 429|too many requests", "http_429"), (r"HTTP Error 5\d\d", "http_5xx"),
    (r"sign in to confirm|not a bot|cookies", "sign_in"), (r"private video|is private", "private"),
    (r"copyright", "copyright"), (r"not available (from|in) your (location|country)|geo.?restrict", "geo_blocked"),
    (r"age.?restrict|confirm your age|inappropriate", "age_gated"),
    (r"removed|unavailable|no longer available|terminated|deleted", "removed"),
    (r"requested format is not available|no video formats", "no_format"),
    (r"live event|is live|premieres in", "live"), (r"unsupported url", "unsupported"),
    (r"timed out|timeout", "timeout"), (r"connection reset|reset by peer|remote end closed", "reset"),
    (r"incomplete|content too short|fewer bytes", "truncated"), (r"larger than max-filesize|max_filesize", "too_big"),
    (r"invalid data found|moov atom not found|does not look like", "not_media"),
]


def ytdlp_code(message: str) -> str:
    """yt-dlp's error text → one of our failure codes (ytdlp_error when nothing matches)."""
    low = message.lower()
    return next((code for pat, code in _YTDLP_REASONS if re.search(pat.lower(), low)), "ytdlp_error")


class _QuietLogger:
    def debug(self, msg: str) -> None:
        pass

    info = warning = debug

    def error(self, msg: str) -> None:
        pass


def _ydl(ctx: CrawlContext):
    """This thread's YoutubeDL object (reused across its items); the segment comes from a thread-local."""
    ydl = getattr(_local, "ydl", None)
    if ydl is not None and _local.key == id(ctx):
        return ydl
    import yt_dlp

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
    _local.ydl, _local.key = yt_dlp.YoutubeDL(params), id(ctx)
    return _local.ydl


def _fetch_video(row: dict, ctx: CrawlContext) -> tuple[Path, media.Probe, str]:
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

    spec, work = ctx.download, _local.workdir
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True, exist_ok=True)
    try:
        info = ydl.extract_info(row["url"], download=False)
        if info.get("is_live") or info.get("live_status") in ("is_live", "is_upcoming"):
            raise FetchError("live", "the video is live or upcoming")
        length = (span[1] - span[0]) if span else info.get("duration")
        if length and length > spec.max_duration_s:
            raise FetchError("too_long", f"{length:.0f} s > cap {spec.max_duration_s:.0f} s")
        if spec.respect_robots and info.get("url") and not ctx.http().allowed(info["url"]):
            raise FetchError("opted_out", "robots.txt disallows the media file the page points at")
        if spec.respect_opt_out and info.get("url"):
            _check_opt_out(ctx, info["url"])
        info = ydl.process_ie_result(info, download=True)
    except DownloadError as exc:
        text = str(exc).removeprefix("ERROR: ")
        raise FetchError(ytdlp_code(text), text[:300]) from exc
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


def _check_opt_out(ctx: CrawlContext, media_url: str) -> None:
    """HEAD the media URL: X-Robots-Tag opt-outs and HTML where a video should be are refused before downloading."""
    import urllib3

    http = ctx.http()
    try:
        r = http.pool.request("HEAD", media_url, redirect=True, headers={"User-Agent": http.user_agent})
    except (urllib3.exceptions.HTTPError, OSError):
        return  # the download itself will report what is wrong
    tags = r.headers.get("X-Robots-Tag", "").lower().replace(",", " ").split()
    if any(t in ("noai", "noimageai", "noml") for t in tags):
        raise FetchError("opted_out", f"X-Robots-Tag: {r.headers.get('X-Robots-Tag')}")

