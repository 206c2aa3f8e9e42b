"""Data-efficiency curves on the demo world: nested per-class subsets, the storage cost model, one real training run
per point scored on the target's test split, the PNG and Parquet, and a rerun that trains nothing."""
import math

import numpy as np
import pandas as pd
import pytest
import torch
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.experiments import efficiency as eff
from curate.experiments import runs
from trainers.config import ConfigError


@pytest.fixture(scope="module")
def web_sources(tiny_world):
    """The world's web corpus split into two sources, each only its usable rows (status ok, with a file)."""
    df = mf.read(tiny_world.truth_web)
    ok = df[(df["status"] == "ok") & df["path"].notna()]
    return {"images": ok[ok["source"] == "web_image"].reset_index(drop=True),
            "videos": ok[ok["source"] == "feed_video"].reset_index(drop=True)}


def test_nested_per_class_subsets_and_the_cost_model(web_sources):
    images, videos = web_sources["images"], web_sources["videos"]
    subsets = eff.nested_subsets(images, [0.5, 0.25, 1.0], seed=3)
    assert list(subsets) == [0.25, 0.5, 1.0]
    ids = {f: set(s["item_id"]) for f, s in subsets.items()}
    assert ids[0.25] < ids[0.5] < ids[1.0] == set(images["item_id"])
    per_class = images["label"].value_counts()
    for f, s in subsets.items():
        got = s["label"].value_counts()
        assert all(got[c] == math.ceil(f * n) for c, n in per_class.items()), (f, got, per_class)
    shuffled = eff.nested_subsets(images.sample(frac=1, random_state=1), [0.5], seed=3)[0.5]
    assert set(shuffled["item_id"]) == ids[0.5]                                       # row order does not matter
    assert set(eff.nested_subsets(images, [0.5], seed=4)[0.5]["item_id"]) != ids[0.5]  # the seed does

    cost = eff.storage(videos)
    minutes = videos["duration_s"].sum() / 60
    assert cost["items"] == len(videos) and cost["images"] == 0 and minutes > 0
    assert cost["gigabytes"] == pytest.approx(minutes * 12e6 / 1e9)                   # 12 MB per video minute
    assert eff.storage(images)["gigabytes"] == pytest.approx(len(images) * 100e3 / 1e9)  # 100 KB per image
    broken = videos.assign(duration_s=np.nan, start_s=np.nan)
    with pytest.raises(ConfigError, match="no duration_s"):
        eff.storage(broken)
    with pytest.raises(ConfigError, match=r"in \(0, 1\]"):
        eff.parse_fractions("0.5,1.5")


@pytest.mark.slow
def test_curves_on_the_demo_world_then_a_rerun_trains_nothing(tiny_world, web_sources, tmp_path, monkeypatch):
    torch.set_num_threads(2)
    root = str(tiny_world.root)
    mf.write(web_sources["images"], tmp_path / "images.parquet", metadata={"data_root": root})
    mf.write(web_sources["videos"], tmp_path / "videos.parquet")                 # its root comes with the --source option
    out = tmp_path / "eff"
    res = CliRunner().invoke(cli, ["efficiency", str(tiny_world.target_manifest),
                                   "--source", f"images={tmp_path / 'images.parquet'}",
                                   "--source", f"videos={tmp_path / 'videos.parquet'}:root={root}",
                                   "--fractions", "0.25,0.5,1", "--epochs", "1", "--num-clips", "4", "--workers", "2",
                                   "--out", str(out)], env={"COLUMNS": "160"})
    assert res.exit_code == 0, res.output
    assert "gain / GB" in res.output and "efficiency.png" in res.output

    table = pd.read_parquet(out / "efficiency.parquet")
    assert list(table.columns) == list(eff.SCHEMA) and len(table) == 7               # 0-point + 2 sources x 3
    assert table.groupby("source").size().to_dict() == {"target_only": 1, "images": 3, "videos": 3}
    assert table["top1"].between(0, 1).all() and table["mean_class_acc"].between(0, 1).all()
    assert (table["seconds"] > 0).all()
    for run in table["run"]:
        assert (out / run / "last.pt").exists() and (out / run / "result.json").exists()

    # the rows each point added are nested, and its items / GB follow the cost model (by hand for two rows)
    for name in ("images", "videos"):
        added = [set((out / r / f"{name}_items.txt").read_text().split())
                 for r in table.loc[table["source"] == name].sort_values("fraction")["run"]]
        assert added[0] < added[1] < added[2] == set(web_sources[name]["item_id"])
    half = table[(table["source"] == "images") & (table["fraction"] == 0.5)].iloc[0]
    want = sum(math.ceil(0.5 * n) for n in web_sources["images"]["label"].value_counts())
    assert half["items"] == want and half["gigabytes"] == pytest.approx(want * 1e-4)
    full = table[(table["source"] == "videos") & (table["fraction"] == 1.0)].iloc[0]
    assert full["items"] == len(web_sources["videos"])
    assert full["gigabytes"] == pytest.approx(web_sources["videos"]["duration_s"].sum() / 60 * 0.012)
    zero = table[table["source"] == "target_only"].iloc[0]
    assert zero["items"] == 0 and zero["gigabytes"] == 0

    png = out / "efficiency.png"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"
    gains = eff.gains(table)
    assert gains["gain"].tolist() == pytest.approx([table.loc[(table["source"] == s) & (table["fraction"] == 1.0),
                                                              "top1"].iloc[0] - zero["top1"] for s in gains["source"]])

    # a finished run that lost its scores (killed during the test pass) is resumed (no step taken) and scored again
    victim = out / "runs" / "videos" / "f0.5"
    (victim / "result.json").unlink()
    steps = (victim / "metrics.jsonl").read_text().count('"event": "train"')
    rescored = eff.efficiency_curves(tiny_world.target_manifest, web_sources, out, fractions=[0.25, 0.5, 1.0], epochs=1,
                                     data={"num_clips": 4})
    assert (victim / "metrics.jsonl").read_text().count('"event": "train"') == steps
    pd.testing.assert_frame_equal(rescored.drop(columns="seconds"), table.drop(columns="seconds"))

    # rerun through the function with the same data as DataFrames: every point is read back, nothing trains
    stamps = {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")}

    def no_training(*args, **kwargs):
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(runs, "train", no_training)
    again = eff.efficiency_curves(tiny_world.target_manifest, web_sources, out, fractions=[0.25, 0.5, 1.0], epochs=1,
                                  data={"num_clips": 4})
    pd.testing.assert_frame_equal(again, rescored)
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*.pt")} == stamps
    with pytest.raises(ConfigError, match="other settings"):                       # a changed run is refused
        eff.efficiency_curves(tiny_world.target_manifest, web_sources, out, fractions=[0.25, 0.5, 1.0], epochs=2,
                              data={"num_clips": 4})

    # the demo's way: a point whose rows changed is trained again in its folder; the unchanged point is read back
    monkeypatch.undo()
    fewer = web_sources["images"].iloc[2:]
    changed = eff.efficiency_curves(tiny_world.target_manifest, {"images": fewer}, out, fractions=[1.0], epochs=1,
                                    data={"num_clips": 4}, replace_stale=True)
    assert set((out / "runs" / "images" / "f1" / "images_items.txt").read_text().split()) == set(fewer["item_id"])
    assert changed.set_index("source").loc["target_only", "top1"] == zero["top1"]
    assert (out / "runs" / "target_only" / "last.pt").stat().st_mtime_ns == stamps[out / "runs" / "target_only" /
                                                                                    "last.pt"]


def test_a_run_warms_up_over_an_eighth_of_its_own_epochs_whatever_its_recipe_says():
    tiny = eff.run_config("slowonly_r50", True, 40, 8, 3e-3, 32, 0, None, None)["schedule"]
    full = eff.run_config("slowonly_r50", False, 16, 8, 3e-3, 32, 0, None, None)["schedule"]   # recipe: 34 of 256
    told = eff.run_config("slowonly_r50", True, 40, 8, 3e-3, 32, 0, {"warmup_epochs": 0}, None)["schedule"]
    assert (tiny["warmup_epochs"], full["warmup_epochs"], told["warmup_epochs"]) == (5.0, 2.0, 0)
