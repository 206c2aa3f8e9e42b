"""README's "From crawl to model": the commands as written, run in order in a fresh folder on the tiny world (its web
served on loopback instead of port 8000; the training command shortened), ending with a checkpoint and results."""
import json
import re
import shlex
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.crawl.recipe import RECIPE_DIR

ROOT = Path(__file__).resolve().parent.parent


def readme_commands(section: str = "## From crawl to model") -> list[str]:
    """The `curate ...` lines of the section's bash blocks (continuations joined, comments dropped)."""
    text = (ROOT / "README.md").read_text().split(section, 1)[1].split("\n## ", 1)[0]
    lines = "".join(re.findall(r"```bash\n(.*?)```", text, flags=re.S)).replace("\\\n", " ").splitlines()
    return [ln.split("#", 1)[0].strip() for ln in lines if ln.strip().startswith("curate ")]


@pytest.mark.slow
def test_the_three_commands_run_as_written(tiny_world, tiny_teacher, web, tmp_path, monkeypatch):
    commands = readme_commands()
    assert [c.split()[1] for c in commands] == ["serve-web", "crawl", "filter", "merge", "train"]
    demo = tmp_path / "demo_out"
    (demo / "manifests").mkdir(parents=True)
    (demo / "world").symlink_to(tiny_world.root)
    mf.write(mf.read(tiny_world.target_manifest), demo / "manifests" / "target.parquet",
             {"data_root": str(tiny_world.root)})
    teacher = demo / "teachers" / "target_only" / "tsn_r50_e150_s0" / "last.pt"
    teacher.parent.mkdir(parents=True)
    shutil.copyfile(tiny_teacher, teacher)
    recipe = (RECIPE_DIR / "demo.yaml").read_text().replace("http://127.0.0.1:8000", web.url)
    (tmp_path / "demo.yaml").write_text(recipe)
    monkeypatch.chdir(tmp_path)
    for command in commands[1:]:               # the web is already served
        args = shlex.split(command)[1:]
        if args[0] == "crawl":                 # the same recipe, pointed at this test's loopback web
            args = ["crawl", "demo.yaml", "--quiet"]
        if args[0] == "train":                 # a short run
            args = [a if a != "20" else "1" for a in args] + ["--size", "32", "--batch-size", "4"]
        res = CliRunner().invoke(cli, args)
        assert res.exit_code == 0, f"{command}\n{res.output}"
    omni = mf.read(tmp_path / "manifests" / "omni.parquet")
    assert (omni["split"] == "web").sum() > 0 and set(omni["split"]) == {"train", "val", "test", "web"}
    run = tmp_path / "runs" / "tsn_r50"
    assert (run / "last.pt").exists() and (run / "best.pt").exists()
    val = [json.loads(ln) for ln in (run / "metrics.jsonl").read_text().splitlines()]
    assert any(e["event"] == "val" and "top1" in e for e in val)
