"""`curate train --nproc-per-node 2` really runs torchrun (gloo on CPU): the loss curve and weights of one process with
the same global batch (SGD: linear in the gradient, so float noise stays float noise; Adam would amplify it in
near-zero gradients), mixed sources and cross-dataset mixup included, and an exact resume after the whole job is
SIGKILLed mid-epoch.

The model is the tiny TimeSformer: LayerNorm only, no dropout. A BatchNorm model in train mode normalises with the
statistics of each rank's part of the batch (SyncBatchNorm, `schedule.sync_bn`, exists only on GPU), so its DDP
curve is not the one-process curve; with per-sample layers the gradients DDP averages are exactly the one-process
gradient of the global batch, and the runs agree up to float summation order."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from curate.core import manifest as mf
from trainers.checkpoint import read_checkpoint
from trainers.distributed import torchrun_command

ROOT = Path(__file__).resolve().parent.parent


def _curate(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-m", "curate", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def _tree(pid):
    """pid and its descendants (torchrun starts each rank in a session of its own, so killpg would miss them)."""
    parent = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parent[int(stat.parent.name)] = int(fields[1])
    tree, grew = {pid}, True
    while grew:
        more = {p for p, pp in parent.items() if pp in tree} - tree
        tree, grew = tree | more, bool(more)
    return tree


def _events(out, kind):
    log = out / "metrics.jsonl"
    return [e for e in map(json.loads, log.read_text().splitlines()) if e["event"] == kind] if log.exists() else []


@pytest.fixture(scope="module")
def run_args(tiny_world, tmp_path_factory):
    """9 target clips at batch 4 (the last batch has 1 clip: rank 1 gets only padding), plus 1 web clip per
    iteration (all on rank 0) mixed into the target clip it pairs with."""
    df = mf.read(tiny_world.target_manifest)
    nine = mf.write(df[df["split"] == "train"].head(9), tmp_path_factory.mktemp("ddp") / "nine.parquet")
    return ["train", nine, "--data-root", tiny_world.root, "--model", "timesformer_divst", "--tiny", "--size", "32",
            "--epochs", "2", "--batch-size", "4", "--val-split", "none", "--seed", "5", "--device", "cpu",
            "--source", f"web={tiny_world.truth_web}:batch=1,pseudo=static,weight=0.5",
            "--save-every", "1", "--set", "schedule.log_every=1", "--lr", "0.05",
            "--set", "schedule.mixup_alpha=0.4", "--set", "data.flip=0"]


@pytest.mark.slow
def test_torchrun_matches_one_process_and_resumes_exactly_after_sigkill(run_args, tmp_path):
    single = _curate([*run_args, "--out", tmp_path / "one"])
    assert single.wait(timeout=300) == 0, single.stdout.read().decode()
    whole = _curate([*run_args, "--out", tmp_path / "ddp", "--nproc-per-node", "2"])
    out = whole.communicate(timeout=300)[0].decode()
    assert whole.returncode == 0, out
    assert out.count("sources mixed in every iteration") == 1           # rank 0 alone prints the summary
    assert out.count("rows used") == 2                                  # one line per source: target and web

    one, ddp = _events(tmp_path / "one", "train"), _events(tmp_path / "ddp", "train")
    assert len(one) == len(ddp) == 6
    for a, b in zip(one, ddp):
        assert b["loss"] == pytest.approx(a["loss"], rel=1e-4, abs=1e-5), (one, ddp)
        assert b["loss/web"] == pytest.approx(a["loss/web"], rel=1e-4, abs=1e-5)
    a, b = read_checkpoint(tmp_path / "one" / "last.pt"), read_checkpoint(tmp_path / "ddp" / "last.pt")
    for k in a["state_dict"]:
        torch.testing.assert_close(b["state_dict"][k], a["state_dict"][k], rtol=1e-4, atol=1e-5)
    assert len(b["train"]["rng_ranks"]) == 2

    killed = _curate([*run_args, "--out", tmp_path / "killed", "--nproc-per-node", "2"])
    deadline = time.time() + 240
    while time.time() < deadline and killed.poll() is None:
        if any(e["step"] > 0 for e in _events(tmp_path / "killed", "checkpoint")):  # the first mid-epoch one
            for pid in _tree(killed.pid):                                # torchrun and both ranks at once
                os.kill(pid, signal.SIGKILL)
            break
        time.sleep(0.05)
    assert killed.wait(timeout=60) == -signal.SIGKILL, "the run ended before it could be killed"
    resumed = _curate([*run_args, "--out", tmp_path / "killed", "--nproc-per-node", "2", "--resume"])
    out = resumed.communicate(timeout=300)[0].decode()
    assert resumed.returncode == 0, out
    resume = _events(tmp_path / "killed", "resume")
    assert len(resume) == 1 and 0 < resume[0]["global_step"] < 6 and resume[0]["world"] == 2
    c = read_checkpoint(tmp_path / "killed" / "last.pt")
    assert all(torch.equal(b["state_dict"][k], c["state_dict"][k]) for k in b["state_dict"])
    assert [e["loss"] for e in _events(tmp_path / "killed", "train")] == [e["loss"] for e in ddp]


def test_torchrun_command_lines():
    one = torchrun_command(["train", "m.parquet"], 4)
    assert one[1:5] == ["-m", "torch.distributed.run", "--nproc-per-node=4", "--standalone"]
    assert one[-4:] == ["-m", "curate", "train", "m.parquet"]
    multi = torchrun_command(["train"], 8, "2", 1, "10.0.0.1", 29400)
    assert "--nnodes=2" in multi and "--node-rank=1" in multi and "--master-addr=10.0.0.1" in multi
    assert "--master-port=29400" in multi and "--standalone" not in multi
