"""curate/core/executor.py on a real local Ray cluster (2 CPUs, started once for the module) against the local executor,
through the probe stage on the demo world's web corpus (broken files included): same manifest; a Ray worker killed
mid-run (SIGKILL from inside its task) loses only its shard, and a rerun finishes it; GPU-aware scheduling."""
import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest

from curate.core import manifest as mf
from curate.core.executor import ExecutorError, commit, run_shards, task_resources
from curate.crawl.probe import pending, probe_manifest, probe_shard

RAY_RESOURCES = {"num_gpus": 1}   # the `ray_cluster` fixture's; the GPU is a logical resource


@pytest.fixture(scope="module")
def crawled(tiny_world, tmp_path_factory):
    """The web corpus as a crawl leaves it: files fetched, nothing probed yet."""
    df = mf.read(tiny_world.truth_web)
    fetched = df["path"].notna()
    df.loc[fetched, ["width", "height", "fps", "frames", "duration_s", "codec"]] = None
    df.loc[fetched, ["status", "error"]] = ["ok", None]
    return mf.write(df, tmp_path_factory.mktemp("crawl") / "crawl.parquet")


@pytest.fixture(scope="module")
def local_probe(crawled, tiny_world, tmp_path_factory):
    return probe_manifest(crawled, tmp_path_factory.mktemp("local") / "probed.parquet", tiny_world.root,
                          shard_size=16, workers=2)


def _same(a: pd.DataFrame, b: pd.DataFrame) -> None:
    pd.testing.assert_frame_equal(a.reset_index(drop=True), b.reset_index(drop=True))


@pytest.mark.slow
def test_probe_through_ray_gives_the_local_manifest(ray_cluster, crawled, local_probe, tiny_world, tmp_path):
    local = local_probe.manifest
    truth = mf.read(tiny_world.truth_web)
    assert local_probe.todo == int(truth["path"].notna().sum()) and not local_probe.run.failed
    fetched = local[local["path"].notna()]
    codes = fetched.loc[fetched["status"] == "failed", "error"].map(mf.error_code)
    assert len(codes) >= 4 and set(codes) <= {"truncated", "not_media", "empty", "undecodable", "bad_header"}, codes
    ok = fetched[fetched["status"] == "ok"]
    assert ok["codec"].notna().all() and (ok["frames"] >= 1).all()
    assert (ok["width"].to_numpy() == truth.set_index("item_id").loc[ok["item_id"], "width"].to_numpy()).all()

    r = probe_manifest(crawled, tmp_path / "ray.parquet", tiny_world.root, "ray", shard_size=16)
    assert r.run.executor == "ray" and r.run.done == r.run.shards == -(-r.todo // 16) and r.run.rows == r.todo
    _same(r.manifest, local)
    again = probe_manifest(tmp_path / "ray.parquet", None, tiny_world.root, "ray")
    assert again.todo == 0 and again.run.shards == 0                    # a rerun has nothing left to do
    _same(again.manifest, local)


def _dies_once(shard: pd.DataFrame, ctx):
    """probe_shard, except that the worker holding the marked row SIGKILLs itself the first time."""
    marker = Path(ctx.options["marker"])
    if ctx.options["victim"] in set(shard["item_id"]) and not marker.exists():
        marker.touch()
        os.kill(os.getpid(), signal.SIGKILL)
    return probe_shard(shard, ctx)


@pytest.mark.slow
def test_a_killed_ray_worker_loses_nothing(ray_cluster, crawled, local_probe, tiny_world, tmp_path):
    df = mf.read(crawled)
    todo = df[pending(df)]
    victim = todo["item_id"].iloc[40]                                   # in shard 2 of 16-row shards
    opts = {"root": str(tiny_world.root), "victim": victim}
    out = tmp_path / "killed.parquet"
    mf.write(df, out)
    r = run_shards(_dies_once, todo, 16, "ray", on_part=commit(out), max_retries=0,
                   options={**opts, "marker": str(tmp_path / "killed.once")})
    assert list(r.failed) == [2] and r.done == r.shards - 1 and "died" in r.failed[2].lower(), r.failed
    left = mf.read(out)
    assert set(left.loc[pending(left), "item_id"]) == set(todo["item_id"].iloc[32:48])   # only the lost shard
    rerun = probe_manifest(out, None, tiny_world.root, "ray", shard_size=16)
    assert rerun.todo == 16 and not rerun.run.failed
    _same(rerun.manifest, local_probe.manifest)

    # with Ray's retries (the default) the task is run again on a new worker and one run completes
    out2 = tmp_path / "retried.parquet"
    mf.write(df, out2)
    r = run_shards(_dies_once, todo, 16, "ray", on_part=commit(out2),
                   options={**opts, "marker": str(tmp_path / "retried.once")})
    assert not r.failed and r.rows == len(todo) and (tmp_path / "retried.once").exists()
    _same(mf.read(out2), local_probe.manifest)


def _where(shard: pd.DataFrame, ctx):
    return shard.assign(error=f"device: {ctx.device}")


def test_gpu_aware_scheduling(ray_cluster, crawled):
    assert task_resources(True, {"CPU": 8, "GPU": 2}) == {"num_gpus": 1}
    assert task_resources(True, {"CPU": 8}) == {"num_cpus": 1}
    assert task_resources(False, {"CPU": 8, "GPU": 2}) == {"num_cpus": 1}
    rows = mf.read(crawled).head(4)
    parts = []
    r = run_shards(_where, rows, 2, "ray", gpu=True, on_part=parts.append)
    assert r.resources == {"num_gpus": 1} and r.workers == 1
    assert set(pd.concat(parts)["error"]) == {"device: cuda"}          # Ray handed each task the GPU
    parts.clear()
    r = run_shards(_where, rows, 2, "ray", gpu=False, on_part=parts.append)
    assert r.resources == {"num_cpus": 1} and set(pd.concat(parts)["error"]) == {"device: cpu"}


def test_without_ray_the_message_says_how_to_get_it(monkeypatch, crawled):
    monkeypatch.setitem(sys.modules, "ray", None)                       # `import ray` fails as if not installed
    with pytest.raises(ExecutorError, match=r"pip install 'curate\[ray\]'"):
        run_shards(_where, mf.read(crawled).head(2), 1, "ray")
    with pytest.raises(ExecutorError, match="not one of"):
        run_shards(_where, mf.read(crawled).head(2), 1, "dask")


@pytest.mark.slow
def test_scoring_and_the_clustered_search_on_ray_equal_the_local_run(ray_cluster, web_rows, tiny_world, tiny_teacher,
                                                                      tmp_path):
    import numpy as np

    from curate.clean.clusters import within_pairs
    from curate.clean.teacher import load_teacher, score_manifest
    from curate.core.executor import ExecutorSpec
    from tests.test_dedup import clustered_corpus

    teacher = load_teacher(tiny_teacher, "cpu")
    teachers = {"image": teacher, "video": teacher}
    local, _ = score_manifest(web_rows, tiny_world.root, teachers, batch_size=8)
    ray, rep = score_manifest(web_rows, tiny_world.root, teachers, batch_size=8,
                              executor=ExecutorSpec("ray", shard_size=16))
    assert rep.run.executor == "ray" and not rep.run.failed and rep.run.shards >= 4
    assert ray["teacher_sha"].notna().sum() == local["teacher_sha"].notna().sum() > 0
    np.testing.assert_allclose(ray["teacher_score"].astype(float), local["teacher_score"].astype(float), atol=1e-5)
    assert ray["teacher_pred"].equals(local["teacher_pred"])

    x = clustered_corpus(n=5_000, copies=50)
    here, _, _ = within_pairs(x, np.arange(len(x)), 0.9)
    there, run, _ = within_pairs(x, np.arange(len(x)), 0.9, executor=ExecutorSpec("ray", workers=2), folder=tmp_path)
    assert run.executor == "ray" and not run.failed and run.shards > 1
    as_set = lambda p: set(zip(p["item_id"], p["dup_of"]))     # noqa: E731
    assert as_set(there) == as_set(here) and {(k, k + 50) for k in range(100, 150)} <= as_set(here) | {
        (b, a) for a, b in as_set(here)}
