"""The training loop on the demo world: every bundled model learns, exact resume after SIGKILL, checkpoints,
the loss of mixed sources, schedules, ImageNet weights, and the `curate train` / `curate eval` commands."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner

from curate.cli import cli
from curate.core import manifest as mf
from curate.demo.spec import family
from trainers.checkpoint import CheckpointError, load_checkpoint
from trainers.config import ConfigError
from trainers.data import Group
from trainers.inputs import data_overrides
from trainers.schedule import Schedule, lr_factor
from trainers.sources import Holdout, Source, load_source, parse_source
from trainers.train import _loss, make_config, train

ROOT = Path(__file__).resolve().parent.parent
# Recognition configs (bmn / slowonly_ava are the localization and detection models, tested in their own files).
CONFIGS = sorted(family())


def tiny_cfg(name, epochs, batch_size=4, lr=1e-2, **schedule):
    """The tiny model at 32x32 with little augmentation noise (the crop is the frame, no flip)."""
    cfg = make_config(name, tiny=True, overrides={"schedule": dict(epochs=epochs, batch_size=batch_size, lr=lr,
                                                                   optimizer="adamw", grad_clip=None, log_every=1,
                                                                   **schedule)})
    three_d = cfg["model"].get("type") == "Recognizer3D"
    cfg["data"] = data_overrides(cfg["model"], size=32, scale=32, flip=0.0, train_crop="random",
                                 frame_interval=2 if three_d else None)
    return cfg


def train_losses(out):
    return [e["loss"] for e in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
            if e["event"] == "train"]


@pytest.fixture(scope="module")
def four_clips(tiny_world):
    df = mf.read(tiny_world.target_manifest)
    return df[df["split"] == "train"].groupby("label_id").head(1).reset_index(drop=True)


@pytest.mark.slow
@pytest.mark.parametrize("name", CONFIGS)
def test_every_bundled_model_learns_on_the_demo_world(name, four_clips, tiny_world, tmp_path):
    """Tiny versions of every config in recipes/models train 12 steps on 4 decoded clips; the loss goes down."""
    torch.set_num_threads(2)
    result = train(tiny_cfg(name, epochs=12), [Source("target", four_clips, root=tiny_world.root)], tmp_path,
                   progress=False)
    losses = train_losses(tmp_path)
    assert len(losses) == 12 and result.rows == {"target": 4}
    assert np.mean(losses[-3:]) < 0.9 * np.mean(losses[:3]), losses
    _, meta = load_checkpoint(result.last)
    assert meta["classes"] == tiny_world.classes


def _cli(args, **kw):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "curate", *map(str, args)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, **kw)


def test_checkpoint_loads_with_weights_only_and_rebuilds_the_model(four_clips, tiny_world, tmp_path):
    result = train(tiny_cfg("tsn_r50", epochs=1), [Source("target", four_clips, root=tiny_world.root)], tmp_path,
                   progress=False)
    raw = torch.load(result.last, map_location="cpu", weights_only=True)
    meta = raw["meta"]
    assert raw["format"] == "curate-checkpoint/1" and raw["train"]["epoch"] == 1
    assert meta["input"]["input"]["clip_len"] == 1 and meta["input"]["input"]["size"] == 32
    assert meta["labels"]["level"] == "label" and len(meta["sha256"]) == 64
    model, meta = load_checkpoint(result.last)
    x = torch.randn(2, 1, 3, 8, 32, 32)
    reference = tiny_cfg("tsn_r50", 1)
    from trainers.config import build_model
    rebuilt = build_model(reference["model"], num_classes=4)
    rebuilt.load_state_dict(raw["state_dict"])
    torch.testing.assert_close(model.predict(x), rebuilt.eval().predict(x))
    raw["state_dict"]["cls_head.fc_cls.bias"] += 1                                     # tampered weights
    torch.save(raw, tmp_path / "tampered.pt")
    with pytest.raises(CheckpointError, match="do not match the stored hash"):
        load_checkpoint(tmp_path / "tampered.pt")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a loadable checkpoint"):
        load_checkpoint(tmp_path / "junk.pt")


def test_the_loss_is_the_weighted_sum_of_per_source_means_and_mixup_blends_target_with_aux():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(2 * 3, 3))
    x0, x1 = torch.randn(3, 1, 1, 2, 3, 1), torch.randn(2, 1, 1, 2, 3, 1)
    y0, y1 = torch.tensor([0, 1, 2]), torch.tensor([2, 2])
    groups = [Group(0, x0, y0), Group(1, x1, y1)]
    s = Schedule.from_config({})
    total, parts = _loss(model, groups, [1.0, 0.5], s, 3, None, 1.0, torch.device("cpu"))
    with torch.no_grad():
        want0, want1 = F.cross_entropy(model(x0), y0), F.cross_entropy(model(x1), y1)
    torch.testing.assert_close(total.detach(), want0 + 0.5 * want1)
    assert parts == pytest.approx({0: float(want0), 1: float(want1)})
    lam = 0.3
    total, parts = _loss(model, groups, [1.0, 0.5], s, 3, 1, lam, torch.device("cpu"))
    mixed = torch.cat([lam * x0[:2] + (1 - lam) * x1, x0[2:]])
    soft = torch.cat([lam * F.one_hot(y0[:2], 3) + (1 - lam) * F.one_hot(y1, 3), F.one_hot(y0[2:], 3)]).float()
    torch.testing.assert_close(torch.tensor(parts[0]), F.cross_entropy(model(mixed), soft).detach())


def test_mixed_source_run_logs_each_source_and_skips_unusable_rows(tiny_world, tmp_path):
    cfg = tiny_cfg("tsn_r50", epochs=1, batch_size=4)
    web = Source("web", tiny_world.truth_web, share=0.5, power=0.5, weight=0.5, pseudo="frame")
    result = train(cfg, [Source("target", tiny_world.target_manifest, split="train"), web], tmp_path,
                   progress=False)
    first = json.loads((tmp_path / "metrics.jsonl").read_text().splitlines()[0])
    assert {"loss/target", "loss/web"} <= set(first)
    assert first["loss"] == pytest.approx(first["loss/target"] + 0.5 * first["loss/web"], rel=1e-4)
    assert result.rows["target"] == 12 and result.skipped["web"]["failed"] > 0
    assert result.metrics["n"] == 16 and "set_acc" in result.metrics                   # validated on 'val'
    assert (tmp_path / "curve.png").stat().st_size > 5000 and result.best.exists()


def test_a_holdout_source_leaves_its_fold_out_and_the_checkpoint_says_which(tiny_world, tmp_path):
    from curate.clean.teacher import load_teacher

    web = mf.read(tiny_world.truth_web, validate_rows=False)
    web = web[web["media"] == "image"].reset_index(drop=True)
    src = parse_source(f"web={tiny_world.truth_web}:media=image,holdout=1/2@3")
    assert src.holdout == "1/2@3" and Holdout.parse("0/4") == Holdout(0, 4, 0)
    left = mf.fold_of(web, 2, 3) == 1
    assert 0 < left.sum() < len(web) and not np.array_equal(left, mf.fold_of(web, 2, 4) == 1)   # the seed matters
    assert set(load_source(src)[0]["item_id"]) == set(web.loc[~left, "item_id"])
    clips = web.head(3).assign(parent_id=web["item_id"].iloc[3])        # a clip takes its parent's fold
    assert (mf.fold_of(clips, 5, 1) == mf.fold_of(web.iloc[[3]], 5, 1)[0]).all()
    for bad in ("2/2", "0/1", "a/2", "1", "0/2@x"):
        with pytest.raises(ConfigError, match="FOLD/FOLDS"):
            parse_source(f"web=x.parquet:holdout={bad}")
    cfg = tiny_cfg("tsn_r50", epochs=1, batch_size=4)
    result = train(cfg, [Source("target", tiny_world.target_manifest, split="train"), src], tmp_path, progress=False)
    assert result.rows["web"] + sum(result.skipped.get("web", {}).values()) == (~left).sum()
    assert load_teacher(result.last, "cpu").holdout == Holdout(1, 2, 3)


def test_schedules_by_hand():
    s = Schedule.from_config({"epochs": 3, "lr": 0.1, "warmup_epochs": 1, "warmup_factor": 0.1})
    assert [round(lr_factor(s, k, 10), 4) for k in (0, 5, 10, 20, 30)] == [0.1, 0.55, 1.0, 0.5, 0.0]
    step = Schedule.from_config({"epochs": 3, "policy": "step", "milestones": [1, 2], "gamma": 0.1})
    assert [round(lr_factor(step, k, 10), 4) for k in (9, 10, 25)] == [1.0, 0.1, 0.01]
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['learning_rate'\]"):
        Schedule.from_config({"learning_rate": 0.1})
    with pytest.raises(ConfigError, match="not one of"):
        Schedule.from_config({"optimizer": "adam"})


def test_local_imagenet_weights_load_into_tsn(tmp_path):
    import torchvision

    from trainers.config import build_model

    state = torchvision.models.resnet18().state_dict()
    torch.save(state, tmp_path / "r18.pth")
    cfg = make_config("tsn_r50", overrides={"model": {"backbone": {"depth": 18,
                                                                   "pretrained": str(tmp_path / "r18.pth")}}})
    model = build_model(cfg["model"], num_classes=4)
    assert torch.equal(model.backbone.conv1.weight, state["conv1.weight"])
    assert torch.equal(model.backbone.layer4[1].bn2.running_var, state["layer4.1.bn2.running_var"])


def test_cli_train_then_eval_prints_summaries(tiny_world, tmp_path):
    runner = CliRunner()
    res = runner.invoke(cli, ["train", str(tiny_world.target_manifest), "--model", "tsn_r50", "--tiny", "--size",
                              "32", "--epochs", "1", "--out", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    assert "best validation" in res.output and "last.pt" in res.output
    res = runner.invoke(cli, ["eval", str(tmp_path / "run" / "best.pt"), str(tiny_world.target_manifest),
                              "--views", "2x3"])
    assert res.exit_code == 0, res.output
    assert "mean_class_acc" in res.output and "set_acc" in res.output and "views 2x3" in res.output
    saved = json.loads((tmp_path / "run" / "eval_best_test" / "metrics.json").read_text())
    assert saved["n"] == 16 and 0 <= saved["top1"] <= 1
    bad = runner.invoke(cli, ["train", str(tiny_world.target_manifest), "--model", "tsn_r5O"])
    assert bad.exit_code != 0 and "bundled configs" in bad.output and "tsn_r50" in bad.output
