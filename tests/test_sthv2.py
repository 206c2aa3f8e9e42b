"""Something-Something v2 as released: the bundled 174 labels, train / validation / test lists -> a manifest (class =
template without brackets), manifest round trip, bad entries named by file and key, and `curate import sthv2`."""
import json

import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.formats import sthv2 as S

TRAIN = [
    {"id": "78687", "label": "holding potato next to vicks vaporub bottle",
     "template": "Holding [something] next to [something]", "placeholders": ["potato", "vicks vaporub bottle"]},
    {"id": "36585", "label": "plastic falling like a feather or paper",
     "template": "[Something] falling like a feather or paper", "placeholders": ["plastic"]},
    {"id": "1001", "label": "putting 3 coins onto a plate", "template": "Putting [number of] [something] onto [something]",
     "placeholders": ["3", "coins", "a plate"]},
]
VALIDATION = [{"id": "74225", "label": "spinning cube that quickly stops spinning",
               "template": "Spinning [something] that quickly stops spinning", "placeholders": ["cube"]},
              {"id": "5", "label": "putting pen, cap and cup on the table",
               "template": "Putting [something], [something] and [something] on the table",
               "placeholders": ["pen", "cap", "cup"]}]
TEST = [{"id": "1420"}, {"id": "12"}]


@pytest.fixture
def annotations(tmp_path):
    d = tmp_path / "annotations"
    d.mkdir()
    for name, data in (("train", TRAIN), ("validation", VALIDATION), ("test", TEST)):
        (d / f"something-something-v2-{name}.json").write_text(json.dumps(data, indent=1))
    videos = tmp_path / "20bn-something-something-v2"
    videos.mkdir()
    for vid in ("78687", "74225", "1420"):
        (videos / f"{vid}.webm").write_bytes(b"x")
    return d, videos


def test_bundled_labels_are_the_174_classes():
    labels = S.read_labels()
    assert S.LABELS.is_file() and S.LABELS.parent.name == "data"
    assert len(labels) == 174 and sorted(labels.values()) == list(range(174))
    assert labels["Approaching something with your camera"] == 0
    assert labels["Wiping something off of something"] == 173
    assert list(labels) == sorted(labels)                 # ids follow the alphabetical order of the text


def test_lists_become_a_manifest(annotations):
    d, videos = annotations
    df = S.read_sthv2(d, videos)
    assert mf.validate(df) == []
    assert df["split"].tolist() == ["train"] * 3 + ["val"] * 2 + ["test"] * 2
    assert df["label"].tolist()[:5] == ["Holding something next to something", "Something falling like a feather or paper",
                                        "Putting number of something onto something",
                                        "Spinning something that quickly stops spinning",
                                        "Putting something, something and something on the table"]
    assert df["label_id"].tolist()[:5] == [19, 134, 102, 140, 120] and df["label_id"].iloc[5:].isna().all()
    assert df["path"].tolist()[0] == "78687.webm" and df["source_id"].iloc[0] == "sthv2/78687.webm"
    assert set(df["source"]) == {"local"} and df["item_id"].iloc[0] == mf.item_id("local", "sthv2/78687.webm")
    assert df["status"].tolist() == ["ok", "failed", "failed", "ok", "failed", "ok", "failed"]
    assert df["error"].iloc[1] == f"missing: 36585.webm not found under {videos}"
    assert df["caption"].iloc[0] == "holding potato next to vicks vaporub bottle"
    assert json.loads(df["placeholders"].iloc[4]) == ["pen", "cap", "cup"] and df["caption"].iloc[5:].isna().all()
    assert set(S.read_sthv2(d)["status"]) == {"planned"}


def test_manifest_round_trip(annotations, tmp_path):
    df = S.read_sthv2(*annotations)
    again = mf.read(mf.write(df, tmp_path / "sthv2.parquet"))
    pd.testing.assert_frame_equal(again, df, check_dtype=False)


def test_the_folder_labels_file_wins_over_the_bundled_copy(annotations):
    d, _ = annotations
    (d / "something-something-v2-labels.json").write_text(json.dumps({
        "Spinning something that quickly stops spinning": "1", "Holding something next to something": "0",
        "Something falling like a feather or paper": "2", "Putting number of something onto something": "3",
        "Putting something, something and something on the table": "4"}))
    assert S.read_sthv2(d)["label_id"].tolist()[:5] == [0, 2, 3, 1, 4]
    (d / "mine.json").write_text(json.dumps({"Holding something next to something": "0"}))
    with pytest.raises(S.SthV2Error, match=r"train\.json: \[1\]\.template: 'Something falling like a feather or "
                                           r"paper' is not a class of .*mine\.json"):
        S.read_sthv2(d, labels=d / "mine.json")


@pytest.mark.parametrize("split, entries, message", [
    ("train", [TRAIN[0], {**TRAIN[1], "template": "Falling [something]"}],
     r"train\.json: \[1\]\.template: 'Falling something' is not a class"),
    ("validation", [{**VALIDATION[0], "id": 74225}], r"validation\.json: \[0\]\.id: expected a digit string, got 74225"),
    ("validation", [VALIDATION[0], {"id": "9", "label": "x"}], r"validation\.json: \[1\]\.template: expected a string"),
    ("test", [{"id": "78687"}], r"test\.json: \[0\]\.id: video 78687 is also \[0\] of something-something-v2-train"),
    ("test", [["1420"]], r"test\.json: \[0\]: expected an object"),
    ("train", [{**TRAIN[0], "placeholders": "potato"}], r"train\.json: \[0\]\.placeholders: expected a list"),
    ("test", {"1420": {}}, r"test\.json: expected a list of videos"),
])
def test_bad_entries_name_file_and_key(annotations, split, entries, message):
    d, _ = annotations
    (d / f"something-something-v2-{split}.json").write_text(json.dumps(entries))
    with pytest.raises(S.SthV2Error, match=message):
        S.read_sthv2(d)


def test_bad_labels_and_json_are_named(annotations):
    d, _ = annotations
    (d / "labels.json").write_text(json.dumps({"Holding something next to something": 0}))
    with pytest.raises(S.SthV2Error, match=r'labels\.json: \["Holding something next to something"\]: expected an id'):
        S.read_sthv2(d)
    (d / "labels.json").write_text(json.dumps({"a": "0", "b": "2"}))
    with pytest.raises(S.SthV2Error, match=r"labels\.json: ids must run 0\.\.1"):
        S.read_sthv2(d)
    (d / "labels.json").unlink()
    (d / "something-something-v2-train.json").write_text('[{"id": "1",\n  "template" "x"}]')
    with pytest.raises(S.FileFormatError, match=r"train\.json:2:14: not valid JSON"):
        S.read_sthv2(d)


def test_import_command(annotations, tmp_path):
    d, videos = annotations
    out = tmp_path / "sthv2.parquet"
    r = CliRunner().invoke(cli, ["import", "sthv2", str(d), "--videos", str(videos), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert "7 rows (split test 2, train 3, val 2), 5 classes" in r.output and "4 video files missing" in r.output
    assert len(mf.read(out)) == 7 and mf.read_metadata(out)["data_root"] == str(videos)
    r = CliRunner().invoke(cli, ["import", "sthv2", str(tmp_path), "-o", str(out)])
    assert r.exit_code != 0 and "none of something-something-v2-train.json" in r.output
