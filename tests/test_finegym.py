"""FineGym formats: hand-written files in the official layout -> manifests, every planted error reported,
build/import round trips, MMAction2 lists, and real trimming of the demo world's routine videos."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pandas as pd
import pytest

from curate import finegym as fg

REAL = Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "finegym"

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
    assert splits["gym99", "train"].name == "gym99_train_element_v1.1.txt"
    assert fg.find_split_files(REAL, "v1.0")["gym99", "train"].name == "gym99_train_element_v1.0.txt"
    rows = fg.read_split(splits["gym99", "val"], problems)
    assert problems == [] and len(rows) == 8521 and max(r[2] for r in rows) == 98


def test_fixture_imports_to_exact_counts_and_labels(tmp_path):
    ann, cats = write_fixture(tmp_path)
    events, elements = fg.read_annotations(ann, cats, version="v1.0")
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
    events, elements = fg.read_annotations(ann, cats, version="v1.0", problems=problems)
    assert len(problems) == len(expected) and len(events) == 7 and len(elements) == 12


def test_cli_import_writes_manifests_and_refuses_broken_files(tmp_path):
    from click.testing import CliRunner

    from curate import manifest as mf
    from curate.cli import cli
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
