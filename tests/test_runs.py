"""curate.experiments.runs: training jobs side by side in spawned workers, one pool shared by several calls, finished jobs read
back without starting any worker."""
import os
import time

import pytest
import torch

from curate.core import manifest as mf
from curate.experiments.runs import RunJob, WorkerPool, run_config, run_jobs
from trainers.checkpoint import read_checkpoint
from trainers.config import ConfigError
from trainers.sources import Source


def _jobs(world, out, seeds, **extra):
    tdf = mf.read(world.target_manifest)
    target = Source("target", tdf[tdf["split"] == "train"].reset_index(drop=True), root=world.root)
    whole = Source("eval", tdf, root=world.root)
    return [RunJob(out / f"s{seed}", {**run_config("tsn_r50", True, 1, 4, 1e-2, 32, seed, None, None), **extra},
                   [target], whole) for seed in seeds]


@pytest.mark.slow
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


def test_a_folder_holding_another_run_is_refused_or_replaced(tiny_world, tmp_path):
    lr = lambda: read_checkpoint(tmp_path / "s0" / "last.pt")["meta"]["schedule"]["lr"]  # noqa: E731
    run_jobs(_jobs(tiny_world, tmp_path, [0]))
    other = _jobs(tiny_world, tmp_path, [0])
    other[0].cfg["schedule"]["lr"] = 5e-2                       # same folder, another config
    with pytest.raises(ConfigError, match="holds a run with other settings"):
        run_jobs(other)
    assert lr() == pytest.approx(1e-2)                          # refused: the old run is untouched
    other[0].replace_stale = True
    seen = []
    second = run_jobs(other, on_done=lambda i, row, reused: seen.append(reused))[0]
    assert seen == [False] and lr() == pytest.approx(5e-2)     # trained again in its folder
    assert run_jobs(other)[0] == second                         # and read back on the next call


@pytest.mark.slow
def test_a_call_queued_for_later_runs_behind_the_next_batch_in_a_worker(tiny_world, tmp_path):
    with WorkerPool(2) as pool:
        stamp = pool.later(time.time)                  # the clock of whichever worker runs it
        run_jobs(_jobs(tiny_world, tmp_path, [0, 1]), 2, pool=pool)
        first_done = min((tmp_path / f"s{seed}" / "result.json").stat().st_mtime for seed in (0, 1))
        assert stamp.result() >= first_done           # queued behind both jobs, not ahead of them
        alone = pool.later(os.getpid)                  # no batch follows: asked for, it runs in a worker all the same
        assert alone.result() != os.getpid()


def _exited(pid: int) -> bool:
    """Gone, or a zombie nobody reaps (its parent, the driver, is dead)."""
    try:
        return open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()[0] in ("Z", "X")
    except FileNotFoundError:
        return True


@pytest.mark.skipif(not os.path.isdir("/proc"), reason="reads process states from /proc")
def test_workers_exit_when_their_driver_is_killed(tmp_path):
    import signal
    import subprocess
    import sys

    driver = subprocess.Popen([sys.executable, "-c", (
        "import time\nfrom curate.experiments.runs import WorkerPool\n"
        "pool = WorkerPool(2)\n"
        "jobs = [pool.executor().submit(time.sleep, 600) for _ in range(2)]\n"
        "time.sleep(1)\n"
        "print(*pool.executor()._processes, flush=True)\n"
        "time.sleep(600)\n")], stdout=subprocess.PIPE, text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    pids = [int(p) for p in driver.stdout.readline().split()]
    assert len(pids) == 2 and not any(map(_exited, pids))       # both workers busy with a long job
    driver.send_signal(signal.SIGKILL)
    driver.wait()
    deadline = time.monotonic() + 15
    while not all(map(_exited, pids)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(map(_exited, pids)), "a worker went on after its driver was killed"
