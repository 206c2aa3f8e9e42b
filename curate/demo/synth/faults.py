"""Fault injection and request counting for the loopback web: deterministic per (seed, request target, attempt)."""
from __future__ import annotations

import hashlib
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

FAULT_KINDS = ("429", "500", "503", "404", "410", "reset", "slow", "truncate", "html")
DEFAULT_KINDS = ("429", "500", "reset", "slow", "truncate", "html")   # the ones that clear: what a flaky host does
GONE_KINDS = ("404", "410")   # a page that is gone stays gone: these faults never clear
ELIGIBLE = ("/i/", "/v/", "/private/", "/watch", "/search", "/tags/", "/datasets/")


@dataclass(frozen=True)
class Faults:
    """Which requests fail and how.

    A request target (path + query) is faulty with probability `rate`; a faulty target fails its first 1..max_failures
    attempts with one kind, then works, unless it falls in the `permanent` fraction or its kind is 404 or 410, which
    never clear. Everything is a pure function of (seed, target, attempt number), so two runs against the same world
    see the same faults.
    """

    rate: float = 0.0
    seed: int = 0
    kinds: tuple[str, ...] = DEFAULT_KINDS
    max_failures: int = 2
    permanent: float = 0.0
    slow_s: float = 1.5          # how long a slow body takes in all
    retry_after_s: int = 1       # Retry-After of a 429
    paths: tuple[str, ...] = ELIGIBLE

    def __post_init__(self) -> None:
        bad = [k for k in self.kinds if k not in FAULT_KINDS]
        if bad:
            raise ValueError(f"unknown fault kinds {bad}; choose from {list(FAULT_KINDS)}")
        if not 0 <= self.rate <= 1 or not 0 <= self.permanent <= 1:
            raise ValueError("fault rate and permanent fraction must lie in [0, 1]")
        if self.max_failures < 1:
            raise ValueError("max_failures must be >= 1")

    def pick(self, target: str, attempt: int) -> str | None:
        """The fault for this attempt (0 = first request of the target), or None."""
        if self.rate <= 0 or not target.startswith(self.paths):
            return None
        h = hashlib.sha256(f"{self.seed}\x1f{target}".encode()).digest()
        if int.from_bytes(h[:8], "big") / 2**64 >= self.rate:
            return None
        kind = self.kinds[h[8] % len(self.kinds)]
        failures = 1 + h[9] % self.max_failures
        permanent = kind in GONE_KINDS or int.from_bytes(h[10:14], "big") / 2**32 < self.permanent
        return kind if permanent or attempt < failures else None


def forced(query: dict[str, list[str]], attempt: int) -> str | None:
    """A fault asked for by the request itself: ?fault=KIND[&fault_times=N] fails the first N attempts (default 1)."""
    kind = (query.get("fault") or [None])[0]
    if kind is None:
        return None
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault {kind!r}; choose from {list(FAULT_KINDS)}")
    times = int((query.get("fault_times") or ["1"])[0])
    return kind if attempt < times else None


class Stats:
    """Thread-safe counters: requests per target, full-body media deliveries per target, faults and statuses, and
    a timeline on the server's clock (time.monotonic): when each request was read and when each status went out."""

    def __init__(self) -> None:
        self._lock = threading.Condition()
        self._busy = 0   # requests being handled: a snapshot waits for them (a client may read its last byte and ask
        self.reset()     # for /_stats before the server thread has counted the delivery)

    @contextmanager
    def handling(self) -> Iterator[None]:
        """Around the handling of one request."""
        with self._lock:
            self._busy += 1
        try:
            yield
        finally:
            with self._lock:
                self._busy -= 1
                self._lock.notify_all()

    def reset(self) -> None:
        with self._lock:
            self.requests: Counter[str] = Counter()
            self.completed: Counter[str] = Counter()
            self.faults: Counter[str] = Counter()
            self.status: Counter[str] = Counter()
            self.bytes_sent = 0
            self.connections = 0                                  # TCP connections accepted
            self.starts: list[tuple[float, str]] = []            # (time, target) of every request, in order
            self.responses: list[tuple[float, str, int]] = []    # (time, target, status) as the headers go out

    def attempt(self, target: str) -> int:
        """Count a request; return how many came before it."""
        with self._lock:
            n = self.requests[target]
            self.requests[target] = n + 1
            self.starts.append((time.monotonic(), target))
            return n

    def add(self, *, status: int | None = None, target: str = "", fault: str | None = None,
            completed: str | None = None, sent: int = 0, connection: bool = False) -> None:
        with self._lock:
            self.connections += connection
            if status is not None:
                self.status[str(status)] += 1
                self.responses.append((time.monotonic(), target, status))
            if fault:
                self.faults[fault] += 1
            if completed:
                self.completed[completed] += 1
            self.bytes_sent += sent

    def snapshot(self, settle_s: float = 2.0) -> dict:
        """The counters once the requests in flight are done (waiting at most settle_s for them)."""
        with self._lock:
            self._lock.wait_for(lambda: self._busy == 0, timeout=settle_s)
            return {"total_requests": sum(self.requests.values()), "requests": dict(self.requests),
                    "completed": dict(self.completed), "faults": dict(self.faults), "status": dict(self.status),
                    "bytes_sent": self.bytes_sent, "connections": self.connections, "starts": list(self.starts),
                    "responses": list(self.responses)}
