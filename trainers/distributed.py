"""Data-parallel training under torchrun: who this process is, the process group, and the few collectives the loop
needs. Outside torchrun (no WORLD_SIZE in the environment) everything here is a no-op for one process.

How a run splits its work (trainers/train.py): every rank walks the same global iterations of the mixed-source
sampler and computes its share of each iteration's keys (trainers.sources.RankShard); the loss on a rank is its
clips' part of the global per-source means, so DistributedDataParallel's gradient average times the world size is
exactly the one-process gradient of the global batch. Rank 0 alone logs, validates and writes checkpoints.
"""
from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT = datetime.timedelta(hours=1)   # rank 0 validates alone while the others wait at the next collective


@dataclass(frozen=True)
class Rank:
    """This process's place in the run (rank 0 of 1 outside torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1


def from_env() -> Rank:
    """The torchrun variables RANK / WORLD_SIZE / LOCAL_RANK (absent: a single process)."""
    env = os.environ
    return Rank(int(env.get("RANK", 0)), int(env.get("WORLD_SIZE", 1)), int(env.get("LOCAL_RANK", 0)))


def under_torchrun() -> bool:
    return "LOCAL_RANK" in os.environ and "WORLD_SIZE" in os.environ


@contextmanager
def session(device: str | torch.device | None) -> Iterator[tuple[Rank, torch.device]]:
    """(rank, device) for one run: under torchrun the process group is started (NCCL on GPU, each rank on
    cuda:LOCAL_RANK; gloo on CPU) and destroyed when the block ends, unless it was already running."""
    r = from_env()
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"
    dev = torch.device(device)
    if dev.type == "cuda" and dev.index is None:
        dev = torch.device("cuda", r.local_rank if r.active else 0)
    started = False
    if r.active and not dist.is_initialized():
        if dev.type == "cuda":
            torch.cuda.set_device(dev)
        dist.init_process_group("nccl" if dev.type == "cuda" else "gloo", timeout=TIMEOUT)
        started = True
    try:
        yield r, dev
    finally:
        if started and dist.is_initialized():
            dist.destroy_process_group()


def wrap(model: torch.nn.Module, r: Rank, device: torch.device, sync_bn: bool) -> torch.nn.Module:
    """DistributedDataParallel around model when the run has several ranks (SyncBatchNorm first on GPU if asked)."""
    if not r.active:
        return model
    if sync_bn and device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def all_sum(values: list[float], r: Rank, device: torch.device) -> list[float]:
    """Element-wise sum over ranks of a short list of numbers (logging: per-source loss parts)."""
    if not r.active:
        return values
    t = torch.tensor(values, dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return t.tolist()


def gather(obj: Any, r: Rank) -> list[Any]:
    """obj of every rank, in rank order (every rank must call it)."""
    if not r.active:
        return [obj]
    out: list[Any] = [None] * r.world
    dist.all_gather_object(out, obj)
    return out


def barrier(r: Rank) -> None:
    if r.active:
        dist.barrier()


def torchrun_command(args: list[str], nproc_per_node: int, nnodes: str = "1", node_rank: int = 0,
                     master_addr: str | None = None, master_port: int | None = None) -> list[str]:
    """`python -m torch.distributed.run ... -m curate <args>`: one node on a free port (--standalone), or one node
    of a static multi-node rendezvous at master_addr:master_port."""
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", f"--nproc-per-node={nproc_per_node}"]
    if str(nnodes) == "1" and master_addr is None:
        cmd.append("--standalone")
    else:
        cmd += [f"--nnodes={nnodes}", f"--node-rank={node_rank}", f"--master-addr={master_addr or '127.0.0.1'}",
                f"--master-port={master_port or 29500}"]
    return [*cmd, "-m", "curate", *args]
