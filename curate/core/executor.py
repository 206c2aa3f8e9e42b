"""Where a stage's work runs: the one module that knows about threads and Ray (stages never import ray).

A stage hands `run_shards` a per-shard function `fn(shard_df, ctx) -> part_df` (a module-level function, so Ray
workers can import it) and the manifest rows still to do. The rows are cut into shards; each shard runs in this
process (`executor='local'`, a thread pool of `workers`), in a pool of `workers` spawned processes on this machine
(`executor='processes'`: past one interpreter's GIL without a cluster) or as a Ray task (`executor='ray'`, on a
cluster at `address` or a local one of `workers` CPUs). Every part is handed to `on_part` in the driver as soon as it arrives;
with `commit(path)` as on_part each part is committed to the manifest (one part file of its folder, atomic, in time
proportional to the part: curate/core/store.py), so a worker or driver death loses only the shards still running,
and a rerun (the stage picks its pending rows again) does nothing twice. A shard that raises is reported in the
result and its rows stay pending.

GPU-aware: `gpu=True` (teacher scoring) asks Ray for one GPU per task when the cluster has GPUs and for one CPU
otherwise; `ctx.device` says which the task got. Ray keeps a worker process for every task it runs (GPU tasks too),
so what `worker_cached` loads (a teacher's weights) is loaded once per worker, not once per shard.

A stage that takes an `ExecutorSpec` (the CLI's --executor/--address/--shard-size/--workers in one value) runs
through `spec.run(fn, rows, ...)`. A part may carry columns the manifest does not have (an `embedding`): the stage's
on_part takes them off before it commits.

    from curate.core.executor import commit, run_shards
    result = run_shards(probe_shard, pending, 64, executor="ray", on_part=commit(out))
"""
from __future__ import annotations

import os
import threading
import time
import traceback
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:   # pandas and the manifest module load when shards run, not when a CLI lists its options
    import pandas as pd

EXECUTORS = ("local", "processes", "ray")
RAY_MISSING = "the Ray executor needs Ray: pip install 'curate[ray]' (or run with --executor local)"


class ExecutorError(RuntimeError):
    """Ray is missing or unreachable, or the executor name is wrong."""


@dataclass(frozen=True)
class ShardContext:
    """What a shard function knows about where it runs."""

    index: int              # shard number, 0-based
    shards: int             # shards in this run
    device: str = "cpu"     # 'cuda' when the task was given a GPU
    options: dict = field(default_factory=dict)   # the stage's own options, passed through unchanged


@dataclass
class ShardResult:
    executor: str
    shards: int = 0
    done: int = 0                       # shards whose part was committed
    rows: int = 0                       # rows in committed parts
    failed: dict[int, str] = field(default_factory=dict)   # shard -> error (its rows stay pending)
    seconds: float = 0.0
    workers: int = 1
    resources: dict[str, float] = field(default_factory=dict)   # what each Ray task asked for


@dataclass(frozen=True)
class ExecutorSpec:
    """Where a stage's shards run: run_shards' executor, address, shard size and workers in one value."""

    executor: str = "local"
    address: str | None = None
    shard_size: int = 64
    workers: int = 1
    max_retries: int = 3

    @property
    def local(self) -> bool:
        """Shards run in this process (threads): a stage may hand them what it already loaded."""
        return self.executor == "local"

    def run(self, fn: Callable[[pd.DataFrame, ShardContext], pd.DataFrame], rows: pd.DataFrame | list[pd.DataFrame],
            **kw) -> ShardResult:
        return run_shards(fn, rows, self.shard_size, self.executor, self.address, workers=self.workers,
                          max_retries=self.max_retries, **kw)


_CACHE: OrderedDict[Hashable, Any] = OrderedDict()
_CACHE_LOCK = threading.Lock()
CACHE_SIZE = 4


def worker_cached(key: Hashable, make: Callable[[], Any]) -> Any:
    """make() once per process for key (the CACHE_SIZE latest keys are kept): a Ray worker or spawned process loads
    a teacher once, whatever the number of shards it runs."""
    with _CACHE_LOCK:
        if key not in _CACHE:
            _CACHE[key] = make()
            while len(_CACHE) > CACHE_SIZE:
                _CACHE.popitem(last=False)
        _CACHE.move_to_end(key)
        return _CACHE[key]


class RowWriter:
    """A stage's rows in the driver; put() writes a part's columns into the rows of the same item_id in place, in
    O(part) (an upsert of the whole frame per part would make a run O(rows x shards))."""

    def __init__(self, df: pd.DataFrame):
        import numpy as np
        import pandas as pd

        self.df = df
        self._pos = pd.Series(np.arange(len(df)), index=df["item_id"].to_numpy())

    def put(self, part: pd.DataFrame, columns) -> None:
        at = self._pos.loc[part["item_id"]].to_numpy()
        for c in columns:
            self.df.iloc[at, self.df.columns.get_loc(c)] = _column(part[c])


def _column(values: pd.Series):
    """A column as a 1-D array for iloc; an object array keeps lists (teacher_top5) one per row."""
    import numpy as np

    if values.dtype != object:
        return values.to_numpy()
    out = np.empty(len(values), object)
    for i, v in enumerate(values):
        out[i] = v
    return out


def split(rows: pd.DataFrame, shard_size: int) -> list[pd.DataFrame]:
    """Consecutive shards of at most shard_size rows (index reset)."""
    if shard_size < 1:
        raise ValueError(f"shard_size must be >= 1, got {shard_size}")
    return [rows.iloc[lo:lo + shard_size].reset_index(drop=True) for lo in range(0, len(rows), shard_size)]


def commit(path: str | os.PathLike, metadata: dict[str, str] | None = None) -> Callable[[pd.DataFrame], None]:
    """An on_part callback: commit each part's rows into the manifest at path (manifest.commit: one part file of
    its folder, atomic, O(rows of the part)); metadata, when given, becomes the manifest's."""
    from curate.core import manifest as mf

    def on_part(part: pd.DataFrame) -> None:
        mf.commit(path, part, metadata)

    return on_part


def run_shards(fn: Callable[[pd.DataFrame, ShardContext], pd.DataFrame], rows: pd.DataFrame | list[pd.DataFrame],
               shard_size: int = 64, executor: str = "local", address: str | None = None, *, workers: int = 1, gpu: bool = False,
               on_part: Callable[[pd.DataFrame], None] | None = None, options: dict | None = None,
               max_retries: int = 3, progress: Callable[[int, int], None] | None = None) -> ShardResult:
    """Run fn over rows in shards; on_part(part) in this process as each finishes (see the module doc).

    rows: a DataFrame cut into shards of shard_size rows, or the shards themselves (a stage whose shards must not
    mix rows of different kinds); workers: threads (local) or, for a Ray cluster this call starts, its CPUs;
    max_retries: Ray re-runs a task whose worker died this many times; progress(done_shards, shards) after each shard.
    """
    if executor not in EXECUTORS:
        raise ExecutorError(f"executor {executor!r} is not one of {list(EXECUTORS)}")
    shards = [s.reset_index(drop=True) for s in rows] if isinstance(rows, list) else split(rows, shard_size)
    result = ShardResult(executor, len(shards), workers=workers)
    t0 = time.perf_counter()
    ctx = [ShardContext(i, len(shards), options=dict(options or {})) for i in range(len(shards))]
    run = {"local": _run_local, "processes": _run_processes, "ray": _run_ray}[executor]
    for i, part, error in run(fn, shards, ctx, address, workers, gpu, max_retries, result):
        if error is None:
            if on_part is not None:
                on_part(part)
            result.done += 1
            result.rows += len(part)
        else:
            result.failed[i] = error
        if progress:
            progress(result.done + len(result.failed), len(shards))
    result.seconds = time.perf_counter() - t0
    return result


def _call(fn, shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    import pandas as pd

    part = fn(shard, ctx)
    if not isinstance(part, pd.DataFrame) or "item_id" not in part:
        raise TypeError(f"shard function {fn.__name__} must return a DataFrame of manifest rows")
    return part


def _run_local(fn, shards, ctx, address, workers, gpu, max_retries, result) -> Iterator[tuple[int, Any, str | None]]:
    if gpu:
        import torch
        ctx = [ShardContext(c.index, c.shards, "cuda" if torch.cuda.is_available() else "cpu", c.options)
               for c in ctx]
    if workers <= 1:    # in this thread: a shard may fork (DataLoader workers), which is unsafe from a pool thread
        for s, c in zip(shards, ctx):
            try:
                yield c.index, _call(fn, s, c), None
            except Exception as exc:     # a failed shard is reported; its rows stay pending
                yield c.index, None, _describe(exc)
        return
    with ThreadPoolExecutor(workers) as pool:   # parts reach on_part one at a time, in this thread
        yield from _drain(pool, fn, shards, ctx)


def _run_processes(fn, shards, ctx, address, workers, gpu, max_retries, result
                   ) -> Iterator[tuple[int, Any, str | None]]:
    """Spawned (not forked: the driver may hold threads and locks) processes; a process that dies fails its shard."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(max(1, workers), mp_context=mp.get_context("spawn")) as pool:
        yield from _drain(pool, fn, shards, ctx)


def _drain(pool, fn, shards, ctx) -> Iterator[tuple[int, Any, str | None]]:
    """Submit every shard to pool; yield (index, part or None, error or None) as they finish, in this thread."""
    futures = {pool.submit(_call, fn, s, c): c.index for s, c in zip(shards, ctx)}
    pending = set(futures)
    while pending:
        finished, pending = wait(pending, return_when=FIRST_COMPLETED)
        for fut in sorted(finished, key=futures.get):
            exc = fut.exception()
            yield futures[fut], None if exc else fut.result(), _describe(exc) if exc else None


def _describe(exc: BaseException) -> str:
    last = traceback.format_exception_only(type(exc), exc)[-1].strip()
    return last.splitlines()[0][:300]


def ray_module():
    """ray, or an ExecutorError saying how to install it."""
    try:
        import ray
    except ImportError as exc:
        raise ExecutorError(RAY_MISSING) from exc
    return ray


def ray_connect(address: str | None, workers: int):
    """The Ray module, connected: the running session, the cluster at address, or a local one with workers CPUs."""
    ray = ray_module()
    if not ray.is_initialized():
        try:
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(1, workers), include_dashboard=False, log_to_driver=False)
        except (ConnectionError, RuntimeError, ValueError) as exc:
            raise ExecutorError(f"cannot reach the Ray cluster at {address or 'local'}: {exc}") from exc
    return ray


def _ray_shard(fn, shard: pd.DataFrame, ctx: ShardContext) -> pd.DataFrame:
    import ray

    gpus = ray.get_gpu_ids()
    if gpus:
        ctx = ShardContext(ctx.index, ctx.shards, "cuda", ctx.options)
    return _call(fn, shard, ctx)


def task_resources(gpu: bool, cluster: dict[str, float]) -> dict[str, float]:
    """What one task asks Ray for: a GPU when the stage can use one and the cluster has any, else a CPU."""
    return {"num_gpus": 1} if gpu and cluster.get("GPU", 0) > 0 else {"num_cpus": 1}


def _run_ray(fn, shards, ctx, address, workers, gpu, max_retries, result) -> Iterator[tuple[int, Any, str | None]]:
    ray = ray_connect(address, workers)
    cluster = ray.cluster_resources()
    resources = result.resources = task_resources(gpu, cluster)
    result.workers = int(cluster.get("GPU" if "num_gpus" in resources else "CPU", 1))
    # max_calls=0: workers stay for the next task (Ray's default for GPU tasks is one task per worker process)
    task = ray.remote(max_calls=0, **resources)(_ray_shard).options(max_retries=max_retries)
    window = 2 * max(1, result.workers)     # a bounded number of shards in flight: parts stream back as they finish
    todo = list(zip(shards, ctx))[::-1]
    running: dict[Any, int] = {}
    while todo or running:
        while todo and len(running) < window:
            shard, c = todo.pop()
            running[task.remote(fn, shard, c)] = c.index
        ready, _ = ray.wait(list(running), num_returns=1)
        for ref in ready:
            i = running.pop(ref)
            try:
                yield i, ray.get(ref), None
            except (ray.exceptions.RayError, TypeError) as exc:
                yield i, None, _describe(getattr(exc, "cause", None) or exc)
