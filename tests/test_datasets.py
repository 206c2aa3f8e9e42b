"""UCF101 / HMDB51 split files in their official formats -> manifests."""
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.formats.ucf_hmdb import SplitFileError, read_hmdb51, read_ucf101

UCF_CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]


@pytest.fixture
def ucf(tmp_path):
    d = tmp_path / "ucfTrainTestlist"
    d.mkdir()
    (d / "classInd.txt").write_text("".join(f"{i} {c}\r\n" for i, c in enumerate(UCF_CLASSES, 1)))
    # the official lists use the folder's spelling, which for one class differs in case from classInd
    (d / "trainlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi 1\r\n"
        "HandStandPushups/v_HandStandPushups_g08_c01.avi 2\r\n"
        "YoYo/v_YoYo_g25_c05.avi 3\r\n")
    (d / "testlist01.txt").write_text(
        "ApplyEyeMakeup/v_ApplyEyeMakeup_g01_c01.avi\r\nYoYo/v_YoYo_g01_c01.avi\r\n")
    videos = tmp_path / "UCF-101"
    (videos / "ApplyEyeMakeup").mkdir(parents=True)
    (videos / "ApplyEyeMakeup" / "v_ApplyEyeMakeup_g08_c01.avi").write_bytes(b"x")
    return d, videos


def test_ucf101_split1(ucf):
    d, videos = ucf
    df = read_ucf101(d, 1, videos)
    assert df["label"].tolist() == ["ApplyEyeMakeup", "HandstandPushups", "YoYo", "ApplyEyeMakeup", "YoYo"]
    assert df["label_id"].tolist() == [0, 1, 2, 0, 2]
    assert df["split"].tolist() == ["train"] * 3 + ["test"] * 2
    assert df["path"].iloc[0] == "ApplyEyeMakeup/v_ApplyEyeMakeup_g08_c01.avi"
    assert df["status"].tolist() == ["ok"] + ["failed"] * 4
    assert df["error"].iloc[1].startswith("missing:")
    assert mf.validate(df) == []


def test_ucf101_bad_lines_name_file_and_line(ucf):
    d, _ = ucf
    (d / "trainlist01.txt").write_text("ApplyEyeMakeup/v_a.avi 1\nNoSuchClass/v_b.avi 2\n")
    with pytest.raises(SplitFileError, match=r"trainlist01.txt:2: 'NoSuchClass/v_b.avi'"):
        read_ucf101(d, 1)
    (d / "trainlist01.txt").write_text("YoYo/v_a.avi 1\n")
    with pytest.raises(SplitFileError, match="label 1 does not match folder YoYo"):
        read_ucf101(d, 1)


def test_hmdb51_split_ids(tmp_path):
    d = tmp_path / "testTrainMulti_7030_splits"
    d.mkdir()
    (d / "brush_hair_test_split1.txt").write_text("April_09_brush_hair_u_nm_np1_ba_goo_0.avi 1 \n"
                                                  "Blonde_being_brushed_brush_hair_f_nm_np2_ri_med_0.avi 2 \n"
                                                  "brushing_hair_brush_hair_u_nm_np1_fr_goo_2.avi 0 \n")
    (d / "wave_test_split1.txt").write_text("wave_hello_wave_u_cm_np1_fr_med_0.avi 2 \n")
    (d / "wave_test_split2.txt").write_text("wave_hello_wave_u_cm_np1_fr_med_0.avi 1 \n")
    df = read_hmdb51(d, 1)
    assert df["label"].tolist() == ["brush_hair", "brush_hair", "wave"]
    assert df["label_id"].tolist() == [0, 0, 1] and df["split"].tolist() == ["train", "test", "test"]
    assert set(df["status"]) == {"planned"}
    assert read_hmdb51(d, 2)["split"].tolist() == ["train"]
    (d / "wave_test_split1.txt").write_text("wave_hello.avi 7\n")
    with pytest.raises(SplitFileError, match=r"wave_test_split1.txt:1"):
        read_hmdb51(d, 1)


def test_import_command(ucf, tmp_path):
    d, videos = ucf
    out = tmp_path / "ucf.parquet"
    res = CliRunner().invoke(cli, ["import", "ucf101", str(d), "--videos", str(videos), "-o", str(out)])
    assert res.exit_code == 0, res.output
    assert "3 classes" in res.output and len(mf.read(out)) == 5
    assert mf.read_metadata(out)["dataset"] == "ucf101"
