"""AVA v2.2 as released: the header-less CSVs, both pbtxt action lists, the proposals pickle (numpy arrays load,
anything else is refused before it runs), bad lines named by file and line, and a folder with the official file
names going through `curate import ava`, `curate probe` and the detector's keyframes (`curate localize train-ava`)."""
import os
import pickle

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.formats import ava
from curate.formats.numpy_pickle import PickleFileError, UnsafePickleError, load_numpy_pickle

TRAIN_ROWS = ("-5KQ66BBWC4,0002,0.077,0.151,0.283,0.811,80,1\n"
              "-5KQ66BBWC4,0002,0.077,0.151,0.283,0.811,11,1\n"
              "-5KQ66BBWC4,0003,0.082,0.149,0.290,0.805,80,1\n"
              "-5KQ66BBWC4,0003,0.500,0.200,0.950,1.000,12,2\n"
              "-5KQ66BBWC4,0004,0.031,0.162,0.670,0.995,17,0\n")
VAL_ROWS = ("0f39OWEqJ24,0002,0.031,0.162,0.670,0.995,12,0\n"
            "0f39OWEqJ24,0003,0.034,0.189,0.669,0.980,79,0\n")
ACTION_LIST = "".join(f'label {{\n  name: "{name}"\n  label_id: {i}\n  label_type: {kind}\n}}\n' for i, name, kind in (
    (1, "bend/bow (at the waist)", "PERSON_MOVEMENT"), (11, "sit", "PERSON_MOVEMENT"),
    (12, "stand", "PERSON_MOVEMENT"), (17, "carry/hold (an object)", "OBJECT_MANIPULATION"),
    (79, "talk to (e.g., self, a person, a group)", "PERSON_INTERACTION"),
    (80, "watch (a person)", "PERSON_INTERACTION")))
EVALUATED = "".join(f'item {{\n  name: "{name}"\n  id: {i}\n}}\n' for i, name in (
    (1, "bend/bow (at the waist)"), (11, "sit"), (12, "stand"), (80, "watch (a person)")))


def proposals(boxes_per_key):
    """{'video,NNNN': float64 [N, 5]} as the released pickle holds them."""
    return {k: np.asarray(v, dtype=np.float64) for k, v in boxes_per_key.items()}


@pytest.fixture
def release(tmp_path):
    d = tmp_path / "ava"
    d.mkdir()
    (d / "ava_train_v2.2.csv").write_text(TRAIN_ROWS)
    (d / "ava_val_v2.2.csv").write_text(VAL_ROWS)
    (d / "ava_train_excluded_timestamps_v2.2.csv").write_text("-5KQ66BBWC4,0004\n")
    (d / "ava_val_excluded_timestamps_v2.2.csv").write_text("")
    (d / "ava_action_list_v2.2.pbtxt").write_text(ACTION_LIST)
    (d / "ava_action_list_v2.2_for_activitynet_2019.pbtxt").write_text(EVALUATED)
    train = {f"-5KQ66BBWC4,{t:04d}": [[0.07, 0.15, 0.28, 0.81, 0.99], [0.5, 0.2, 0.95, 1.0, 0.93]] for t in (2, 3, 4)}
    val = {"0f39OWEqJ24,0002": [[0.03, 0.16, 0.67, 0.99, 0.98]], "0f39OWEqJ24,0003": [[0.03, 0.19, 0.67, 0.98, 0.97]]}
    for split, props in (("train", train), ("val", val)):
        with open(d / f"ava_dense_proposals_{split}.FAIR.recall_93.9.pkl", "wb") as fh:
            pickle.dump(proposals(props), fh, protocol=4)
    return d


def test_official_csv_rows_read_and_write_back_identically(release, tmp_path):
    df = ava.read_csv(release / "ava_train_v2.2.csv")
    assert df["video_id"].iloc[0] == "-5KQ66BBWC4" and df["timestamp"].tolist() == [2.0, 2.0, 3.0, 3.0, 4.0]
    assert df["action_id"].tolist() == [80, 11, 80, 12, 17] and df["person_id"].tolist() == [1, 1, 1, 2, 0]
    assert df["x1"].iloc[0] == 0.077 and str(df["action_id"].dtype) == "int64"
    for name, kind in (("ava_train_v2.2.csv", "annotations"), ("ava_train_excluded_timestamps_v2.2.csv", "exclusions")):
        back = ava.write_csv(ava.read_csv(release / name, kind), tmp_path / name, kind)
        assert back.read_bytes() == (release / name).read_bytes()       # 4-digit timestamps, 3-decimal boxes
    assert ava.read_csv(release / "ava_val_excluded_timestamps_v2.2.csv", "exclusions").empty


@pytest.mark.parametrize("text, message", [
    ("-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1\n\n-5KQ66BBWC4,0903,0.077,0.151,0.283,0.811,80\n",
     r"bad\.csv:3: 7 columns, an AVA annotations row has 8"),
    ("-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1\n-5KQ66BBWC4,0902,0.0x7,0.151,0.283,0.811,80,1\n",
     r"bad\.csv:2: x1 '0\.0x7' is not a number"),
    ("-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,8.5,1\n", r"bad\.csv:1: action_id '8\.5' is not an integer"),
    ("-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,\n", r"bad\.csv:1: person_id '' is not an integer"),
    ("-5KQ66BBWC4,0902,0.077,0.151,1.283,0.811,80,1\n", r"bad\.csv:1: box is not normalised"),
    ("\n\n-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1\n,0903,0.077,0.151,0.283,0.811,80,1\n",
     r"bad\.csv:4: video_id '' is empty"),
    ("-5KQ66BBWC4,0902,0.077,0.151,0.283,0.811,80,1\n-5KQ66BBWC4,0903,0.077,0.151,0.283,0.811,80,1,9\n",
     r"bad\.csv:2: 9 columns"),
])
def test_bad_csv_lines_are_named(tmp_path, text, message):
    (tmp_path / "bad.csv").write_text(text)
    with pytest.raises(ava.AVAFormatError, match=message):
        ava.read_csv(tmp_path / "bad.csv")


def test_both_action_lists_read_and_write_back(release, tmp_path):
    full = ava.read_label_map(release / "ava_action_list_v2.2.pbtxt")
    assert full[3] == ava.ActionClass(17, "carry/hold (an object)", "OBJECT_MANIPULATION") and len(full) == 6
    evaluated = ava.read_label_map(release / "ava_action_list_v2.2_for_activitynet_2019.pbtxt")
    assert [c.id for c in evaluated] == [1, 11, 12, 80] and evaluated[0].label_type is None
    assert ava.read_action_list(release / "ava_action_list_v2.2.pbtxt")[79].startswith("talk to (e.g.,")
    assert ava.write_label_map(full, tmp_path / "a.pbtxt").read_text() == ACTION_LIST
    assert ava.write_label_map(evaluated, tmp_path / "b.pbtxt", block="item").read_text() == EVALUATED
    (tmp_path / "one_line.pbtxt").write_text('label{ name: "x" label_id: 3 label_type: PERSON_MOVEMENT }  # ok\n')
    assert ava.read_label_map(tmp_path / "one_line.pbtxt") == [ava.ActionClass(3, "x", "PERSON_MOVEMENT")]


@pytest.mark.parametrize("text, message", [
    ('label {\n  name: "a"\n  label_id: 1\n}\nlabel {\n  name: "b"\n  labelid: 2\n}\n', r"bad\.pbtxt:7: unknown field 'labelid'"),
    ('label {\n  name: "a"\n  label_id: 1\n  label_type: PERSON_DANCING\n}\n', r"bad\.pbtxt:1: label_type PERSON_DANCING"),
    ('item {\n  name: "a"\n}\n', r"bad\.pbtxt:1: a item block needs a name and one label_id"),
    ('item {\n  name: "a"\n  id: 1\n', r"bad\.pbtxt:3: expected }, got 'end of file'"),
    ('item {\n  name: "a"\n  id: 1\n}\nlabel', r"bad\.pbtxt:5: expected {, got 'end of file'"),
    ('item {\n  name: a\n  id: 1\n}\n', r"bad\.pbtxt:2: expected a quoted string, got 'a'"),
    ('item {\n  name: "a"\n  id: 1\n}\nitem {\n  name: "b"\n  id: 1\n}\n', r"bad\.pbtxt:5: id 1 is below 1 or listed twice"),
])
def test_bad_action_lists_are_named(tmp_path, text, message):
    (tmp_path / "bad.pbtxt").write_text(text)
    with pytest.raises(ava.AVAFormatError, match=message):
        ava.read_label_map(tmp_path / "bad.pbtxt")


@pytest.mark.parametrize("protocol", [2, 4, 5])
def test_the_proposals_pickle_loads_numpy_arrays(tmp_path, protocol):
    data = {"-5KQ66BBWC4,0902": np.array([[0.1, 0.2, 0.3, 0.4, 0.95], [0.5, 0.5, 0.9, 0.9, 0.5]]),
            "-5KQ66BBWC4,0903": np.array([[0.1, 0.2, 0.3, 0.4]], dtype=np.float32),     # no score column: 1
            "0f39OWEqJ24,1798": np.zeros((0, 5))}
    with open(tmp_path / "p.pkl", "wb") as fh:
        pickle.dump(data, fh, protocol=protocol)
    df = ava.read_proposals(tmp_path / "p.pkl")
    assert list(df.columns) == ava.PROPOSAL_COLUMNS and len(df) == 3
    assert df["timestamp"].tolist() == [902.0, 902.0, 903.0] and df["score"].tolist() == pytest.approx([0.95, 0.5, 1])
    assert df["x2"].iloc[1] == 0.9 and set(df["video_id"]) == {"-5KQ66BBWC4"}
    with open(tmp_path / "mixed.pkl", "wb") as fh:
        pickle.dump({"a": [1, 2.5, "x", (None, True)], "n": np.float64(3), "m": {"k": b"\x00"}}, fh, protocol=protocol)
    assert load_numpy_pickle(tmp_path / "mixed.pkl") == {"a": [1, 2.5, "x", (None, True)], "n": 3.0,
                                                         "m": {"k": b"\x00"}}


class RunsACommand:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


def test_a_pickle_naming_anything_else_is_refused_before_it_runs(tmp_path):
    marker = tmp_path / "ran"
    with open(tmp_path / "reduce.pkl", "wb") as fh:   # os.system pickles as posix.system on Linux
        pickle.dump({"-5KQ66BBWC4,0902": RunsACommand(marker)}, fh)
    with pytest.raises(UnsafePickleError, match=r"reduce\.pkl: refused to load the global (posix|os|nt)\.system"):
        ava.read_proposals(tmp_path / "reduce.pkl")
    # protocol 0 opcodes by hand: GLOBAL os.system, MARK, STRING, TUPLE, REDUCE, STOP
    (tmp_path / "opcodes.pkl").write_bytes(f"cos\nsystem\n(S'touch {marker}'\ntR.".encode())
    with pytest.raises(UnsafePickleError, match=r"opcodes\.pkl: refused to load the global os\.system"):
        ava.read_proposals(tmp_path / "opcodes.pkl")
    # a numpy name that is not an array's constructor is refused too (numpy.load would unpickle again)
    (tmp_path / "npload.pkl").write_bytes(b"cnumpy\nload\n(S'x.npy'\ntR.")
    with pytest.raises(UnsafePickleError, match=r"numpy\.load"):
        load_numpy_pickle(tmp_path / "npload.pkl")
    (tmp_path / "persistent.pkl").write_bytes(b"Pkey\n.")
    with pytest.raises(UnsafePickleError, match="persistent id"):
        load_numpy_pickle(tmp_path / "persistent.pkl")
    assert not marker.exists()
    (tmp_path / "cut.pkl").write_bytes(pickle.dumps({"a": np.zeros((2, 5))})[:-9])
    with pytest.raises(PickleFileError, match=r"cut\.pkl: not a readable pickle"):
        load_numpy_pickle(tmp_path / "cut.pkl")


@pytest.mark.parametrize("data, message", [
    ([np.zeros((1, 5))], "expected a dict"),
    ({"-5KQ66BBWC4 0902": np.zeros((1, 5))}, r"key '-5KQ66BBWC4 0902': expected 'video_id,NNNN'"),
    ({"-5KQ66BBWC4,0902": np.zeros((2, 3))}, r"key '-5KQ66BBWC4,0902': .* got shape \(2, 3\)"),
    ({"-5KQ66BBWC4,0902": np.array([[0.5, 0.1, 0.2, 0.9, 1.0]])}, r"key '-5KQ66BBWC4,0902': a box is not normalised"),
])
def test_bad_pickle_contents_name_the_key(tmp_path, data, message):
    with open(tmp_path / "p.pkl", "wb") as fh:
        pickle.dump(data, fh)
    with pytest.raises(ava.AVAFormatError, match=rf"p\.pkl: {message}"):
        ava.read_proposals(tmp_path / "p.pkl")


def write_movies(folder):
    from curate import media

    folder.mkdir()
    rng = np.random.default_rng(0)
    for vid in ("-5KQ66BBWC4", "0f39OWEqJ24"):
        media.write_video(folder / f"{vid}.mp4", rng.integers(0, 255, (48, 32, 32, 3), dtype=np.uint8), fps=8.0)
    return folder


def test_official_folder_import_probe_and_keyframes(release, tmp_path):
    from trainers.detection import KeyframeData, resolve_data

    movies = write_movies(tmp_path / "movies")
    run = CliRunner().invoke
    r = run(cli, ["import", "ava", str(release), "--videos", str(movies)])
    assert r.exit_code == 0, r.output
    assert "train: 5 rows, 3 keyframes, 4 boxes, 1 excluded, 3 proposal keyframes" in r.output
    assert "action list: 6 classes, 4 evaluated" in r.output
    videos = mf.read(release / "videos.parquet")
    assert videos[["source_id", "split", "path", "status"]].values.tolist() == [
        ["-5KQ66BBWC4", "train", "-5KQ66BBWC4.mp4", "ok"], ["0f39OWEqJ24", "val", "0f39OWEqJ24.mp4", "ok"]]
    files = ava.find_files(release)
    assert files["train_proposals"].name == "ava_dense_proposals_train.FAIR.recall_93.9.pkl"
    assert files["action_list"].name == "ava_action_list_v2.2.pbtxt"
    with pytest.raises(ava.AVAFormatError, match="run `curate probe"):
        ava.read_videos(files["videos"])
    assert run(cli, ["probe", str(release / "videos.parquet")]).exit_code == 0
    data = KeyframeData(files, "train", 80, resolve_data({"data": {"size": 32}}), movies)
    assert [kf.timestamp for kf in data.keyframes] == [2.0, 3.0]                  # 0004 is excluded
    assert data.keyframes[0].proposals.shape == (2, 4) and data.keyframes[1].gt_labels.shape == (2, 80)
    assert data.keyframes[0].gt_labels[0, [10, 79]].tolist() == [1, 1]            # sit and watch, one box
    (release / "ava_val_v2.2.csv").write_text(VAL_ROWS + "0f39OWEqJ24,0004,0.1,0.1,0.2,0.2,81,0\n")
    r = run(cli, ["import", "ava", str(release)])
    assert r.exit_code != 0 and "ava_val_v2.2.csv: action_id 81 is not in ava_action_list_v2.2.pbtxt" in r.output


def test_missing_files_are_listed(tmp_path):
    (tmp_path / "ava_train_v2.2.csv").write_text(TRAIN_ROWS)
    with pytest.raises(FileNotFoundError, match=r"no val \(ava_val_v2\.2\.csv or ava_val_v2\.1\.csv or val\.csv\)"):
        ava.find_files(tmp_path)
    r = CliRunner().invoke(cli, ["localize", "train-ava", str(tmp_path), "--data-root", str(tmp_path), "-o",
                                 str(tmp_path / "run")])
    assert r.exit_code != 0 and "no train_proposals" in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_train_ava_on_the_official_folder(release, tmp_path):
    movies = write_movies(tmp_path / "movies")
    run = CliRunner().invoke
    assert run(cli, ["import", "ava", str(release), "--videos", str(movies)]).exit_code == 0
    assert run(cli, ["probe", str(release / "videos.parquet")]).exit_code == 0
    r = run(cli, ["localize", "train-ava", str(release), "--data-root", str(movies), "-o", str(tmp_path / "run"),
                  "--tiny", "--set", "schedule.epochs=1", "--set", "data.size=32"])
    assert r.exit_code == 0, r.output
    pred = ava.read_csv(tmp_path / "run" / "predictions.csv", "predictions")
    assert set(pred["video_id"]) == {"0f39OWEqJ24"} and set(pred["timestamp"]) == {2.0, 3.0}
    assert pred["action_id"].max() == 80 and len(pd.unique(pred["action_id"])) == 80
    assert (tmp_path / "run" / "predictions.csv").read_text().startswith("0f39OWEqJ24,0002,")
