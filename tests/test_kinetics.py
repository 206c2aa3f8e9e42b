"""Kinetics as released: the K400 (2017), K600 (2018) and K700-2020 CSV layouts, label-less test files planned and
fetched as split test, bundled recipes and class lists found by name from any folder and from a wheel installed
into a new venv, dead yt-dlp extractors named before a crawl."""
import os
import shutil
import subprocess
import sys
import venv
from pathlib import Path

import pandas as pd
import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.crawl.extractors import dead_extractors
from curate.crawl.recipe import RecipeError, find_recipe, load_recipe
from curate.formats import class_list, kinetics

ROOT = Path(__file__).resolve().parent.parent

K400_2017 = {  # the 2017 files: is_cc, labels with a space quoted, a label-less test file
    "train.csv": 'label,youtube_id,time_start,time_end,split,is_cc\nabseiling,0wR5jVB-WPk,417,427,train,0\n'
                 '"massaging person\'s head",-huT_p-r_zA,1989,1999,train,1\n"air drumming",--AAAAAAAAA,0,10,train,0\n',
    "validate.csv": 'label,youtube_id,time_start,time_end,split,is_cc\nabseiling,aaaaaaaaaaa,1,11,val,0\n',
    "test.csv": "youtube_id,time_start,time_end,split\n--6zxbYq5M4,39,49,test\nbbbbbbbbbbb,0,10,test\n"
                "ccccccccccc,5,5,test\n",
}
K600_2018 = "label,youtube_id,time_start,time_end,split\npassing american football (not in game),--nQbRBEz2s,104,114,val\n"
K700_2020 = {"validate.csv": "label,youtube_id,time_start,time_end,split\ntestifying,---QUuC4vJs,84,94,validate\n",
             "test.csv": "youtube_id,time_start,time_end,split\nddddddddddd,0,10,test\n"}


def write_k400(folder: Path) -> Path:
    (folder / "kinetics400").mkdir(parents=True)
    for name, text in K400_2017.items():
        (folder / "kinetics400" / name).write_text(text)
    return folder


def test_every_release_reads_into_one_table(tmp_path):
    write_k400(tmp_path)
    train = kinetics.read_csv(tmp_path / "kinetics400" / "train.csv")
    assert train["label"].tolist() == ["abseiling", "massaging person's head", "air drumming"]
    assert train["is_cc"].tolist() == [0, 1, 0] and train["youtube_id"].iloc[2] == "--AAAAAAAAA"
    test = kinetics.read_csv(tmp_path / "kinetics400" / "test.csv")
    assert set(test["label"]) == {""} and set(test["split"]) == {"test"} and test["is_cc"].isna().all()
    assert kinetics.bad_spans(test).tolist() == [False, False, True] and test["line"].tolist() == [2, 3, 4]
    (tmp_path / "k600.csv").write_text(K600_2018)
    k600 = kinetics.read_csv(tmp_path / "k600.csv")
    assert k600["split"].tolist() == ["val"] and k600["label"].iloc[0] in class_list("kinetics600")
    for name, text in K700_2020.items():
        (tmp_path / name).write_text(text)
    assert kinetics.read_csv(tmp_path / "validate.csv")["split"].tolist() == ["val"]        # spelled out in K700
    assert "testifying" in class_list("kinetics700_2020")
    assert [len(class_list(n)) for n in ("kinetics400", "kinetics600", "kinetics700_2020")] == [400, 600, 700]
    (tmp_path / "bad.csv").write_text("label,youtube_id,time_start,time_end,split\na,b,1,2,train\na,c,1,2,dev\n")
    with pytest.raises(kinetics.KineticsError, match=r"bad.csv:3: split 'dev'"):
        kinetics.read_csv(tmp_path / "bad.csv")
    (tmp_path / "nocol.csv").write_text("label,id,start,end\n")
    with pytest.raises(kinetics.KineticsError, match=r"no column\(s\) \['youtube_id', 'time_start', 'time_end'\]"):
        kinetics.read_csv(tmp_path / "nocol.csv")


def test_a_manifest_written_as_kinetics_csv_reads_back_the_same(tmp_path):
    rows = mf.from_records([
        {"item_id": "a" * 16, "source": "kinetics", "source_id": "0wR5jVB-WPk", "label": "abseiling", "split": "val",
         "start_s": 417.0, "end_s": 427.0, "media": "video", "status": "ok"},
        {"item_id": "b" * 16, "source": "kinetics", "source_id": "--6zxbYq5M4", "label": None, "split": "test",
         "start_s": 39.25, "end_s": 49.5, "media": "video", "status": "ok"}])
    (tmp_path / "k.csv").write_text(kinetics.to_csv(rows))
    back = kinetics.read_csv(tmp_path / "k.csv")
    assert back["youtube_id"].tolist() == rows["source_id"].tolist() and back["split"].tolist() == ["val", "test"]
    assert back["label"].tolist() == ["abseiling", ""]
    assert back["time_start"].tolist() == [417.0, 39.25] and back["time_end"].tolist() == [427.0, 49.5]


def test_the_bundled_recipe_plans_unlabelled_test_rows_from_any_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(write_k400(tmp_path))
    res = CliRunner().invoke(cli, ["crawl", "kinetics400", "--dry-run"])
    assert res.exit_code == 0, res.output
    assert "relative paths read from" in res.output and "no label" in res.output
    plan = mf.read(tmp_path / "kinetics400" / "manifest.plan.parquet")
    by = plan.groupby("split").agg(rows=("item_id", "size"), unlabelled=("label", lambda s: int(s.isna().sum())))
    assert by.to_dict("index") == {"train": {"rows": 3, "unlabelled": 0}, "val": {"rows": 1, "unlabelled": 0},
                                   "test": {"rows": 2, "unlabelled": 2}}       # the bad span of line 4 is skipped
    assert plan.loc[plan["split"] == "train", "label_id"].tolist() == [
        class_list("kinetics400").index(n) for n in ("abseiling", "massaging person's head", "air drumming")]
    assert "1 rows with a bad id or time span were skipped (lines 4)" in res.output
    # a crawl of some classes only leaves the unlabelled rows out
    sub = CliRunner().invoke(cli, ["crawl", "kinetics400", "--dry-run", "--classes", "abseiling"])
    assert sub.exit_code == 0, sub.output
    assert set(mf.read(tmp_path / "kinetics400" / "manifest.plan.parquet")["label"]) == {"abseiling"}
    listing = CliRunner().invoke(cli, ["recipes"])
    assert listing.exit_code == 0 and "omnisource-k400" in listing.output and "kinetics700_2020" in listing.output


def test_missing_files_and_typos_name_their_key(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    res = CliRunner().invoke(cli, ["crawl", "kinetics400", "--dry-run"])
    assert res.exit_code == 1 and "kinetics400.target.csv[0]: no file" in res.output and "Traceback" not in res.output
    res = CliRunner().invoke(cli, ["crawl", "kinetcs400", "--dry-run"])
    assert res.exit_code == 1 and "did you mean 'kinetics400'?" in res.output
    (tmp_path / "r.yaml").write_text("name: r\nclasses_file: classes.txt\n")
    with pytest.raises(RecipeError, match=r"r.classes_file: no file .*classes.txt \(and 'classes.txt' is not a class"):
        load_recipe(tmp_path / "r.yaml")
    path, base = find_recipe("omnisource-k400")
    assert path.name == "omnisource.yaml" and base == str(tmp_path)


def test_dead_extractors_are_named_before_a_crawl(tmp_path):
    path, base = find_recipe("omnisource-k400")
    omni = load_recipe(path, base_dir=base)
    assert dead_extractors(omni) == []                      # the shipped recipes use extractors that work
    (tmp_path / "r.yaml").write_text(
        "name: r\nclasses: [a]\nsources:\n  - {name: tags, kind: feed, provider: ytdlp, media: video, "
        "options: {url: 'https://www.tiktok.com/tag/{tag}'}}\n")
    warnings = dead_extractors(load_recipe(tmp_path / "r.yaml"))
    assert len(warnings) == 1 and "r.sources 'tags'" in warnings[0] and "TikTokTag" in warnings[0]
    res = CliRunner().invoke(cli, ["crawl", str(tmp_path / "r.yaml"), "--dry-run"])
    assert res.exit_code == 0 and "marks its extractor TikTokTag" in res.output


@pytest.mark.slow
def test_a_wheel_in_a_new_venv_finds_its_recipes_class_lists_and_model_configs(tmp_path):
    """Not editable: the wheel alone must hold the recipes, class lists, FineGym files and model configs."""
    src = tmp_path / "src"   # a copy, so the build leaves nothing in the checkout
    shutil.copytree(ROOT, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".venv", ".git", "demo_out", "build", "dist", "*.egg-info", "__pycache__", ".pytest_cache", "bench"))
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(src),
                    "-w", str(tmp_path / "dist")], check=True, cwd=tmp_path, capture_output=True, timeout=300)
    wheel = next((tmp_path / "dist").glob("curate-*.whl"))
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True).create(env_dir)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    py = env_dir / "bin" / "python"
    site = subprocess.run([str(py), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                          capture_output=True, text=True, check=True).stdout.strip()
    deps = [p for p in sys.path if p.endswith("site-packages")]      # torch and friends: not installed twice
    (Path(site) / "deps.pth").write_text("\n".join(deps) + "\n")
    # the project's own (editable) install is on that path too: install the wheel over it, in the new venv
    subprocess.run([str(py), "-m", "pip", "install", "-q", "--no-deps", "--no-index", "--ignore-installed",
                    str(wheel)], check=True, capture_output=True, timeout=300, env=env)
    work = write_k400(tmp_path / "work")
    curate = str(env_dir / "bin" / "curate")
    where = subprocess.run([str(py), "-c", "import curate, trainers.config as c; print(curate.__file__); "
                            "print(len(list(c.MODEL_DIR.glob('*.yaml'))))"], cwd=work, env=env,
                           capture_output=True, text=True)
    assert where.returncode == 0, where.stderr
    where = where.stdout.split()
    assert where[0].startswith(site) and int(where[1]) >= 20         # imported from the wheel, configs inside it
    for name in ("kinetics400", "omnisource-k400"):
        out = subprocess.run([curate, "crawl", name, "--dry-run"], cwd=work, env=env, capture_output=True,
                             text=True, timeout=300)
        assert out.returncode == 0, out.stdout + out.stderr
    plan = pd.read_parquet(work / "kinetics400" / "manifest.plan.parquet")
    assert len(plan) == 6 and plan["label"].isna().sum() == 2
    assert "tag_videos" in out.stdout and "openverse_images" in out.stdout
    gym = subprocess.run([str(py), "-c", "from curate.formats import finegym as fg; "
                          "print(sorted(fg.read_categories(fg.SHIPPED, []).subsets))"], cwd=work, env=env,
                         capture_output=True, text=True, check=True).stdout
    assert "gym99" in gym and "gym288" in gym
