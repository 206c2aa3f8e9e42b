"""ActivityNet v1.3 as released (`activity_net.v1-3.min.json`): reading, round trips, the video and segment
manifests, bad files named by key path, and a manifest from the released JSON through `curate features` into
`curate localize train-bmn` with the JSON's own video ids."""
import json

import numpy as np
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.formats import activitynet as A

TAXONOMY = [
    {"nodeId": 0, "nodeName": "Root", "parentId": None, "parentName": None},
    {"nodeId": 269, "nodeName": "Health-related self care", "parentId": 0, "parentName": "Root"},
    {"nodeId": 389, "nodeName": "Applying sunscreen", "parentId": 269, "parentName": "Health-related self care"},
    {"nodeId": 270, "nodeName": "Sports", "parentId": 0, "parentName": "Root"},
    {"nodeId": 391, "nodeName": "Arm wrestling", "parentId": 270, "parentName": "Sports"},
    {"nodeId": 392, "nodeName": "Zumba", "parentId": 270, "parentName": "Sports"},
]


def video(vid, subset, duration, anns, resolution="1280x720"):
    return {"duration": duration, "subset": subset, "resolution": resolution,
            "url": f"https://www.youtube.com/watch?v={vid}",
            "annotations": [{"segment": list(s), "label": label} for s, label in anns]}


DATABASE = {
    "aaaaaaaaaa1": video("aaaaaaaaaa1", "training", 119.12, [((4.2, 60.5), "Applying sunscreen"),
                                                             ((70.0, 90.25), "Applying sunscreen")]),
    "-bbbbbbbbb2": video("-bbbbbbbbb2", "validation", 80.0, [((1.0, 5.0), "Zumba"), ((6.0, 9.5), "Arm wrestling"),
                                                             ((6.0, 9.5), "Arm wrestling"), ((7.0, 7.0), "Zumba")]),
    "ccccccccc_3": video("ccccccccc_3", "testing", 33.5, [], "640x360"),
}


def write_official(path, database=None, taxonomy=None):
    doc = {"version": "VERSION 1.3", "taxonomy": TAXONOMY if taxonomy is None else taxonomy,
           "database": DATABASE if database is None else database}
    path.write_text(json.dumps(doc, separators=(",", ":")))   # minified, as released
    return path


def test_reads_the_released_file(tmp_path):
    rel = A.read_release(write_official(tmp_path / "activity_net.v1-3.min.json"))
    assert rel.version == "VERSION 1.3" and len(rel.taxonomy) == 6
    assert rel.taxonomy[2] == A.Node(389, "Applying sunscreen", 269, "Health-related self care")
    assert rel.classes() == ["Applying sunscreen", "Arm wrestling", "Zumba"]      # the leaves, sorted
    v = rel.database["aaaaaaaaaa1"]
    assert (v.duration, v.subset, v.resolution) == (119.12, "training", "1280x720")
    assert v.annotations[1] == A.Segment(70.0, 90.25, "Applying sunscreen")
    assert rel.database["ccccccccc_3"].annotations == []
    assert set(A.read_activitynet(tmp_path / "activity_net.v1-3.min.json")) == set(DATABASE)


def test_round_trip_keeps_the_official_layout(tmp_path):
    first = A.read_release(write_official(tmp_path / "in.json"))
    p1 = A.write_activitynet(tmp_path / "out.json", first)
    again = A.read_release(p1)
    assert again == first
    assert A.write_activitynet(tmp_path / "out2.json", again).read_bytes() == p1.read_bytes()
    doc = json.loads(p1.read_text())
    assert doc["version"] == "VERSION 1.3" and doc["taxonomy"] == TAXONOMY
    assert doc["database"]["-bbbbbbbbb2"] == DATABASE["-bbbbbbbbb2"]
    # a bare database (the demo world's) is written with a flat taxonomy whose leaves are its labels
    flat = json.loads(A.write_activitynet(tmp_path / "flat.json", first.database).read_text())
    assert [n["nodeName"] for n in flat["taxonomy"] if n["parentId"] == 0] == first.classes()
    assert A.read_release(tmp_path / "flat.json").classes() == first.classes()


def test_reads_the_mmaction_conversion_too(tmp_path):
    (tmp_path / "anet_anno_val.json").write_text(json.dumps({"v_x": {
        "duration_second": 12.5, "duration_frame": 300, "feature_frame": 288, "subset": "validation",
        "annotations": [{"segment": [1, 2], "label": "Zumba"}]}}))
    db = A.read_activitynet(tmp_path / "anet_anno_val.json")
    assert db["v_x"].duration == 12.5 and db["v_x"].annotations == [A.Segment(1.0, 2.0, "Zumba")]


def test_video_and_segment_manifests(tmp_path):
    rel = A.read_release(write_official(tmp_path / "a.json"))
    videos_dir = tmp_path / "videos"
    videos_dir.mkdir()
    (videos_dir / "v_aaaaaaaaaa1.mp4").write_bytes(b"x")     # the v_ form of the crawler
    (videos_dir / "-bbbbbbbbb2.mkv").write_bytes(b"x")
    videos, segments = A.to_manifests(rel, videos_dir)
    assert mf.validate(videos) == [] and mf.validate(segments) == []
    v = videos.set_index("source_id")
    assert v.loc["aaaaaaaaaa1", "item_id"] == mf.item_id("youtube", "aaaaaaaaaa1") == A.video_item_id("aaaaaaaaaa1")
    assert v["split"].to_dict() == {"aaaaaaaaaa1": "train", "-bbbbbbbbb2": "val", "ccccccccc_3": "test"}
    assert v["path"].tolist()[:2] == ["v_aaaaaaaaaa1.mp4", "-bbbbbbbbb2.mkv"]
    assert v["status"].tolist() == ["ok", "ok", "failed"] and v.loc["ccccccccc_3", "error"].startswith("missing:")
    assert v["duration_s"].tolist() == [119.12, 80.0, 33.5] and set(v["source"]) == {"youtube"}
    assert v.loc["aaaaaaaaaa1", "label"] == "Applying sunscreen" and v.loc["aaaaaaaaaa1", "label_id"] == 0
    assert v[["label", "label_id"]].iloc[1:].isna().all().all()       # two labels / none: no video label
    assert v.loc["ccccccccc_3", "resolution"] == "640x360"
    # the repeated span and the empty one are left out
    assert len(segments) == 4
    s = segments.set_index(["source_id", "start_s"])
    assert s.loc[("-bbbbbbbbb2", 6.0), "end_s"] == 9.5 and s.loc[("-bbbbbbbbb2", 6.0), "label_id"] == 1
    assert s.loc[("-bbbbbbbbb2", 1.0), "label_id"] == 2
    assert set(segments["parent_id"]) == set(v["item_id"].iloc[:2]) and set(segments["status"]) == {"planned"}
    assert segments["item_id"].iloc[0] == mf.item_id("youtube", "aaaaaaaaaa1", 4.2, 60.5)
    assert set(A.to_manifests(rel)[0]["status"]) == {"planned"}


def test_by_video_finds_features_under_the_item_id():
    db = {"aaaaaaaaaa1": None, "x": None, "missing": None}
    table = {A.video_item_id("aaaaaaaaaa1"): 1, "x": 2}
    assert A.by_video(db, table) == {"aaaaaaaaaa1": 1, "x": 2}


def broken(doc_change):
    db = json.loads(json.dumps(DATABASE))
    tax = json.loads(json.dumps(TAXONOMY))
    doc_change(db, tax)
    return db, tax


@pytest.mark.parametrize("change, message", [
    (lambda db, tax: db["aaaaaaaaaa1"]["annotations"][1].update(segment=[70.0, "end"]),
     r'database\["aaaaaaaaaa1"\]\.annotations\[1\]\.segment: expected a number'),
    (lambda db, tax: db["-bbbbbbbbb2"].update(subset="train"), r'database\["-bbbbbbbbb2"\]\.subset: \'train\''),
    (lambda db, tax: db["ccccccccc_3"].pop("duration"), r'database\["ccccccccc_3"\]\.duration: missing'),
    (lambda db, tax: db["aaaaaaaaaa1"]["annotations"][0].update(label="Sunscreen"),
     r'database\["aaaaaaaaaa1"\]\.annotations\[0\]\.label: \'Sunscreen\' is not a leaf'),
    (lambda db, tax: db["aaaaaaaaaa1"]["annotations"][0].update(segment=[9, 3]),
     r'database\["aaaaaaaaaa1"\]\.annotations\[0\]\.segment: \[9, 3\] is not 0 <= start <= end'),
    (lambda db, tax: tax[3].update(nodeId="270"), r"taxonomy\[3\]\.nodeId"),
])
def test_bad_files_name_the_file_and_key(tmp_path, change, message):
    db, tax = broken(change)
    path = write_official(tmp_path / "bad.json", db, tax)
    with pytest.raises(A.AnnotationError, match=rf"bad\.json: {message}"):
        A.read_release(path)


def test_bad_json_names_line_and_column(tmp_path):
    (tmp_path / "bad.json").write_text('{"version": "VERSION 1.3",\n "database": {"x": {"duration": 1,}}}')
    with pytest.raises(A.FileFormatError, match=r"bad\.json:2:35: not valid JSON"):
        A.read_release(tmp_path / "bad.json")
    (tmp_path / "nodb.json").write_text('{"version": "VERSION 1.3", "taxonomy": []}')
    with pytest.raises(A.AnnotationError, match=r"nodb\.json: database: missing"):
        A.read_release(tmp_path / "nodb.json")


def test_import_command_writes_both_manifests(tmp_path):
    path = write_official(tmp_path / "activity_net.v1-3.min.json")
    (tmp_path / "videos").mkdir()
    (tmp_path / "videos" / "aaaaaaaaaa1.mp4").write_bytes(b"x")
    r = CliRunner().invoke(cli, ["import", "activitynet", str(path), "--videos", str(tmp_path / "videos"),
                                 "-o", str(tmp_path / "out")])
    assert r.exit_code == 0, r.output
    videos, segments = mf.read(tmp_path / "out" / "videos.parquet"), mf.read(tmp_path / "out" / "segments.parquet")
    assert len(videos) == 3 and len(segments) == 4
    assert mf.read_metadata(tmp_path / "out" / "videos.parquet")["data_root"] == str(tmp_path / "videos")
    assert "split test 1, train 1, val 1" in r.output and "2 video files missing" in r.output
    assert "3 classes in the taxonomy; 6 annotations, 2 empty or repeated ones left out" in r.output
    write_official(path, broken(lambda db, tax: db["aaaaaaaaaa1"].update(subset=None))[0])
    r = CliRunner().invoke(cli, ["import", "activitynet", str(path), "-o", str(tmp_path / "out2")])
    assert r.exit_code != 0 and 'database["aaaaaaaaaa1"].subset' in r.output and "Traceback" not in r.output


@pytest.mark.slow
def test_released_json_feeds_features_and_train_bmn(tmp_path):
    """Videos named by their YouTube ids -> import -> probe -> a tiny recognizer's features (keyed by item_id) ->
    train-bmn on the released JSON, which finds them under its own ids."""
    from curate import media
    from curate.clean.features import read_index
    from trainers.inputs import data_overrides
    from trainers.sources import Source
    from trainers.train import make_config, train

    rng = np.random.default_rng(0)
    ids = {"aaaaaaaaaa1": ("training", "Applying sunscreen"), "aaaaaaaaaa2": ("training", "Zumba"),
           "-bbbbbbbbb2": ("validation", "Zumba")}
    (tmp_path / "videos").mkdir()
    db = {}
    for k, (vid, (subset, label)) in enumerate(ids.items()):
        frames = rng.integers(0, 255, (40, 32, 32, 3), dtype=np.uint8)
        frames[10:30] = 60 * (k + 1)                                # the action: a flat colour from 1.25 s to 3.75 s
        media.write_video(tmp_path / "videos" / f"v_{vid}.mp4", frames, fps=8.0)
        db[vid] = video(vid, subset, 5.0, [((1.25, 3.75), label)])
    ann = write_official(tmp_path / "activity_net.v1-3.min.json", db)
    run = CliRunner().invoke
    r = run(cli, ["import", "activitynet", str(ann), "--videos", str(tmp_path / "videos"), "-o", str(tmp_path / "m")])
    assert r.exit_code == 0, r.output
    manifest = tmp_path / "m" / "videos.parquet"
    assert run(cli, ["probe", str(manifest)]).exit_code == 0
    cfg = make_config("tsn_r50", tiny=True, overrides={"schedule": dict(epochs=1, batch_size=2, log_every=1)})
    cfg["data"] = data_overrides(cfg["model"], size=32, scale=32, flip=0.0, clip_len=1, num_clips=4)
    ckpt = train(cfg, [Source("anet", manifest, split="train", root=tmp_path / "videos")], tmp_path / "rec",
                 progress=False).last
    r = run(cli, ["features", str(ckpt), str(manifest), "-o", str(tmp_path / "f"), "--length", "16", "--stride-s",
                  "0.5"])
    assert r.exit_code == 0, r.output
    assert set(read_index(tmp_path / "f")["item_id"]) == set(mf.read(manifest)["item_id"])    # not the JSON's ids
    r = run(cli, ["localize", "train-bmn", str(tmp_path / "f"), str(ann), "-o", str(tmp_path / "bmn"), "--tiny",
                  "--set", "schedule.epochs=1", "--set", "model.num_samples=4"])
    assert r.exit_code == 0, r.output
    proposals = json.loads((tmp_path / "bmn" / "eval" / "proposals.json").read_text())["results"]
    assert list(proposals) == ["-bbbbbbbbb2"] and proposals["-bbbbbbbbb2"]
    metrics = json.loads((tmp_path / "bmn" / "eval" / "metrics.json").read_text())
    assert metrics["videos"] == 1
