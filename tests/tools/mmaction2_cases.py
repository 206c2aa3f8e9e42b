"""The MMAction2 fixtures under tests/data/mmaction2: which model each one is, and how its weights are stored.

One case per family of trainers/mmaction2.py: the MMAction2 1.2.0 config, the overrides of its `model` dict that
make it small where the config allows (`mma`), the same change on our side as `curate weights import --set`
assignments (`ours`), and the input in MMAction2's layout. `record_mmaction2.py` (run inside the environment of
`mmaction2_env.sh`) writes `<family>.pt`; tests/test_published.py reads it without MMAction2.

Weights are stored compactly: every float parameter is a seeded draw (`Seeded`: numpy's RandomState, whose
stream is frozen, so any numpy regenerates it bit for bit), the buffers (BatchNorm statistics measured by
MMAction2 on a calibration batch) are stored as they are, and `sha256` (trainers.checkpoint.weights_hash of the
whole state dict) proves the expansion equals what MMAction2 ran.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

DATA = Path(__file__).resolve().parent.parent / "data" / "mmaction2"
RUNNER_CHECKPOINT = DATA / "mmengine_runner_checkpoint.pth"   # a full Runner-style file (message_hub, optimizer)
FULL_SIZE = DATA / "full_size_state_dicts.json.gz"             # family -> config, params, [[key, shape], ...]


@dataclass(frozen=True)
class Case:
    config: str                      # configs/recognition/<config>.py in MMAction2 1.2.0
    mma: dict[str, Any]              # overrides merged into the config's model dict
    ours: tuple[str, ...]            # the same model on our side: `--set` assignments over the bundled config
    input: tuple[int, ...]           # [N, views (x segments for 2D), C, (T,) H, W] as MMAction2's recognizer takes it
    segments: int = 0                # 2D: frames per view (TSN: all of them in one consensus)


def _resnet3d(base: int, head: int, depth: int | None = None) -> tuple[dict[str, Any], tuple[str, ...]]:
    mma: dict[str, Any] = {"backbone": {"base_channels": base}, "cls_head": {"in_channels": head}}
    ours = (f"model.backbone.base_channels={base}",)
    if depth:
        mma["backbone"]["depth"] = depth
        ours += (f"model.backbone.depth={depth}",)
    return mma, ours


TINY_VIT = {"img_size": 32, "patch_size": 8, "embed_dims": 32, "num_heads": 2}
VIT_MMA = {"backbone": {**TINY_VIT, "num_transformer_layers": 2}, "cls_head": {"in_channels": 32}}
VIT_OURS = tuple(f"model.backbone.{k}={v}" for k, v in {**TINY_VIT, "num_layers": 2}.items())
CLIPS = (1, 2, 3, 8, 32, 32)
CASES = {
    # the 2D ResNet of MMAction2 has a fixed width: ResNet-18 is the small one it allows
    "tsn_r50": Case("tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb",
                    {"backbone": {"depth": 18}, "cls_head": {"in_channels": 512}}, ("model.backbone.depth=18",),
                    (1, 3, 3, 32, 32), segments=3),
    "tsm_r50": Case("tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb",
                    {"backbone": {"depth": 18}, "cls_head": {"in_channels": 512}}, ("model.backbone.depth=18",),
                    (1, 16, 3, 32, 32), segments=8),
    "i3d_r50": Case("i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb", *_resnet3d(8, 256), CLIPS),
    "r2plus1d_r34": Case("r2plus1d/r2plus1d_r34_8xb8-32x2x1-180e_kinetics400-rgb", *_resnet3d(8, 64), CLIPS),
    "ircsn_r152": Case("csn/ircsn_ig65m-pretrained-r152_8xb12-32x2x1-58e_kinetics400-rgb",
                       *_resnet3d(8, 256, depth=50), CLIPS),
    "ipcsn_r152": Case("csn/ipcsn_ig65m-pretrained-r152-bnfrozen_32x2x1-58e_kinetics400-rgb",
                       *_resnet3d(8, 256, depth=50), CLIPS),
    "slowonly_r50": Case("slowonly/slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb", *_resnet3d(8, 256),
                         (1, 2, 3, 4, 32, 32)),
    "slowfast_r50": Case("slowfast/slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb",
                         {"backbone": {"slow_pathway": {"base_channels": 16}, "fast_pathway": {"base_channels": 2}},
                          "cls_head": {"in_channels": 576}}, ("model.backbone.base_channels=16",),
                         (1, 2, 3, 32, 32, 32)),
    # X3D's base width is fixed at 24; gamma_w scales it (0.5: 16, rounded to a multiple of 8)
    "x3d_m": Case("x3d/x3d_m_16x5x1_facebook-kinetics400-rgb",
                  {"backbone": {"gamma_w": 0.5}, "cls_head": {"in_channels": 288}}, ("model.backbone.gamma_w=0.5",),
                  CLIPS),
    # C3D's widths are fixed; out_dim (fc6's input) follows a 16x16x16 clip
    "c3d": Case("c3d/c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb", {"backbone": {"out_dim": 512}},
                ("model.backbone.img_size=16",), (1, 2, 3, 16, 16, 16)),
    "timesformer_divst": Case("timesformer/timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb", VIT_MMA, VIT_OURS,
                              CLIPS),
    "timesformer_jointst": Case("timesformer/timesformer_jointST_8xb8-8x32x1-15e_kinetics400-rgb", VIT_MMA,
                                VIT_OURS, CLIPS),
    "timesformer_spaceonly": Case("timesformer/timesformer_spaceOnly_8xb8-8x32x1-15e_kinetics400-rgb", VIT_MMA,
                                  VIT_OURS, CLIPS),
}


def seeded(spec: dict[str, Any]) -> torch.Tensor:
    """mean + std x standard normal draws of RandomState(seed), float32, of the spec's shape."""
    draws = np.random.RandomState(spec["seed"]).standard_normal(spec["shape"])
    return torch.from_numpy((spec["mean"] + spec["std"] * draws).astype(np.float32))


def mmaction2_state(fixture: dict[str, Any]) -> dict[str, torch.Tensor]:
    """The MMAction2 state dict a fixture was recorded with, in MMAction2's key order (hash checked)."""
    from trainers.checkpoint import weights_hash

    state = {k: seeded(fixture["seeded"][k]) if k in fixture["seeded"] else fixture["tensors"][k]
             for k in fixture["keys"]}
    if weights_hash(state, {}) != fixture["sha256"]:
        raise ValueError(f"{fixture['family']}: the expanded weights differ from those recorded (numpy's draws?)")
    return state


def ours_layout(x: torch.Tensor, case: Case) -> torch.Tensor:
    """MMAction2's input as our recognizers take it: [N, V, C, T, H, W] (2D: V views of `segments` frames)."""
    if not case.segments:
        return x
    n, frames = x.shape[:2]
    views = x.reshape(n, frames // case.segments, case.segments, *x.shape[2:])
    return views.permute(0, 1, 3, 2, 4, 5)


def load_fixture(name: str) -> dict[str, Any]:
    return torch.load(DATA / f"{name}.pt", map_location="cpu", weights_only=True)
