"""Record tests/data/mmaction2: per family, MMAction2 1.2.0's own scores for random weights and a random input.

    bash tests/tools/mmaction2_env.sh /tmp/mma                # once: MMAction2 in a folder of its own
    PYTHONPATH=/tmp/mma:. python tests/tools/record_mmaction2.py [FAMILY ...]   # no FAMILY: all, and the rest

For each case of mmaction2_cases.py: build the config's model (no pretrained weights, SyncBN as BN) with the case's
overrides, draw every float parameter from a seeded normal (He scale for kernels; norms near 1, biases near 0),
set the BatchNorm statistics from one training-mode pass over a separate random batch, then record the eval-mode
logits per view (`mode='tensor'`, head stage) and `pred_score` of `mode='predict'` for a seeded input, with the
config's test pipeline. Also writes a small Runner-style checkpoint (mmengine's save_checkpoint with a
message_hub of log buffers and numpy values, an optimizer, schedulers) around the spaceOnly weights, and the
state-dict names and shapes of every family's full-size model (built on the meta device: no weights).
"""
from __future__ import annotations

import gzip
import json
import math
import sys
import zlib
from pathlib import Path
from typing import Any

import mmaction
import mmengine
import numpy as np
import torch
from mmaction.registry import MODELS
from mmaction.structures import ActionDataSample
from mmaction.utils import register_all_modules
from mmengine.config import Config
from mmengine.logging import MessageHub
from mmengine.runner.checkpoint import save_checkpoint
from torch import nn

sys.path.insert(0, str(Path(__file__).resolve().parent))
from mmaction2_cases import CASES, DATA, FULL_SIZE, RUNNER_CHECKPOINT, Case, mmaction2_state, seeded  # noqa: E402

from trainers.checkpoint import weights_hash  # noqa: E402

CONFIGS = Path(mmaction.__file__).parent / ".mim" / "configs" / "recognition"
CROPS = {"CenterCrop": 1, "ThreeCrop": 3, "TenCrop": 10}


def merged(base: Any, over: Any) -> Any:
    if isinstance(base, dict) and isinstance(over, dict):
        return {k: merged(base.get(k), v) if k in base else v for k, v in over.items()} | \
            {k: v for k, v in base.items() if k not in over}
    return over


def no_downloads(node: Any) -> Any:
    """pretrained / init_cfg off, SyncBN as plain BN (one process, CPU)."""
    if isinstance(node, dict):
        out = {k: no_downloads(v) for k, v in node.items()}
        out.update({k: None for k in ("pretrained", "init_cfg") if k in out})
        if "pretrained2d" in out:
            out["pretrained2d"] = False
        if isinstance(out.get("norm_cfg"), dict) and out["norm_cfg"].get("type") == "SyncBN":
            out["norm_cfg"] = {**out["norm_cfg"], "type": "BN3d"}
        return out
    return [no_downloads(v) for v in node] if isinstance(node, (list, tuple)) else node


def test_facts(cfg: Config) -> dict[str, Any]:
    """The config's test pipeline: sampling, resize, crop, normalisation."""
    steps = {s["type"]: s for s in cfg.test_pipeline}
    sample = next(s for s in cfg.test_pipeline if "SampleFrames" in s["type"])
    crop = next(s for t, s in steps.items() if t in CROPS)
    prep = cfg.model.data_preprocessor
    return {"clip_len": sample["clip_len"], "frame_interval": sample["frame_interval"],
            "num_clips": sample["num_clips"], "resize": list(steps["Resize"]["scale"]), "crop": crop["type"],
            "crop_size": crop["crop_size"], "crops": CROPS[crop["type"]], "mean": list(prep["mean"]),
            "std": list(prep["std"]), "format_shape": prep.get("format_shape", "NCHW")}


def spec(name: str, value: torch.Tensor, index: int) -> dict[str, Any]:
    """How to draw a parameter: He-normal kernels, norm scales near 1, biases / embeddings near 0."""
    seed = zlib.crc32(name.encode()) ^ index
    if value.dim() >= 2 and not name.endswith(("_token", "_embed")):
        return {"shape": list(value.shape), "seed": seed, "mean": 0.0, "std": math.sqrt(2 / value[0].numel())}
    scale = name.endswith("weight") and value.dim() == 1
    return {"shape": list(value.shape), "seed": seed, "mean": 1.0 if scale else 0.0, "std": 0.1 if scale else 0.2}


def head_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Eval-mode class scores per view (TSN: per video, after its consensus)."""
    logits = model(x, mode="tensor", stage="head")
    return logits[0] if isinstance(logits, tuple) else logits


def record(family: str, case: Case) -> Path:
    cfg = Config.fromfile(CONFIGS / f"{case.config}.py")
    model = MODELS.build(no_downloads(merged(cfg.model.to_dict(), case.mma))).eval()
    model.data_preprocessor = None       # inputs come normalised; its mean/std are not in the state dict anyway
    params = dict(model.named_parameters())
    seeds = {k: spec(k, v, i) for i, (k, v) in enumerate(params.items())}
    with torch.no_grad():
        for k, s in seeds.items():
            params[k].copy_(seeded(s))
        norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
        for m in norms:                  # running statistics = those of one calibration batch
            m.train()
            m.momentum = 1.0
        model(seeded({"shape": list(case.input), "seed": 7, "mean": 0.0, "std": 1.0}), mode="tensor", stage="head")
        for m in norms:
            m.eval()
            m.momentum = 0.1
        x_spec = {"shape": list(case.input), "seed": 1, "mean": 0.0, "std": 1.0}
        x = seeded(x_spec)
        classifier = next(k for k in reversed(seeds) if k.startswith("cls_head.") and k.endswith("weight"))
        spread = head_logits(model, x).std().item()     # logits of spread ~2: scores far from one-hot
        seeds[classifier]["std"] *= 2.0 / spread
        params[classifier].copy_(seeded(seeds[classifier]))
        logits = head_logits(model, x)
        scores = torch.stack([d.pred_score for d in model(x, [ActionDataSample() for _ in x], mode="predict")])
    state = model.state_dict()
    fixture = {"family": family, "config": case.config, "overrides": case.mma, "test": test_facts(cfg),
               "versions": {"mmaction2": mmaction.__version__, "mmengine": mmengine.__version__,
                            "torch": str(torch.__version__), "numpy": np.__version__},
               "keys": list(state), "seeded": {k: s for k, s in seeds.items() if k in state},
               "tensors": {k: v.clone() for k, v in state.items() if k not in seeds},
               "sha256": weights_hash(state, {}), "input": x_spec,
               "logits": logits, "scores": scores}
    assert weights_hash(mmaction2_state(fixture), {}) == fixture["sha256"]
    path = DATA / f"{family}.pt"
    torch.save(fixture, path)
    top = scores.max().item()
    print(f"{family:22s} {sum(p.numel() for p in params.values()):>10,} params  top score {top:.3f}  "
          f"{path.stat().st_size / 1024:.0f} KB")
    return path


def record_runner_checkpoint(family: str) -> None:
    """A checkpoint laid out as mmengine's Runner saves one, around the weights of `family`'s fixture."""
    from mmaction2_cases import load_fixture

    state = mmaction2_state(load_fixture(family))
    hub = MessageHub.get_instance("record_mmaction2")
    for it, loss in enumerate((2.5, 2.1, 1.8)):
        hub.update_scalar("train/loss", loss)
        hub.update_scalar("train/lr", 0.01 * (it + 1))
    hub.update_info("eta", np.float64(12.5))
    hub.update_info("epoch", 1)
    params = [nn.Parameter(v.clone()) for v in state.values() if v.is_floating_point()]
    optimizer = torch.optim.SGD(params, lr=0.01, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 1)
    checkpoint = {"meta": {"epoch": 1, "iter": 3, "seed": 0, "experiment_name": "record_mmaction2",
                           "mmengine_version": mmengine.__version__, "dataset_meta": {"num_classes": 400},
                           "cfg": Config.fromfile(CONFIGS / f"{CASES[family].config}.py").pretty_text[:2000]},
                  "state_dict": state, "message_hub": hub.state_dict(), "optimizer": optimizer.state_dict(),
                  "param_schedulers": [scheduler.state_dict()]}
    save_checkpoint(checkpoint, str(RUNNER_CHECKPOINT))
    print(f"{RUNNER_CHECKPOINT.name}: {sorted(checkpoint)}, {RUNNER_CHECKPOINT.stat().st_size / 1024:.0f} KB")


def record_shapes() -> None:
    """Every family's MMAction2 model at full size (the config as it is): parameter count, state-dict names and
    shapes."""
    out = {}
    for family, case in CASES.items():
        with torch.device("meta"):
            model = MODELS.build(no_downloads(Config.fromfile(CONFIGS / f"{case.config}.py").model.to_dict()))
        out[family] = {"config": case.config, "params": sum(p.numel() for p in model.parameters()),
                       "state_dict": [[k, list(v.shape)] for k, v in model.state_dict().items()]}
    with gzip.open(FULL_SIZE, "wt", encoding="utf-8") as f:
        json.dump(out, f)
    print(f"{FULL_SIZE.name}: {len(out)} models, {FULL_SIZE.stat().st_size / 1024:.0f} KB")


def main(families: list[str]) -> None:
    register_all_modules()
    torch.set_grad_enabled(False)
    DATA.mkdir(parents=True, exist_ok=True)
    for family in families or list(CASES):
        record(family, CASES[family])
    if not families:
        record_runner_checkpoint("timesformer_spaceonly")
        record_shapes()


if __name__ == "__main__":
    main(sys.argv[1:])
