"""Manifests: schema, atomic writes, merge by item_id, validation that names the column and row, `curate info`."""
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf


def rows(n, **kw):
    out = []
    for i in range(n):
        r = {"item_id": mf.item_id("web_image", f"http://x/{i}.jpg"), "source": "web_image", "source_id": f"{i}",
             "url": f"http://x/{i}.jpg", "label": f"c{i % 3}", "label_id": i % 3, "split": "web", "media": "image",
             "status": "ok", "path": f"web_image/{i:02d}/{i}.jpg", "bytes": 100 + i}
        r.update(kw)
        out.append(r)
    return out


def test_round_trip_keeps_types_nulls_and_lists(tmp_path):
    df = mf.from_records(rows(3) + [{"item_id": "abcd", "status": "failed", "error": "http_404: gone",
                                     "teacher_top5": [4, 1, 0]}])
    path = mf.write(df, tmp_path / "m.parquet")
    back = mf.read(path)
    assert list(back.columns[: len(mf.COLUMNS)]) == list(mf.COLUMNS)
    assert back["label_id"].tolist()[:3] == [0, 1, 2] and pd.isna(back["label_id"].iloc[3])
    assert back["teacher_top5"].iloc[3] == [4, 1, 0]
    assert pq.read_schema(path).field("label_id").type == pa.int32()
    assert pq.read_schema(path).field("fetched_at").type == pa.timestamp("us", tz="UTC")


def test_extra_columns_survive(tmp_path):
    df = mf.from_records([dict(r, clip_id=f"v{i}") for i, r in enumerate(rows(2))])
    back = mf.read(mf.write(df, tmp_path / "m.parquet"))
    assert back["clip_id"].tolist() == ["v0", "v1"]


def test_item_id_is_stable_and_span_sensitive():
    a = mf.item_id("kinetics", "abc", 1.0, 11.0)
    assert a == mf.item_id("kinetics", "abc", 1.0004, 11.0) and len(a) == 16
    assert len({a, mf.item_id("kinetics", "abc"), mf.item_id("kinetics", "abc", 2.0, 11.0),
                mf.item_id("youtube", "abc", 1.0, 11.0)}) == 4


@pytest.mark.parametrize("bad", ["../x", "a/../../b", "/etc/passwd"])
def test_media_relpath_never_escapes(bad):
    with pytest.raises(ValueError):
        mf.media_relpath(bad, "ab12", "mp4")
    assert mf.media_relpath("web_image", "ab12cd", "JPG") == "web_image/ab/ab12cd.jpg"
    with pytest.raises(ValueError):
        mf.media_relpath("web_image", "../../x", "jpg")
    with pytest.raises(ValueError):
        mf.media_relpath("web_image", "ab12", "mp4/../../x")


def test_validation_names_column_and_row():
    df = mf.from_records(rows(4))
    df.loc[1, "status"] = "done"
    df.loc[2, "status"] = "failed"
    df.loc[3, "item_id"] = df.loc[0, "item_id"]
    df.loc[0, "path"] = "../outside.jpg"
    msgs = [str(p) for p in mf.validate(df)]
    assert "column 'status' row 1: 'done' is not one of ['planned', 'ok', 'failed', 'rejected']" in msgs
    assert "column 'error' row 2: status is failed but error is empty" in msgs
    assert any(m.startswith("column 'item_id' row 3: duplicate") for m in msgs)
    assert any(m.startswith("column 'path' row 0:") for m in msgs)
    with pytest.raises(mf.ManifestError, match="4 manifest problem"):
        mf.check(df)


def test_from_records_reports_the_bad_row():
    recs = rows(3)
    recs[2]["label_id"] = "seven"
    with pytest.raises(mf.ManifestError, match="column 'label_id' row 2"):
        mf.from_records(recs)


def test_reading_a_file_with_a_wrong_schema_names_the_column(tmp_path):
    table = mf.to_table(mf.from_records(rows(2)))
    i = table.schema.get_field_index("label_id")
    table = table.set_column(i, "label_id", pa.array(["a", "b"]))
    pq.write_table(table, tmp_path / "bad.parquet")
    with pytest.raises(mf.ManifestError, match="column 'label_id': has type string, expected int32"):
        mf.read(tmp_path / "bad.parquet")
    (tmp_path / "junk.parquet").write_bytes(b"<html>not parquet</html>")
    with pytest.raises(mf.ManifestError, match="not a readable Parquet file"):
        mf.read(tmp_path / "junk.parquet")


def test_older_files_missing_columns_get_nulls(tmp_path):
    table = pa.table({"item_id": ["a1"], "status": ["planned"]})
    pq.write_table(table, tmp_path / "old.parquet")
    df = mf.read(tmp_path / "old.parquet")
    assert set(mf.COLUMNS) <= set(df.columns) and pd.isna(df["label"].iloc[0])


def test_write_is_atomic_when_it_fails_midway(tmp_path, monkeypatch):
    path = tmp_path / "m.parquet"
    mf.write(mf.from_records(rows(2)), path)
    before = path.read_bytes()

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(pq, "write_table", boom)
    with pytest.raises(OSError):
        mf.write(mf.from_records(rows(5)), path)
    assert path.read_bytes() == before
    assert os.listdir(tmp_path) == ["m.parquet"]  # no temp files left behind


def test_atomic_path_keeps_the_old_file_until_the_new_one_is_whole(tmp_path):
    import hashlib

    from curate.core.files import atomic_path, sha256_file, write_text

    path = write_text(tmp_path / "deep" / "x.json", "old")
    with pytest.raises(RuntimeError):
        with atomic_path(path) as tmp:
            tmp.write_text("half")
            assert tmp.parent == path.parent and tmp.suffix == ".json" and tmp.name.startswith(".x.json.")
            raise RuntimeError("killed mid-write")
    assert path.read_text() == "old" and os.listdir(path.parent) == ["x.json"]
    blob = os.urandom(3 << 20)  # more than one 1 MiB block
    with atomic_path(path, durable=True) as tmp:
        tmp.write_bytes(blob)
    assert path.read_bytes() == blob and os.listdir(path.parent) == ["x.json"]
    assert sha256_file(path) == hashlib.sha256(blob).hexdigest()


def test_invalid_manifest_is_never_written(tmp_path):
    df = mf.from_records(rows(1, status="failed"))
    with pytest.raises(mf.ManifestError):
        mf.write(df, tmp_path / "m.parquet")
    assert not (tmp_path / "m.parquet").exists()


def test_upsert_replaces_in_place_and_appends(tmp_path):
    base = mf.from_records(rows(3, status="planned", path=None))
    done = mf.from_records([dict(rows(3)[1], status="ok"), rows(5)[4]])
    merged = mf.upsert(base, done)
    assert merged["item_id"].tolist() == base["item_id"].tolist() + [done["item_id"].iloc[1]]
    assert merged["status"].tolist() == ["planned", "ok", "planned", "ok"]
    path = tmp_path / "m.parquet"
    mf.commit(path, base)
    mf.commit(path, done)
    assert mf.read(path)["status"].tolist() == ["planned", "ok", "planned", "ok"]


def test_metadata_is_kept(tmp_path):
    path = mf.write(mf.from_records(rows(1)), tmp_path / "m.parquet", {"recipe": "demo"})
    assert mf.read_metadata(path)["recipe"] == "demo"
    mf.commit(path, mf.from_records(rows(2)))
    assert mf.read_metadata(path)["recipe"] == "demo"


def test_summary_and_info_command(tmp_path):
    recs = rows(5) + [{"item_id": "f1", "source": "kinetics", "split": "train", "status": "failed",
                       "error": "http_429: slow down", "label": "c0", "label_id": 0}]
    path = mf.write(mf.from_records(recs), tmp_path / "m.parquet")
    s = mf.summary(mf.read(path))
    assert s["rows"] == 6 and s["status"] == {"failed": 1, "ok": 5} and s["error"] == {"http_429": 1}
    assert s["label"] == {"c0": 3, "c1": 2, "c2": 1} and s["source"] == {"kinetics": 1, "web_image": 5}
    res = CliRunner().invoke(cli, ["info", str(path), "--json"])
    assert res.exit_code == 0 and json.loads(res.output) == s
    res = CliRunner().invoke(cli, ["info", str(path)])
    assert res.exit_code == 0 and "http_429" in res.output and "by status" in res.output


def test_info_on_a_bad_manifest_is_a_clear_error(tmp_path):
    (tmp_path / "m.parquet").write_text("nope")
    res = CliRunner().invoke(cli, ["info", str(tmp_path / "m.parquet")])
    assert res.exit_code == 1 and "not a readable Parquet file" in res.output


def test_every_column_is_documented():
    from pathlib import Path

    doc = (Path(__file__).resolve().parent.parent / "manifests" / "README.md").read_text()
    assert [c for c in mf.COLUMNS if f"| `{c}` |" not in doc] == []
