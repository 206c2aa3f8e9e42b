"""The one training loop (trainers/loop.py): recognition, BMN localization and the AVA-style detector each resume
after a SIGKILL in the middle of an epoch to the same weights and the same log as an uninterrupted run."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from curate.formats import ava
from trainers.checkpoint import read_checkpoint

ROOT = Path(__file__).resolve().parent.parent

# BMN on random features of 8 videos with one segment each: fast, and every step of an epoch is a batch of 2.
BMN_SCRIPT = """
import json, sys
from pathlib import Path
import numpy as np
from trainers.localization import train_localizer
from trainers.train import make_config
rng = np.random.default_rng(0)
feats = {f"v{i}": rng.normal(size=(16, 12)).astype("float32") for i in range(10)}
db = {"database": {f"v{i}": {"subset": "training" if i < 8 else "validation", "duration": 10.0,
                             "annotations": [{"segment": [1.0 + i % 3, 5.0 + i % 4], "label": "a"}]}
                   for i in range(10)}}
cfg = make_config("bmn", tiny=True, overrides={"model": {"feat_dim": 16, "temporal_dim": 12, "num_samples": 4},
                  "schedule": {"epochs": 3, "batch_size": 2, "save_every": 1, "log_every": 1, "eval_every": 1}})
ann = Path(sys.argv[1]).with_suffix(".json")
ann.write_text(json.dumps(db))
train_localizer(cfg, feats, ann, sys.argv[1], resume=sys.argv[2] == "resume", device="cpu", progress=False)
"""


def _start(args: list[str]) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    return subprocess.Popen([sys.executable, *map(str, args)], cwd=ROOT, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT)


def _events(out: Path) -> list[dict]:
    log = out / "metrics.jsonl"
    return [json.loads(ln) for ln in log.read_text().splitlines() if ln.strip()] if log.exists() else []


def _finish(proc: subprocess.Popen, timeout: float = 600) -> None:
    out = proc.communicate(timeout=timeout)[0].decode()
    assert proc.returncode == 0, out


def _kill_mid_epoch(proc: subprocess.Popen, out: Path, timeout: float = 300) -> None:
    """SIGKILL as soon as a mid-epoch checkpoint of the second epoch is on disk."""
    deadline = time.time() + timeout
    while time.time() < deadline and proc.poll() is None:
        if any(e["event"] == "checkpoint" and e["epoch"] == 1 and e["step"] > 0 for e in _events(out)):
            proc.send_signal(signal.SIGKILL)
            break
        time.sleep(0.02)
    assert proc.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"


def _assert_same_run(whole: Path, killed: Path) -> None:
    resume = [e for e in _events(killed) if e["event"] == "resume"]
    assert len(resume) == 1 and resume[0]["epoch"] == 1 and resume[0]["step"] > 0      # it resumed mid-epoch
    a, b = read_checkpoint(whole / "last.pt"), read_checkpoint(killed / "last.pt")
    assert a["meta"]["epoch"] == b["meta"]["epoch"] and a["state_dict"].keys() == b["state_dict"].keys()
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])  # BN buffers too
    losses = [[e["loss"] for e in _events(p) if e["event"] == "train"] for p in (whole, killed)]
    assert losses[0] == losses[1]                                                       # the log is whole again


def _tasks(tiny_world, locdet_world, tmp_path):
    ava_dir = tmp_path / "ava"
    ava.from_world(locdet_world.root, ava_dir)
    script = tmp_path / "bmn.py"
    script.write_text(BMN_SCRIPT)
    recognition = ["-m", "curate", "train", tiny_world.target_manifest, "--model", "tsn_r50", "--tiny", "--size",
                   "48", "--epochs", "3", "--batch-size", "2", "--save-every", "1", "--val-split", "none", "--seed",
                   "3", "--set", "schedule.log_every=1"]
    detection = ["-m", "curate", "localize", "train-ava", ava_dir, "--data-root", locdet_world.root, "--tiny",
                 "--set", "schedule.epochs=2", "--set", "schedule.batch_size=2", "--set", "schedule.save_every=1",
                 "--set", "schedule.log_every=1", "--set", "data.size=48"]
    return {"recognition": (lambda out, resume: [*recognition, "--out", out] + (["--resume"] if resume else [])),
            "localization": (lambda out, resume: [script, out, "resume" if resume else "new"]),
            "detection": (lambda out, resume: [*detection, "-o", out] + (["--resume"] if resume else []))}


@pytest.mark.slow
@pytest.mark.parametrize("task", ["recognition", "localization", "detection"])
def test_resume_after_sigkill_ends_with_identical_weights(task, tiny_world, locdet_world, tmp_path):
    command = _tasks(tiny_world, locdet_world, tmp_path)[task]
    _finish(_start(command(tmp_path / "whole", False)))
    killed = _start(command(tmp_path / "killed", False))
    _kill_mid_epoch(killed, tmp_path / "killed")
    _finish(_start(command(tmp_path / "killed", True)))
    _assert_same_run(tmp_path / "whole", tmp_path / "killed")
    if task != "localization":                                                          # no --resume: refused
        again = _start(command(tmp_path / "whole", False))
        assert again.wait(timeout=300) == 1 and b"already holds a run" in again.stdout.read()


def test_the_last_epochs_averaged_into_avg_pt(tiny_world, tmp_path):
    from trainers.loop import running_average
    from trainers.sources import Source
    from trainers.train import make_config, train

    a, b = {"w": torch.tensor([1.0, 3.0]), "n": torch.tensor(5)}, {"w": torch.tensor([3.0, 5.0]), "n": torch.tensor(9)}
    avg = running_average(running_average({"n": 0, "state": None}, a), b)
    assert avg["n"] == 2 and torch.equal(avg["state"]["w"], torch.tensor([2.0, 4.0])) and int(avg["state"]["n"]) == 9
    sched = {"epochs": 4, "batch_size": 4, "optimizer": "adamw", "grad_clip": None, "log_every": 1}
    src = [Source("target", tiny_world.target_manifest, split="train", root=tiny_world.root)]
    for share, out in ((0.25, "one"), (0.5, "two")):
        cfg = make_config("tsn_r50", tiny=True, overrides={"schedule": {**sched, "average_last": share},
                                                           "data": {"size": 32, "scale": 32}})
        train(cfg, src, tmp_path / out, progress=False)
    last, one = (read_checkpoint(tmp_path / "one" / f"{k}.pt") for k in ("last", "avg"))
    assert one["meta"]["averaged_epochs"] == 1
    assert all(torch.equal(last["state_dict"][k], one["state_dict"][k]) for k in last["state_dict"])
    two = read_checkpoint(tmp_path / "two" / "avg.pt")
    assert two["meta"]["averaged_epochs"] == 2
    assert not torch.equal(two["state_dict"]["cls_head.fc_cls.weight"], last["state_dict"]["cls_head.fc_cls.weight"])
