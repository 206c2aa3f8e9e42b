"""`curate demo` end to end on a small world; `curate info` reads the manifest it ends with."""
from click.testing import CliRunner

from curate import manifest as mf
from curate.cli import cli


def test_demo_ends_with_a_manifest_info_reads(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(cli, ["demo", "--out", str(out), "--classes", "4", "--workers", "2"])
    assert result.exit_code == 0, result.output
    manifest = out / "manifests" / "target.parquet"
    assert f"target manifest   {manifest}" in result.output
    df = mf.read(manifest)
    assert len(df) == 4 * (8 + 16 + 24) and (df["status"] == "ok").all()
    assert (df["frames"] == 16).all() and (df["codec"] == "h264").all() and df["bytes"].gt(0).all()
    assert "watch pages up" in result.output
    info = CliRunner().invoke(cli, ["info", str(manifest), "--json"])
    assert info.exit_code == 0, info.output
    assert '"rows": 192' in info.output
    again = CliRunner().invoke(cli, ["demo", "--out", str(out), "--classes", "4"])  # reuses the world
    assert again.exit_code == 0 and mf.read(manifest)["sha256"].tolist() == df["sha256"].tolist()


def test_demo_rejects_a_bad_class_count(tmp_path):
    result = CliRunner().invoke(cli, ["demo", "--out", str(tmp_path), "--classes", "40"])
    assert result.exit_code != 0 and "2..17 classes" in result.output
