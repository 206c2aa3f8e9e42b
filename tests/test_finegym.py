"""FineGym formats: hand-written files in the official layout -> manifests, every planted error reported,
build/import round trips, MMAction2 lists, and real trimming of the demo world's routine videos."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from curate.formats import finegym as fg

REAL = fg.SHIPPED   # the official category and split files, shipped as package data

ANNOTATION = {
    "Xy9_abc-DEF": {
        "E_001203_001262": {"event": 3, "timestamps": [[1203.48, 1262.91]], "segments": {
            "A_0004_0006": {"stages": 1, "timestamps": [[4.52, 6.10]]},
            "A_0011_0012": {"stages": 1, "timestamps": [[11.07, 12.88]]}}},
        "E_001540_001547": {"event": 1, "timestamps": [[1540.20, 1547.02]], "segments": {
            "A_0000_0006": {"stages": 3, "timestamps": [[0.10, 3.05], [3.05, 4.40], [4.40, 6.52]]}}},
        "E_002010_002071": {"event": 7, "timestamps": [[2010.5, 2071.3]], "segments": None}},
    "-AbCdEfGh_1": {
        "E_000100_000150": {"event": 2, "timestamps": [[100.25, 150.75]], "segments": {
            "A_0002_0003": {"stages": 1, "timestamps": [[2.5, 3.75]]},
            "A_0010_0012": {"stages": 1, "timestamps": [[10.0, 12.5]]}}},
        "E_000200_000240": {"event": 4, "timestamps": [[200.0, 240.5]], "segments": {
            "A_0005_0006": {"stages": 1, "timestamps": [[5.2, 6.9]]},
            "A_0020_0021": {"stages": 1, "timestamps": [[20.1, 21.0]]}}}},
    "q_w-e_r-t_y": {
        "E_000010_000017": {"event": 1, "timestamps": [[10.5, 17.9]], "segments": {
            "A_0000_0007": {"stages": 3, "timestamps": [[0.2, 2.0], [2.0, 3.1], [3.1, 7.2]]}}},
        "E_000030_000080": {"event": 4, "timestamps": [[30.0, 80.0]], "segments": {
            "A_0001_0003": {"stages": 1, "timestamps": [[1.5, 3.2]]},
            "A_0004_0006": {"stages": 1, "timestamps": [[4.0, 6.0]]}}}},
}
GYM530 = """\
Glabel:   0; set:  1; (VT) round-off, flic-flac on, stretched salto backward with 2 turn off
Glabel:   1; set:  1; (VT) round-off, flic-flac with 0.5 turn on, stretched salto forward with 0.5 turn off
Glabel: 104; set: 21; (FX) stag jump      
Glabel: 171; set: 24; (FX) salto forward stretched with 2 twist
Glabel: 213; set: 31; (BB) split jump     
Glabel: 336; set: 34; (BB) round-off
Glabel: 400; set: 41; (UB) clear hip circle backward with 1 turn
Glabel: 500; set: 44; (UB) salto backward stretched with 2 twist (dismount)
"""
GYM99 = """\
Clabel:   0; set:  1; Glabel:   1; (VT) round-off, flic-flac with 0.5 turn on, stretched salto forward with 0.5 turn off
Clabel:   1; set: 21; Glabel: 104; (FX) stag jump      
Clabel:   2; set: 24; Glabel: 171; (FX) salto forward stretched with 2 twist
Clabel:   3; set: 31; Glabel: 213; (BB) split jump     
Clabel:   4; set: 34; Glabel: 336; (BB) round-off
Clabel:   5; set: 41; Glabel: 400; (UB) clear hip circle backward with 1 turn
"""
# Gym288 here lists all eight elements, Clabel in Glabel order.
GLABELS = [0, 1, 104, 171, 213, 336, 400, 500]
GYM99_IDS = [1, 104, 171, 213, 336, 400]
# clip -> (Glabel, gym99 split or None, gym288 split); element 5 is val in gym99 but train in gym288 (as in the
# real files, where 99 clips change split between the subsets); the last clip is in no split file.
CLIPS = {
    "Xy9_abc-DEF_E_001203_001262_A_0004_0006": (213, "train", "train"),
    "Xy9_abc-DEF_E_001203_001262_A_0011_0012": (336, "val", "val"),
    "Xy9_abc-DEF_E_001540_001547_A_0000_0006": (1, "train", "train"),
    "-AbCdEfGh_1_E_000100_000150_A_0002_0003": (104, "train", "train"),
    "-AbCdEfGh_1_E_000100_000150_A_0010_0012": (171, "val", "train"),
    "-AbCdEfGh_1_E_000200_000240_A_0005_0006": (400, "train", "train"),
    "-AbCdEfGh_1_E_000200_000240_A_0020_0021": (500, None, "val"),
    "q_w-e_r-t_y_E_000010_000017_A_0000_0007": (0, None, "train"),
    "q_w-e_r-t_y_E_000030_000080_A_0001_0003": (400, "val", "val"),
}


def write_fixture(root: Path, annotation: dict | None = None) -> tuple[Path, Path]:
    """The FineGym files of the fixture under root: (annotation JSON, categories/splits folder)."""
    cats = root / "categories"
    cats.mkdir(parents=True, exist_ok=True)
    shutil.copy(REAL / "set_categories.txt", cats / "set_categories.txt")
    (cats / "gym530_categories.txt").write_text(GYM530)
    (cats / "gym99_categories.txt").write_text(GYM99)
    names = {int(ln.split(";")[0].split(":")[1]): ln.split(";", 2)[2] for ln in GYM530.splitlines()}
    sets = {int(ln.split(";")[0].split(":")[1]): int(ln.split(";")[1].split(":")[1]) for ln in GYM530.splitlines()}
    (cats / "gym288_categories.txt").write_text("".join(
        f"Clabel: {c:3d}; set: {sets[g]:2d}; Glabel: {g:3d};{names[g]}\n" for c, g in enumerate(GLABELS)))
    for split, fname in (("train", "train_element_v1.0"), ("val", "val_element")):
        (cats / f"gym99_{fname}.txt").write_text("".join(
            f"{clip} {GYM99_IDS.index(g)}\n" for clip, (g, s99, _) in CLIPS.items() if s99 == split))
        (cats / f"gym288_{fname}.txt").write_text("".join(
            f"{clip} {GLABELS.index(g)}\n" for clip, (g, _, s288) in CLIPS.items() if s288 == split))
    path = root / "finegym_annotation_info_v1.0.json"
    path.write_text(json.dumps(annotation or ANNOTATION, indent=1))
    return path, cats


def test_clip_ids_keep_underscores_and_dashes_of_video_ids():
    assert fg.parse_clip_id("q_w-e_r-t_y_E_000010_000017_A_0000_0007") == ("q_w-e_r-t_y", "E_000010_000017",
                                                                           "A_0000_0007")
    assert fg.parse_clip_id("A0xAXXysHUo_E_002184_002237_A_0035_0036")[0] == "A0xAXXysHUo"
    with pytest.raises(ValueError):
        fg.parse_clip_id("abc_E_1_2_A_3_4")
    assert fg.event_key(1203.99, 1262.01) == "E_001203_001262" and fg.action_key(0.99, 82.5) == "A_0000_0082"


def test_real_category_files_parse_with_the_published_counts():
    problems: list[fg.Problem] = []
    cats = fg.read_categories(REAL, problems)
    assert problems == []
    assert len(cats.elements) == 530 and len(cats.sets) == 15 and cats.full == "gym530"
    assert {k: len(v) for k, v in cats.subsets.items()} == {"gym288": 288, "gym99": 99}
    per_event = pd.Series([ev for _, _, ev in cats.elements.values()]).value_counts().to_dict()
    assert per_event == {"VT": 67, "FX": 137, "BB": 193, "UB": 133}
    assert cats.subsets["gym99"][27] == 171 == cats.subsets["gym288"][106]
    assert all(name == name.strip() for name, _, _ in cats.elements.values())
    splits = fg.find_split_files(REAL)
    assert splits["gym99", "train"].name == "gym99_train_element_v1.1.txt.gz"
    assert fg.find_split_files(REAL, "v1.0")["gym99", "train"].name == "gym99_train_element_v1.0.txt.gz"
    rows = fg.read_split(splits["gym99", "val"], problems)
    assert problems == [] and len(rows) == 8521 and max(r[2] for r in rows) == 98


def test_fixture_imports_to_exact_counts_and_labels(tmp_path):
    ann, cats = write_fixture(tmp_path)
    events, elements, _ = fg.read_annotations(ann, cats, version="v1.0")
    assert len(events) == 7 and len(elements) == 10
    assert sorted(events["event"].value_counts().items()) == [("BB", 1), ("FX", 1), ("UB", 2), ("VT", 2),
                                                              ("men_7", 1)]
    el = elements.set_index("clip_id")
    for clip, (g, s99, s288) in CLIPS.items():
        row = el.loc[clip]
        assert row["element_id"] == g and row["gym530_label"] == g and row["gym288_label"] == GLABELS.index(g)
        assert [_nn(row[c]) for c in ("gym99_split", "gym288_split", "split")] == [s99, s288, s99]
        assert row["set_id"] == int(GYM530.split(f"Glabel: {g:3d}; set:")[1][:3])
        assert _nn(row["gym99_label"]) == (GYM99_IDS.index(g) if g in GYM99_IDS else None)
    assert pd.isna(el.loc["-AbCdEfGh_1_E_000200_000240_A_0020_0021", "gym99_label"])
    assert pd.isna(el.loc["q_w-e_r-t_y_E_000030_000080_A_0004_0006", "element_id"])
    vault = el.loc["Xy9_abc-DEF_E_001540_001547_A_0000_0006"]
    assert json.loads(vault["stages"]) == [[1540.3, 1543.25], [1543.25, 1544.6], [1544.6, 1546.72]]
    assert (vault["start_s"], vault["end_s"]) == (1540.3, 1546.72)
    parents = events.set_index("item_id")
    assert set(elements["parent_id"]) <= set(parents.index)
    assert (parents.loc[elements["parent_id"], "event"].to_numpy() == elements["event"].to_numpy()).all()
    assert el.loc["Xy9_abc-DEF_E_001203_001262_A_0004_0006", "set"] == "BB_leap_jump_hop"
    assert events.loc[events["event_id"] == 7, "clip_id"].tolist() == ["Xy9_abc-DEF_E_002010_002071"]


def _nn(v):
    return None if pd.isna(v) else v


def test_every_planted_error_is_reported_with_its_place(tmp_path):
    bad = json.loads(json.dumps(ANNOTATION))
    fx, ub = bad["-AbCdEfGh_1"]["E_000100_000150"], bad["-AbCdEfGh_1"]["E_000200_000240"]
    fx["segments"]["A_0049_0052"] = {"stages": 1, "timestamps": [[49.0, 52.0]]}        # past the event's 50.5 s
    ub["segments"]["A_0006_0007"] = {"stages": 1, "timestamps": [[6.5, 7.5]]}          # overlaps A_0005_0006
    bad["q_w-e_r-t_y"]["E_000010_000017"]["segments"]["A_0000_0007"]["stages"] = 2    # 3 stamps given
    bb = bad["Xy9_abc-DEF"]["E_001203_001262"]["segments"]
    bb["A_0011_0013"] = bb.pop("A_0011_0012")                                         # key off its stamps
    bad["Xy9_abc-DEF"]["E_002010_002071"]["event"] = 12                               # no such event
    ann, cats = write_fixture(tmp_path, bad)
    with open(cats / "gym99_train_element_v1.0.txt", "a") as fh:
        fh.write("Xy9_abc-DEF_E_001203_001262_A_0004_0006 42\n")                     # no Clabel 42 in gym99
        fh.write("Zz9_abc-DEF_E_000001_000002_A_0000_0001 0\n")                      # clip not in the JSON
        fh.write("q_w-e_r-t_y_E_000030_000080_A_0004_0006 0\n")                      # a vault in a bars event
        fh.write("not a split line\n")
    with open(cats / "gym530_categories.txt", "a") as fh:
        fh.write("Glabel: 7; set: 99; (VT) set 99 does not exist\n")
    with pytest.raises(fg.GymError) as info:
        fg.read_annotations(ann, cats, version="v1.0")
    got = [str(p) for p in info.value.problems]
    expected = [
        ("-AbCdEfGh_1/E_000100_000150/A_0049_0052", "outside its event"),
        ("-AbCdEfGh_1/E_000200_000240/A_0006_0007", "overlaps A_0005_0006"),
        ("q_w-e_r-t_y/E_000010_000017/A_0000_0007", "stages is 2 but 3 stage timestamps"),
        ("Xy9_abc-DEF/E_001203_001262/A_0011_0013", "key does not match stage timestamps (A_0011_0012)"),
        ("Xy9_abc-DEF/E_002010_002071", "event label 12 is not in the event categories"),
        ("gym99_train_element_v1.0.txt:5", "label 42 is not in gym99_categories.txt"),
        ("gym99_train_element_v1.0.txt:6", "Zz9_abc-DEF_E_000001_000002_A_0000_0001 is not in the annotation"),
        ("gym99_train_element_v1.0.txt:7", "element 1 (VT) lies in an event of UB"),
        ("gym99_train_element_v1.0.txt:8", "expected '<video>_E_XXXXXX_YYYYYY_A_ZZZZ_WWWW <label>'"),
        ("gym530_categories.txt:9", "set 99 is not in set_categories.txt"),
        # the renamed key leaves the split lines of the old clip id pointing nowhere
        ("gym99_val_element.txt:1", "Xy9_abc-DEF_E_001203_001262_A_0011_0012 is not in the annotation"),
        ("gym288_val_element.txt:1", "Xy9_abc-DEF_E_001203_001262_A_0011_0012 is not in the annotation"),
    ]
    for where, what in expected:
        assert any(where in p and what in p for p in got), (where, what, got)
    assert len(got) == len(expected), "\n".join(got)
    problems: list[fg.Problem] = []
    events, elements, _ = fg.read_annotations(ann, cats, version="v1.0", problems=problems)
    assert len(problems) == len(expected) and len(events) == 7 and len(elements) == 12


def test_cli_import_writes_manifests_and_refuses_broken_files(tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli
    from curate.core import manifest as mf
    from trainers.data import LabelSpace

    ann, cats = write_fixture(tmp_path)
    out = tmp_path / "out"
    res = CliRunner().invoke(cli, ["gym", "import", str(ann), str(cats), "-o", str(out), "--version", "v1.0"])
    assert res.exit_code == 0, res.output
    assert "7 events, 10 elements" in res.output and (out / "gym_stats.png").stat().st_size > 1000
    elements = mf.read(out / "elements.parquet")
    space = LabelSpace.from_manifest(elements, "element")
    assert space.ids == tuple(GLABELS) and space.parents["event"][GLABELS.index(500)] == 4
    assert LabelSpace.from_manifest(elements, "set").num_classes == 7
    bad = json.loads(json.dumps(ANNOTATION))
    bad["q_w-e_r-t_y"]["E_000030_000080"]["segments"]["A_0001_0003"]["timestamps"] = [[1.5, 3.2], [3.2, 3.9]]
    ann2, _ = write_fixture(tmp_path / "bad", bad)
    out2 = tmp_path / "out2"
    res = CliRunner().invoke(cli, ["gym", "import", str(ann2), str(cats), "-o", str(out2)])
    assert res.exit_code == 1 and "stages is 1 but 2 stage timestamps" in res.output and not out2.exists()
    res = CliRunner().invoke(cli, ["gym", "validate", str(ann2), str(cats)])
    assert res.exit_code == 1 and "1 problem(s)" in res.output


def test_import_export_import_gives_identical_tables(tmp_path):
    from curate.gym import build as gymbuild

    ann, cats_dir = write_fixture(tmp_path)
    events, elements, cats = fg.read_annotations(ann, cats_dir, version="v1.0")
    out = tmp_path / "export"
    paths = gymbuild.write_files(events, elements, cats, out)
    assert {p.name for p in paths} >= {"annotation.json", "gym530_categories.txt", "gym99_categories.txt",
                                       "gym99_train_element.txt", "gym288_val_element.txt", "set_categories.txt"}
    assert (out / "gym99_categories.txt").read_text() == "".join(ln.rstrip() + "\n" for ln in GYM99.splitlines())
    again_events, again_elements, again_cats = fg.read_annotations(out / "annotation.json", out)
    pd.testing.assert_frame_equal(again_events, events)
    pd.testing.assert_frame_equal(again_elements, elements)
    assert again_cats == cats
    assert json.loads((out / "annotation.json").read_text())["Xy9_abc-DEF"]["E_002010_002071"]["segments"] is None
    lists = gymbuild.mmaction_lists(elements, tmp_path / "lists")
    got = (tmp_path / "lists" / "gym99_val.txt").read_text().splitlines()
    assert sorted(got) == sorted(f"{c}.mp4 {GYM99_IDS.index(g)}" for c, (g, s, _) in CLIPS.items() if s == "val")
    assert {p.name for p in lists} == {"gym99_train.txt", "gym99_val.txt", "gym288_train.txt", "gym288_val.txt"}


def test_demo_world_builds_finegym_files_that_import_to_the_same_tables(tiny_world, tmp_path):
    from curate.gym import build as gymbuild

    tree = json.loads(tiny_world.hierarchy.read_text())
    truth_events = pd.read_parquet(tiny_world.truth_events)
    actions = pd.read_parquet(tiny_world.truth_actions)
    events, elements, cats, ignored = gymbuild.build(tree, truth_events, actions, source="synthetic", min_count=2)
    routine = actions[actions["kind"] == "routine"]
    assert len(events) == len(truth_events) and len(elements) == len(routine) and ignored == len(actions) - len(routine)
    assert list(events["clip_id"].str[-15:]) == list(truth_events.sort_values(["video_id", "start_s"])["event_key"])
    assert sorted(elements["element_id"]) == sorted(routine["label_id"])
    assert (elements.groupby("source_id")["split"].nunique() == 1).all()       # video-disjoint splits
    files = gymbuild.write_files(events, elements, cats, tmp_path / "finegym")
    again_events, again_elements, again_cats = fg.read_annotations(tmp_path / "finegym" / "annotation.json",
                                                                   tmp_path / "finegym", source="synthetic")
    pd.testing.assert_frame_equal(again_events, events)
    pd.testing.assert_frame_equal(again_elements, elements)
    assert again_cats == cats and len(files) >= 6
    late = routine.iloc[:1].assign(start_s=routine["start_s"].iloc[0] + 0.5)      # overlaps the first element
    broken = pd.concat([late, routine.iloc[:-1], routine.iloc[-1:].assign(end_s=999.0)])  # runs past its event
    with pytest.raises(fg.GymError) as info:
        gymbuild.build(tree, truth_events, broken)
    got = sorted(p.message.split(" (")[0] for p in info.value.problems)
    assert got[0] == "lies in no event of its video" and got[1].startswith("overlaps A_") and len(got) == 2, got


def test_trim_cuts_events_then_elements_within_one_frame_and_resumes(tiny_world, tmp_path):
    import numpy as np

    from curate import media
    from curate.gym import build as gymbuild
    from curate.gym import trim as gymtrim

    tree = json.loads(tiny_world.hierarchy.read_text())
    events, elements, _, _ = gymbuild.build(tree, pd.read_parquet(tiny_world.truth_events),
                                            pd.read_parquet(tiny_world.truth_actions), source="synthetic")
    videos = tiny_world.root / "web" / "v"
    find = gymtrim.source_finder(videos)
    events = events.copy()
    lost = events["source_id"].iloc[-1]
    root = tmp_path / "data"
    ev = gymtrim.trim_events(events, root, lambda row: (None, 0.0) if row["source_id"] == lost else find(row))
    assert (ev["status"] == "ok").sum() == (events["source_id"] != lost).sum()
    assert ev.loc[ev["source_id"] == lost, "error"].str.startswith("missing:").all()
    el = gymtrim.trim_elements(elements, ev, root)
    ok, fps = el[el["status"] == "ok"], float(el["fps"].dropna().iloc[0])
    assert len(ok) == (elements["source_id"] != lost).sum() > 0
    assert el.loc[el["status"] != "ok", "error"].str.contains("is not trimmed").all()
    assert np.all(np.abs(ok["duration_s"] - (ok["end_s"] - ok["start_s"])) <= 1 / fps + 1e-6)
    # the first frame of an element clip is the source frame at the element's start
    row = ok.iloc[0]
    clip0 = media.read_frames(root / row["path"], [0]).astype(float)
    start = int(round(row["start_s"] * fps))
    src = media.read_frames(videos / f"{row['source_id']}.mp4", list(range(start - 2, start + 3))).astype(float)
    assert int(np.argmin([np.abs(f - clip0[0]).mean() for f in src])) == 2
    # resume: nothing is re-cut; a deleted clip is cut again; direct cuts agree with two-stage ones
    stamp = {p: (root / p).stat().st_mtime_ns for p in ok["path"]}
    (root / ok["path"].iloc[1]).unlink()
    seen = []
    el2 = gymtrim.trim_elements(el, ev, root, on_item=lambda i, outcome: seen.append(outcome))
    assert seen.count("skipped") == len(ok) - 1 and (root / ok["path"].iloc[1]).is_file()
    assert all((root / p).stat().st_mtime_ns == t for p, t in stamp.items() if p != ok["path"].iloc[1])
    pd.testing.assert_frame_equal(el2[el2["status"] == "ok"].drop(columns="sha256"), ok.drop(columns="sha256"))
    direct = gymtrim.trim_elements(elements.iloc[:2], events, tmp_path / "direct", find)
    assert np.allclose(direct["duration_s"], el["duration_s"].iloc[:2], atol=1 / fps)


def test_cli_build_export_crawl_trim_on_the_demo_world(tiny_world, tmp_path):
    from click.testing import CliRunner

    from curate.cli import cli
    from curate.core import manifest as mf

    run = lambda *a: CliRunner().invoke(cli, ["gym", *map(str, a)])  # noqa: E731
    out = tmp_path / "gym"
    res = run("build", "--world", tiny_world.root, "-o", out)
    assert res.exit_code == 0, res.output
    assert (out / "finegym" / "annotation.json").is_file() and (out / "mmaction" / "gym4_train.txt").is_file()
    res = run("crawl", out, "-o", tmp_path / "sources.parquet", "--whole-videos")
    assert res.exit_code == 0 and "2 source videos, 2 new" in res.output, res.output
    sources = mf.read(tmp_path / "sources.parquet")
    assert set(sources["status"]) == {"planned"} and sources["url"].str.contains("watch?v=", regex=False).all()
    assert "0 new" in run("crawl", out, "-o", tmp_path / "sources.parquet", "--whole-videos").output
    res = run("export", out, "-o", tmp_path / "export", "--only-on-disk")
    assert res.exit_code == 0 and not list((tmp_path / "export" / "mmaction").iterdir()), res.output
    trim = ("trim", out, "--root", tmp_path / "data", "--videos", tiny_world.root / "web" / "v", "--level")
    res = run(*trim, "elements")                                  # no event clips yet: every element fails
    assert res.exit_code == 0 and "missing" in res.output, res.output
    failed = mf.read(out / "elements.parquet")
    assert set(failed["status"]) == {"failed"} and failed["error"].str.contains("is not trimmed (planned)", regex=False).all()
    assert run(*trim, "events").exit_code == 0 and set(mf.read(out / "events.parquet")["status"]) == {"ok"}
    assert run(*trim, "elements").exit_code == 0 and set(mf.read(out / "elements.parquet")["status"]) == {"ok"}
    assert mf.read_metadata(out / "elements.parquet")["data_root"] == str((tmp_path / "data").resolve())
    res = run("export", out, "-o", tmp_path / "export_ok", "--only-on-disk")
    assert len((tmp_path / "export_ok" / "mmaction" / "gym4_train.txt").read_text().splitlines()) == \
        len((out / "mmaction" / "gym4_train.txt").read_text().splitlines())
