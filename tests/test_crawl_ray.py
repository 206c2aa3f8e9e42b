"""`curate crawl --executor ray` on a real local Ray cluster (2 CPUs, started once for the module) and
`--executor processes` (a spawned process pool) against the local executor on the loopback web: the same manifest, robots.txt
read once per worker process; a Ray worker SIGKILLed mid-shard loses nothing and the rerun
fetches no finished item twice (the server's counters)."""
import os
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
from test_crawl import demo_recipe, url_list_recipe

from curate.core import manifest as mf
from curate.crawl.crawler import crawl, crawl_shard, todo_mask

SAME = ["item_id", "source", "url", "label", "status", "sha256", "path", "width", "height", "frames", "dup_of"]


def _rows(df: pd.DataFrame) -> pd.DataFrame:
    out = df.assign(code=df["error"].map(mf.error_code))[SAME + ["code"]]
    return out.sort_values("item_id").reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["ray", "processes"])
def test_sharded_crawl_gives_the_local_manifest(executor, web, tmp_path, request):
    if executor == "ray":
        request.getfixturevalue("ray_cluster")
    (tmp_path / "local").mkdir()
    (tmp_path / executor).mkdir()
    local = crawl(demo_recipe(tmp_path / "local", web.url, workers=4))
    web.reset_stats()
    res = crawl(demo_recipe(tmp_path / executor, web.url, workers=4), executor=executor, shard_size=8)
    assert res.run.executor == executor and not res.run.failed and res.run.rows == res.fetched == local.fetched > 40
    # robots.txt is read once per worker process and site, not per shard and thread (57-72 reads on 2 cores before)
    reads = web.stats()["requests"].get("/robots.txt", 0)
    assert res.run.shards == -(-res.run.rows // 8) and 1 <= reads <= max(4, os.cpu_count() or 1)
    local, res = (_settled(r, tmp_path / name, web.url, executor=ex)
                  for r, name, ex in ((local, "local", "local"), (res, executor, executor)))
    df = mf.read(res.manifest)
    assert not (df["status"] == "planned").any() and {"ok", "failed"} <= set(df["status"])
    pd.testing.assert_frame_equal(_rows(df), _rows(mf.read(local.manifest)))
    ok = df[df["status"] == "ok"]
    assert all((tmp_path / executor / "data" / p).is_file() for p in ok["path"])
    time.sleep(0.5)   # the server counts a body after its last write returns; the client may be done first
    before = sum(web.stats()["completed"].values())
    again = crawl(demo_recipe(tmp_path / executor, web.url, workers=4), executor=executor)
    assert again.fetched == 0 and again.run is None
    assert sum(web.stats()["completed"].values()) == before    # (planning asks the APIs again) no media is fetched
    pd.testing.assert_frame_equal(_rows(again.df), _rows(df))


def _settled(res, folder: Path, url: str, executor: str):
    """Rerun a crawl while rows are left to retry (a fetch that timed out on a loaded CI box), as a user would; at
    most twice."""
    for _ in range(2):
        if not todo_mask(res.df, retry_failed=False).any():
            break
        res = crawl(demo_recipe(folder, url, workers=4), executor=executor, shard_size=16)
    return res


def _killer(victim: str, marker: str):
    """crawl_shard, except that the worker holding the victim row fetches the rows before it, then SIGKILLs itself
    (once: the marker file says it happened)."""
    def dies_mid_shard(shard: pd.DataFrame, sctx):
        ids = list(shard["item_id"])
        if victim in ids and not os.path.exists(marker):
            Path(marker).touch()
            crawl_shard(shard.iloc[:ids.index(victim)], sctx)   # files placed, rows never returned to the driver
            os.kill(os.getpid(), signal.SIGKILL)
        return crawl_shard(shard, sctx)
    return dies_mid_shard


@pytest.mark.slow
def test_a_killed_ray_worker_loses_nothing(ray_cluster, web, truth_images, tmp_path, monkeypatch):
    urls = [web.url + u for u in truth_images[:40]]
    recipe = url_list_recipe(tmp_path, urls, workers=2)
    web.reset_stats()
    plan = mf.read(crawl(recipe, dry_run=True).manifest)
    victim = plan.loc[plan["url"] == urls[13], "item_id"].iloc[0]          # 6th row of the second 8-row shard
    monkeypatch.setattr("curate.crawl.crawler.crawl_shard", _killer(victim, str(tmp_path / "killed.once")))
    res = crawl(recipe, executor="ray", shard_size=8, max_retries=0)
    assert (tmp_path / "killed.once").exists()
    assert len(res.run.failed) == 1 and "died" in next(iter(res.run.failed.values())).lower(), res.run.failed
    left = mf.read(res.manifest)
    lost = left[left["status"] == "planned"]
    assert len(lost) == 8 and victim in set(lost["item_id"]) and (left["status"] != "planned").sum() == 32
    placed = list((tmp_path / "data").rglob("*.jpg"))
    assert len(placed) > 32                                 # the dead shard's first rows were fetched and placed
    monkeypatch.undo()
    rerun = crawl(recipe, executor="ray", shard_size=8)
    assert rerun.fetched == 8 and not rerun.run.failed
    df = mf.read(rerun.manifest)
    assert (df["status"] == "ok").all() and df["sha256"].nunique() == 40
    time.sleep(0.5)
    completed = web.stats()["completed"]
    assert all(completed.get(u.replace(web.url, "")) == 1 for u in urls), completed   # nothing fetched twice


@pytest.fixture(scope="module")
def truth_images(tiny_world):
    t = pd.read_parquet(tiny_world.truth_web)
    keep = (t["media"] == "image") & t["broken"].isna() & ~t["noai"] & ~t["private"] & t["path"].notna()
    return t.loc[keep].drop_duplicates("sha256")["url"].tolist()
