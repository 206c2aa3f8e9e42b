"""Manifest folders (curate/core/store.py): commits of part files, last writer wins, compaction, old single files,
readers without curate, and commits SIGKILLed at random moments."""
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.core import store

REPO = Path(__file__).resolve().parents[1]


def planned(n: int, first: int = 0) -> pd.DataFrame:
    ids = [f"{i:016x}" for i in range(first, first + n)]
    return mf.from_table(mf.to_table(pd.DataFrame({"item_id": ids, "source": "web_image", "status": "planned",
                                                   "source_id": [str(i) for i in range(n)],
                                                   "label": [f"c{i % 3}" for i in range(n)]})))


def batch(g: int, n: int, old: int = 200, new: int = 50) -> pd.DataFrame:
    """Commit g: `old` rows of the first n now fetched, and `new` rows never seen; bytes = g marks the version."""
    rng = np.random.default_rng(g)
    ids = [f"{i:016x}" for i in rng.choice(n, old, replace=False)] + [f"{n + g * new + j:016x}" for j in range(new)]
    return mf.from_table(mf.to_table(pd.DataFrame({"item_id": ids, "source": "web_image", "status": "ok", "bytes": g,
                                                   "path": [f"web_image/{i[:2]}/{i}.jpg" for i in ids], "label": "c1"})))


def test_commits_read_back_as_upserts_and_an_old_file_becomes_the_first_part(tmp_path):
    path = tmp_path / "m.parquet"
    base = planned(300)
    mf.write(base, path, {"recipe": "r"})
    old_bytes = path.read_bytes()
    want = base
    for g in range(40):
        part = batch(g, 300, old=20, new=5)
        mf.commit(path, part, {"recipe": "r", "round": str(g)} if g % 10 == 0 else None)
        want = mf.upsert(want, part)
    assert path.is_dir() and (path / "part-00000000-00000000.parquet").read_bytes() == old_bytes   # linked, kept
    assert len(store.parts(path)) < 40                                    # the tail was merged along the way
    pd.testing.assert_frame_equal(mf.read(path), want.reset_index(drop=True))
    assert mf.read_metadata(path) == {"curate_schema": "1", "recipe": "r", "round": "30"}
    ones = mf.read(path, filter=pc.field("label") == "c1")
    pd.testing.assert_frame_equal(ones, want[want["label"] == "c1"].reset_index(drop=True))
    # a whole write replaces every part
    mf.write(planned(5), path, {"recipe": "s"})
    assert len(store.parts(path)) == 1 and len(mf.read(path)) == 5 and mf.read_metadata(path)["recipe"] == "s"


def test_compaction_keeps_content_order_and_metadata(tmp_path):
    path = tmp_path / "m.parquet"
    mf.commit(path, planned(1000), {"recipe": "r"})
    for g in range(5):
        mf.commit(path, batch(g, 1000))
    before = mf.read(path)
    store.compact(path)
    assert [p.path.name for p in store.parts(path)] == ["part-00000000-00000005.parquet"]
    assert sorted(os.listdir(path)) == ["part-00000000-00000005.parquet"]
    pd.testing.assert_frame_equal(mf.read(path), before)
    assert mf.read_metadata(path)["recipe"] == "r"
    # the compacted folder is exact for readers without curate
    pd.testing.assert_frame_equal(mf.from_table(pq.read_table(path))[list(before.columns)], before)
    assert len(pd.read_parquet(path)) == len(before)


def test_a_killed_compaction_or_conversion_leaves_a_readable_manifest(tmp_path):
    path = tmp_path / "m.parquet"
    mf.commit(path, planned(100))
    for g in range(3):
        mf.commit(path, batch(g, 100, old=10, new=2))
    want = mf.read(path)
    covered = {p.path.name: p.path.read_bytes() for p in store.parts(path)}
    store.compact(path)
    for name, data in covered.items():                  # as if killed after the rename, before the clean-up
        (path / name).write_bytes(data)
    (path / ".0123.tmp").write_bytes(b"half a part")     # and a temporary file of a killed commit
    pd.testing.assert_frame_equal(mf.read(path), want)
    mf.commit(path, batch(9, 100, old=1, new=0))
    assert sorted(os.listdir(path)) == ["part-00000000-00000003.parquet", "part-00000004-00000004.parquet"]
    # a conversion killed after the old file was removed and before the folder was renamed into place
    single = tmp_path / "s.parquet"
    mf.write(planned(10), single)
    staged = tmp_path / ".s.parquet.folder"
    staged.mkdir()
    os.link(single, staged / "part-00000000-00000000.parquet")
    single.unlink()
    assert mf.exists(single) and len(mf.read(single)) == 10 and single.is_dir()


def test_readers_without_curate_take_the_last_row_per_item(tmp_path):
    """Between compactions (and with files an interrupted compaction left): DuckDB keeps the row of the file with
    the highest last commit per item_id, as manifests/README.md says."""
    duckdb = pytest.importorskip("duckdb")
    path = tmp_path / "m.parquet"
    mf.commit(path, planned(500))
    for g in range(3):
        mf.commit(path, batch(g, 500))
    # a compaction killed before it deleted the files it covers: part-00000002-00000002 sorts after it by name
    store._write_pieces(path / "part-00000000-00000003.parquet", store._merged(store.parts(path)), {})
    assert len(os.listdir(path)) == 5 and len(store.parts(path)) == 1
    want = mf.read(path).set_index("item_id")
    got = duckdb.sql(f"""SELECT item_id, status, bytes FROM read_parquet('{path}/*.parquet', filename=true)
                         QUALIFY row_number() OVER (PARTITION BY item_id
                                 ORDER BY regexp_extract(filename, '-(\\d+)\\.parquet$', 1) DESC) = 1""").df()
    got = got.set_index("item_id").loc[want.index]
    assert (got["status"] == want["status"]).all() and (got["bytes"].fillna(-1) == want["bytes"].fillna(-1)).all()
    store.compact(path)
    n = duckdb.sql(f"SELECT count(*), count(DISTINCT item_id) FROM '{path}/*.parquet'").fetchall()[0]
    assert n == (len(want), len(want))


def test_manifest_commands_compact_export_and_info(tmp_path):
    path = tmp_path / "m.parquet"
    mf.commit(path, planned(50), {"recipe": "r"})
    mf.commit(path, batch(0, 50, old=5, new=1))
    res = CliRunner().invoke(cli, ["info", str(path)])
    assert res.exit_code == 0 and "2 part file(s)" in res.output, res.output
    out = tmp_path / "one.parquet"
    res = CliRunner().invoke(cli, ["manifest", "export", str(path), "-o", str(out)])
    assert res.exit_code == 0 and out.is_file(), res.output
    pd.testing.assert_frame_equal(mf.from_table(pq.read_table(out)), mf.read(path))
    assert mf.read_metadata(out)["recipe"] == "r"
    res = CliRunner().invoke(cli, ["manifest", "compact", str(path)])
    assert res.exit_code == 0 and "2 part file(s) -> 1" in res.output
    res = CliRunner().invoke(cli, ["info", str(out), "--json"])
    assert res.exit_code == 0 and '"rows": 51' in res.output


CHILD = """
import sys
sys.path.insert(0, sys.argv[4])
from test_store import batch
from curate.core import manifest as mf, store
path, log, g, n = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[5])
with open(log, "a") as fh:
    while True:
        mf.commit(path, batch(g, n))
        fh.write(f"{g}\\n")
        fh.flush()
        if g % 10 == 9:
            store.compact(path)
        g += 1
"""


def test_commits_sigkilled_at_random_moments_lose_and_duplicate_nothing(tmp_path):
    """A child commits 250-row batches (200 updates, 50 new rows) into a 10^5-row manifest, compacting every 10, and
    logs each batch after its commit returns; it is SIGKILLed at random moments. After every kill the manifest opens,
    every logged row holds its latest value (or the in-flight batch's), and no item_id appears twice."""
    n = 100_000
    path, log = tmp_path / "m.parquet", tmp_path / "done.log"
    mf.write(planned(n), path)                      # an old single file: the first commit converts it
    rnd = random.Random(7)
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    g = 0
    for _ in range(6):
        seen = len(log.read_text().splitlines()) if log.exists() else 0
        proc = subprocess.Popen([sys.executable, "-c", CHILD, str(path), str(log), str(g), str(REPO / "tests"),
                                 str(n)], env=env, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and (not log.exists() or len(log.read_text().splitlines()) <= seen):
            time.sleep(0.05)
        time.sleep(rnd.uniform(0.0, 1.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        done = [int(x) for x in log.read_text().splitlines()]
        assert done, proc.stderr.read().decode()[-2000:]
        g = done[-1] + 1                            # in flight when killed: committed or not
        latest: dict[str, int] = {}
        for k in done:
            latest.update(dict.fromkeys(batch(k, n)["item_id"], k))
        flight = set(batch(g, n)["item_id"])
        df = mf.read(path)                          # opens; validation refuses duplicate item ids
        got = dict(zip(df["item_id"], df["bytes"]))
        assert set(latest) <= set(got) and len(got) <= n + len(set(latest) | flight)
        wrong = [i for i, k in latest.items() if pd.isna(got[i]) or got[i] not in (k, g if i in flight else k)]
        assert not wrong, f"{len(wrong)} rows lost their latest committed value"
        untouched = df[~df["item_id"].isin(list(latest) + list(flight))]
        assert (untouched["status"] == "planned").all() and untouched["bytes"].isna().all()
    assert g > 20                                   # the kills landed after many commits, compactions among them
