"""FineGym the whole way, as a user runs it: `gym import` (shipped official categories and split files, or one's
own) -> `gym crawl` (event spans) -> `crawl` (span-only downloads from the loopback web) -> `gym trim` ->
`train --level element --subset gym99`, on an annotation of the demo world's routines relabelled with official Gym99
label ids."""
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.formats import finegym as fg


def run(*args):
    res = CliRunner().invoke(cli, [str(a) for a in args], catch_exceptions=False)
    assert res.exit_code == 0, res.output
    return res.output


def gym99_annotation(world_root, out):
    """The world's routines as a FineGym v1.1 annotation whose elements carry official Gym99 labels: world events 1
    and 2 become vault (VT) and floor (FX), each world element one Gym99 class of that apparatus; the world's own
    train/val lists become gym99_{train_element_v1.1,val_element}.txt."""
    run("gym", "build", "--world", world_root, "-o", out / "built")
    built = out / "built" / "finegym"
    cats = fg.read_categories(fg.SHIPPED, [])
    by_event = {ev: [c for c, g in sorted(cats.subsets["gym99"].items()) if cats.elements[g][2] == ev]
                for ev in ("VT", "FX")}
    world_events = {int(line.split(";")[0].split(":")[1]): line.split(";")[1].strip()
                    for line in (built / "event_categories.txt").read_text().splitlines()}
    world_elements = {}
    for line in (built / "gym4_categories.txt").read_text().splitlines():
        glabel, event = int(line.split(";")[0].split(":")[1]), line.split("(")[1].split(")")[0]
        world_elements[glabel] = event
    official = {name: fg.DEFAULT_EVENTS[i] for i, name in world_events.items()}
    clabel = {g: by_event[official[ev]][k] for k, (g, ev) in enumerate(sorted(world_elements.items()))}
    splits = out / "splits"
    splits.mkdir(parents=True)
    for ours, theirs in (("train", "gym99_train_element_v1.1.txt"), ("val", "gym99_val_element.txt")):
        lines = (built / f"gym4_{ours}_element.txt").read_text().splitlines()
        (splits / theirs).write_text("".join(f"{clip} {clabel[int(g)]}\n" for clip, g in map(str.split, lines)))
    return built / "annotation.json", splits, sorted(set(clabel.values()))


@pytest.mark.slow
def test_finegym_import_crawl_trim_and_train_the_gym99_benchmark(tiny_world, web, tmp_path):
    ann, splits, used = gym99_annotation(tiny_world.root, tmp_path)
    gym = tmp_path / "gym"
    out = run("gym", "import", ann, "--splits", splits, "-o", gym)    # categories: the shipped official files
    elements = mf.read(gym / "elements.parquet")
    assert set(elements["gym99_label"].dropna().astype(int)) == set(used)
    assert set(elements["gym99_split"].dropna()) == {"train", "val"} and "wrote" in out

    out = run("gym", "crawl", gym, "-o", gym / "sources.parquet", "--url-template", f"{web.url}/watch?v={{id}}")
    events = mf.read(gym / "events.parquet")
    sources = mf.read(gym / "sources.parquet")
    assert f"{len(events)} event spans of {events['source_id'].nunique()} source videos" in out
    assert sources["start_s"].notna().all() and sources["label"].isna().all()       # spans, no labels
    out = run("crawl", gym / "sources.parquet", "--set", "download.workers=2")
    sources = mf.read(gym / "sources.parquet")
    assert (sources["status"] == "ok").all(), sources[["status", "error"]]
    spans = (sources["end_s"] - sources["start_s"]).to_numpy()
    assert (abs(sources["duration_s"].to_numpy() - spans) < 0.25).all()             # only the spans came down
    assert "without a label" in out

    run("gym", "trim", gym, "--root", tmp_path / "data", "--sources", gym / "sources.parquet")
    elements = mf.read(gym / "elements.parquet")
    assert (elements["status"] == "ok").all(), elements[["status", "error"]]

    run("train", gym / "elements.parquet", "--level", "element", "--subset", "gym99", "--model", "tsn_r50",
        "--tiny", "--epochs", "1", "--batch-size", "4", "--size", "32", "--out", tmp_path / "run")
    from trainers.checkpoint import load_checkpoint

    model, meta = load_checkpoint(tmp_path / "run" / "last.pt")
    names = [n for n, _, _ in (fg.read_categories(fg.SHIPPED, []).elements[g]
                               for g in map(fg.read_categories(fg.SHIPPED, []).subsets["gym99"].get, range(99)))]
    assert len(meta["classes"]) == 99 and meta["classes"] == names                 # the 99-way benchmark head
    assert model.cls_head.fc_cls.out_features == 99
    val = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    val = [e for e in val if e["event"] == "val"]
    assert val and "mean_class_acc" in val[-1] and 0.0 <= val[-1]["mean_class_acc"] <= 1.0


def test_shipped_v10_and_v11_split_files_agree_where_they_overlap():
    problems: list[fg.Problem] = []
    files = {v: fg.find_split_files(fg.SHIPPED, v) for v in ("v1.0", "v1.1")}
    for subset in ("gym99", "gym288"):
        old, new = ({clip: lab for _, clip, lab in fg.read_split(files[v][subset, "train"], problems)}
                    for v in ("v1.0", "v1.1"))
        assert problems == [] and set(old) < set(new) and all(new[c] == lab for c, lab in old.items())
        assert files["v1.0"][subset, "val"] == files["v1.1"][subset, "val"]              # one val list for both
    assert len(fg.read_split(files["v1.1"]["gym288", "val"], problems)) > len(
        fg.read_split(files["v1.1"]["gym99", "val"], problems))


def test_a_key_that_disagrees_with_its_timestamps_is_a_warning_unless_strict(tmp_path):
    cats = fg.read_categories(fg.SHIPPED, [])
    g = cats.subsets["gym99"][0]
    ann = {"vid00000001": {"E_000010_000030": {"event": 1, "timestamps": [[10.0, 30.0]], "segments": {
        "A_0001_0004": {"stages": 1, "timestamps": [[1.2, 3.998]]}}}}}              # 3.998 truncates to 3, not 4
    (tmp_path / "a.json").write_text(json.dumps(ann))
    (tmp_path / "splits").mkdir()
    (tmp_path / "splits" / "gym99_train_element.txt").write_text("vid00000001_E_000010_000030_A_0001_0004 0\n")
    warnings: list[fg.Problem] = []
    events, elements, _ = fg.read_annotations(tmp_path / "a.json", warnings=warnings, splits=tmp_path / "splits")
    assert len(warnings) == 1 and "A_0001_0004" in warnings[0].where and "A_0001_0003" in warnings[0].message
    assert elements["element_id"].tolist() == [g] and elements["end_s"].tolist() == [pytest.approx(13.998)]
    with pytest.raises(fg.GymError, match="key does not match"):
        fg.read_annotations(tmp_path / "a.json", splits=tmp_path / "splits")
    out = CliRunner().invoke(cli, ["gym", "import", str(tmp_path / "a.json"), "--splits", str(tmp_path / "splits"),
                                   "-o", str(tmp_path / "g"), "--no-plot"])
    assert out.exit_code == 0 and "1 key(s) disagree" in out.output
    strict = CliRunner().invoke(cli, ["gym", "import", str(tmp_path / "a.json"), "--splits", str(tmp_path / "splits"),
                                      "-o", str(tmp_path / "s"), "--strict"])
    assert strict.exit_code == 1 and "key does not match" in strict.output and not (tmp_path / "s").exists()
    assert isinstance(events, pd.DataFrame) and len(events) == 1
