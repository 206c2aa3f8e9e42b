"""The `--executor/--address/--shard-size/--workers` options every sharded stage takes, and its summary line."""
from __future__ import annotations

from typing import TYPE_CHECKING

import click
from rich.console import Console

if TYPE_CHECKING:
    from curate.core.executor import ShardResult


def executor_options(command=None, *, workers: bool = True, shard_size: int = 32):
    """Decorate a click command with the executor options (parameters executor, address, shard_size, workers).

    `@executor_options(workers=False)` leaves --workers to a command that gives it its own meaning.
    """
    from curate.core.executor import EXECUTORS

    if command is None:
        return lambda cmd: executor_options(cmd, workers=workers, shard_size=shard_size)
    options = [
        click.option("--executor", type=click.Choice(EXECUTORS), default="local", show_default=True,
                     help="Where shards run: this process (threads), a pool of processes on this machine, or Ray "
                          "(pip install 'curate[ray]')."),
        click.option("--address", default=None, metavar="ADDR",
                     help="Ray cluster to use (e.g. auto, ray://head:10001); default: start a local one."),
        click.option("--shard-size", type=click.IntRange(min=1), default=shard_size, show_default=True,
                     help="Manifest rows per shard (the unit that is committed and retried)."),
        click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
                     help="Threads (local), processes (processes), or CPUs of the local Ray cluster started when "
                          "--address is not given."),
    ]
    for option in reversed(options if workers else options[:-1]):
        command = option(command)
    return command


def executor_summary(con: Console, r: ShardResult, what: str) -> None:

    unit = {"ray": f"workers, {r.resources} per task", "processes": "processes"}.get(r.executor, "threads")
    where = f"{r.executor} ({r.workers} {unit})"
    con.print(f"{what}: {r.done}/{r.shards} shards, {r.rows} rows committed in {r.seconds:.1f} s on {where}")
    for i, err in sorted(r.failed.items()):
        con.print(f"[red]shard {i} failed[/]: {err}  (its rows stay pending: rerun to finish)")
