"""The OmniSource manifest: `curate merge` of a target and a filtered crawl that live under different data roots,
`curate train` on it with no other option mixing the web rows in as OmniSource does (and exactly as the same
--source options on the separate manifests do), a moved root re-pointed once, and errors that name the splits."""
import json
import shutil

import pytest
import torch
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from trainers.checkpoint import read_checkpoint

TINY = ["--model", "tsn_r50", "--tiny", "--epochs", "2", "--batch-size", "4", "--size", "32", "--seed", "0",
        "--set", "schedule.optimizer=adamw", "--set", "schedule.log_every=1"]


def run(*args, code=0):
    res = CliRunner().invoke(cli, [str(a) for a in args])
    assert res.exit_code == code, res.output
    return res.output


@pytest.fixture
def crawl(tiny_world, web_rows, tmp_path):
    """A filtered crawl as `curate filter` leaves it, under its own data root (a copy of the web files)."""
    root = tmp_path / "crawl_data"
    rows = web_rows[list(mf.COLUMNS)].copy()
    ok = rows["path"].notna() & (rows["status"] == "ok")
    for rel in rows.loc[ok, "path"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(tiny_world.root / rel, root / rel)
    rows.loc[rows.index[:3], ["status", "error"]] = ["rejected", "teacher_low: p 0.01"]      # what a filter drops
    return mf.write(rows, tmp_path / "web.filtered.parquet", {"data_root": str(root)}), root


def test_merge_keeps_the_target_adds_the_kept_web_rows_and_refuses_collisions(tiny_world, crawl, tmp_path):
    web, root = crawl
    target = mf.read(tiny_world.target_manifest)
    leak = mf.read(web).iloc[[5, 6]].assign(sha256=target.loc[target["split"] == "test", "sha256"].iloc[0])
    leak = leak.assign(item_id=["f" * 16, "e" * 16], split=["web", "val"])    # a copy of a test item; a crawled val row
    extra = mf.write(leak, tmp_path / "leak.parquet", {"data_root": str(root)})
    out = run("merge", tiny_world.target_manifest, web, extra, "-o", tmp_path / "omni.parquet")
    omni = mf.read(tmp_path / "omni.parquet")
    usable = mf.read(web)
    usable = usable[(usable["status"] == "ok") & usable["path"].notna()]
    assert len(omni) == len(target) + len(usable)
    assert omni.iloc[:len(target)]["item_id"].tolist() == target["item_id"].tolist()        # the target as it was
    assert set(omni.iloc[len(target):]["split"]) == {"web"}
    unusable = len(mf.read(web)) - len(usable)                  # 3 the filter dropped, and the crawl's failures
    assert f"refused {unusable} web rows: not usable" in out and "refused 1 web rows: same content as a val" in out
    assert "refused 1 web rows: a target split" in out
    folders, by_source = mf.data_roots(tmp_path / "omni.parquet")
    assert folders == {"target": str(tiny_world.root.resolve()), "web.filtered": str(root.resolve())}
    assert by_source["web_image"] == "web.filtered" and set(by_source) >= set(omni["source"])
    paths = mf.media_paths(omni, tmp_path / "omni.parquet")
    assert all(p.startswith(str(root.resolve())) for p in paths[len(target):])
    assert "data root web.filtered" in run("info", tmp_path / "omni.parquet")


@pytest.mark.slow
def test_training_on_the_merged_manifest_equals_the_same_sources_given_separately(tiny_world, crawl, tmp_path):
    web, _ = crawl
    run("merge", tiny_world.target_manifest, web, "-o", tmp_path / "omni.parquet")
    out = run("train", tmp_path / "omni.parquet", *TINY, "--out", tmp_path / "merged")
    assert "sources mixed in every iteration" in out and "web_image" in out and "feed_video" in out
    omni = mf.read(tmp_path / "omni.parquet")
    groups = omni[omni["split"] == "web"].groupby(["source", "media"]).size().index
    explicit = [a for source, media in sorted(groups)
                for a in ("--source", f"{source}={web}:origin={source},media={media},split=web")]
    run("train", tiny_world.target_manifest, *TINY, *explicit, "--out", tmp_path / "separate")
    log = {k: [json.loads(ln) for ln in (tmp_path / k / "metrics.jsonl").read_text().splitlines()]
           for k in ("merged", "separate")}
    val = {k: [e for e in v if e["event"] == "val"] for k, v in log.items()}
    assert len(val["merged"]) == len(val["separate"]) == 2
    for m, s in zip(val["merged"], val["separate"]):
        assert m.keys() == s.keys() and all(m[k] == pytest.approx(s[k], abs=1e-6) for k in m if k != "event")
    assert [e["loss"] for e in log["merged"] if e["event"] == "train"] == pytest.approx(
        [e["loss"] for e in log["separate"] if e["event"] == "train"], abs=1e-6)
    a, b = (read_checkpoint(tmp_path / k / "last.pt")["state_dict"] for k in ("merged", "separate"))
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-6) for k in a)
    sources = read_checkpoint(tmp_path / "merged" / "last.pt")["meta"]["sources"]
    assert [s["name"] for s in sources] == ["target", *[s for s, _ in sorted(groups)]]
    assert all(s["origin"] == s["name"] and s["split"] == "web" for s in sources[1:])


def test_a_moved_root_is_re_pointed_once(tiny_world, crawl, tmp_path):
    web, root = crawl
    run("merge", tiny_world.target_manifest, web, "-o", tmp_path / "omni.parquet")
    omni = mf.read(tmp_path / "omni.parquet")
    moved = root.rename(tmp_path / "somewhere_else")
    paths = mf.media_paths(omni, tmp_path / "omni.parquet").dropna()
    assert not all(map(lambda p: __import__("os").path.exists(p), paths))
    paths = mf.media_paths(omni, tmp_path / "omni.parquet", {"web.filtered": str(moved)}).dropna()
    assert all(__import__("os").path.exists(p) for p in paths) and len(paths) > 0
    out = run("train", tmp_path / "omni.parquet", *TINY[:-4], "--epochs", "1", "--data-root",
              f"web.filtered={moved}", "--out", tmp_path / "run")
    assert (tmp_path / "run" / "last.pt").exists() and "web_image" in out
    bad = run("train", tmp_path / "omni.parquet", *TINY, "--data-root", "crawl=/x", "--out", tmp_path / "r2", code=1)
    assert "no data roots named ['crawl']" in bad and "web.filtered" in bad


def test_a_split_with_no_usable_rows_names_the_splits_and_the_option(crawl, tmp_path):
    web, _ = crawl
    out = run("train", web, *TINY, "--out", tmp_path / "r", code=1)
    assert "no usable rows (status ok, with a file) in split 'train'" in out
    assert "web" in out and " ok of " in out and "--split" in out and "curate merge" in out
