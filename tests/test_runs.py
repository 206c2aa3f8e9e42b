"""curate.runs: training jobs side by side in spawned workers, one pool shared by several calls, finished jobs read
back without starting any worker."""
import pytest
import torch

from curate import manifest as mf
from curate.efficiency import run_config
from curate.runs import RunJob, WorkerPool, run_jobs
from trainers.checkpoint import read_checkpoint
from trainers.config import ConfigError
from trainers.sources import Source


def _jobs(world, out, seeds, **extra):
    tdf = mf.read(world.target_manifest)
    target = Source("target", tdf[tdf["split"] == "train"].reset_index(drop=True), root=world.root)
    whole = Source("eval", tdf, root=world.root)
    return [RunJob(out / f"s{seed}", {**run_config("tsn_r50", True, 1, 4, 1e-2, 32, seed, None, None), **extra},
                   [target], whole) for seed in seeds]


def test_a_shared_pool_survives_a_failed_job_and_computes_like_a_fresh_one(tiny_world, tmp_path):
    with WorkerPool(2) as pool:
        with pytest.raises(ConfigError, match="unknown top-level key"):      # raised in a worker, surfaced here
            run_jobs(_jobs(tiny_world, tmp_path / "bad", [0, 1], typo={}), 2, pool=pool)
        shared = run_jobs(_jobs(tiny_world, tmp_path / "shared", [0, 1]), 2, pool=pool)
        started = pool.started
    fresh = run_jobs(_jobs(tiny_world, tmp_path / "fresh", [0, 1]), 2)   # a pool of its own
    assert started and [r["top1"] for r in shared] == [r["top1"] for r in fresh]
    for seed in (0, 1):   # a worker that ran other jobs before trains the same weights
        a, b = (read_checkpoint(tmp_path / run / f"s{seed}" / "last.pt")["state_dict"] for run in ("shared", "fresh"))
        assert all(torch.equal(a[k], b[k]) for k in a)

    seen = []
    with WorkerPool(2) as idle:   # everything finished: read back in this process, no worker started
        again = run_jobs(_jobs(tiny_world, tmp_path / "shared", [0, 1]), 2, lambda i, row, reused: seen.append(reused),
                         pool=idle)
        assert not idle.started
    assert again == shared and seen == [True, True]
