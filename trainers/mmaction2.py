"""MMAction2 (1.x, and 0.x files of the same models) <-> our bundled models: key names and test-time views.

Each bundled model MMAction2 also has is a `Family`: the MMAction2 1.2.0 config it corresponds to (same
architecture, parameter for parameter), the rules renaming its state dict onto ours (`trainers.keymap`), and that
config's test pipeline as our `data:` knobs, so a converted teacher sees clips as MMAction2 tested it.

The names differ: MMAction2 wraps every conv + norm in a `ConvModule` (`conv1.conv`, `conv1.bn`), TSM's shift
wraps the block's first conv (`conv1.conv.net`), TimeSformer keeps its blocks under `transformer_layers.layers`
with `nn.MultiheadAttention` (`in_proj_weight` is our fused `qkv.weight`). One shape differs: TimeSformer's 2D
patch kernel is our 3D one of time 1 (`Family.squeezed`). Nothing else: the architectures match tensor for tensor
(ip-CSN's BN after the 1x1x1 conv, BN eps 1e-3 in CSN and R(2+1)D, SlowFast's head reading the fast pathway first
and spaceOnly's norm after the frame average are ours too).
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from trainers.keymap import KeyMap, Rule

IMAGENET = {"mean": [123.675, 116.28, 103.53], "std": [58.395, 57.12, 57.375]}
# The K400 3D configs test 10 clips x ThreeCrop 256 of the short-side-256 frame.
THREE_CROP_256 = {"num_clips": 1, "size": 256, "scale": 256, "views": [10, 3], **IMAGENET}

# ConvModule (conv + bn) -> torchvision names; the stem, every block, both SlowFast pathways, (2+1)D convs inside.
RESNET = (
    Rule("{p*}.conv{k}.conv.{t*}", "{p*}.conv{k}.{t*}"),
    Rule("{p*}.conv{k}.bn.{t*}", "{p*}.bn{k}.{t*}"),
    Rule("{p*}.downsample.conv.{t*}", "{p*}.downsample.0.{t*}"),
    Rule("{p*}.downsample.bn.{t*}", "{p*}.downsample.1.{t*}"),
)
TSM = (Rule("backbone.layer{l}.{b}.conv1.conv.net.{t*}", "backbone.layer{l}.{b}.conv1.{t*}"), *RESNET)
CSN_IR = (Rule("{p*}.conv2.0.conv.{t*}", "{p*}.conv2.{t*}"),        # the depthwise 3x3x3 conv
          Rule("{p*}.conv2.0.bn.{t*}", "{p*}.bn2.{t*}"), *RESNET)
CSN_IP = (Rule("{p*}.conv2.0.conv.{t*}", "{p*}.conv2.0.{t*}"),      # 1x1x1 conv + BN, then the depthwise one
          Rule("{p*}.conv2.0.bn.{t*}", "{p*}.conv2.1.{t*}"),
          Rule("{p*}.conv2.1.conv.{t*}", "{p*}.conv2.2.{t*}"),
          Rule("{p*}.conv2.1.bn.{t*}", "{p*}.bn2.{t*}"), *RESNET)
SLOWFAST = (Rule("backbone.slow_path.conv1_lateral.conv.{t*}", "backbone.laterals.0.{t*}"),
            Rule("backbone.slow_path.layer{i}_lateral.conv.{t*}", "backbone.laterals.{i}.{t*}"), *RESNET)
X3D = (
    Rule("backbone.conv1_s.conv.{t*}", "backbone.conv1_s.{t*}"),
    Rule("backbone.{c:conv1_t|conv5}.conv.{t*}", "backbone.{c}.0.0.{t*}"),
    Rule("backbone.{c:conv1_t|conv5}.bn.{t*}", "backbone.{c}.0.1.{t*}"),
    Rule("backbone.layer{s+1}.{b}.conv1.conv.{t*}", "backbone.stages.{s}.{b}.conv1.0.0.{t*}"),
    Rule("backbone.layer{s+1}.{b}.conv1.bn.{t*}", "backbone.stages.{s}.{b}.conv1.0.1.{t*}"),
    Rule("backbone.layer{s+1}.{b}.{c:conv2|conv3|downsample}.conv.{t*}", "backbone.stages.{s}.{b}.{c}.0.{t*}"),
    Rule("backbone.layer{s+1}.{b}.{c:conv2|conv3|downsample}.bn.{t*}", "backbone.stages.{s}.{b}.{c}.1.{t*}"),
    Rule("backbone.layer{s+1}.{b}.se_module.{t*}", "backbone.stages.{s}.{b}.se.{t*}"),
    Rule("cls_head.fc2.{t*}", "cls_head.fc_cls.{t*}"),
)
C3D = (Rule(r"backbone.{c:conv\d[ab]}.conv.{t*}", "backbone.features.{c}.{t*}"),)

LAYER, BLOCK = "backbone.transformer_layers.layers.{i}.", "backbone.blocks.{i}."


def _attention(theirs: str, ours: str) -> tuple[Rule, ...]:
    return (Rule(theirs + "attn.in_proj_weight", ours + "qkv.weight"),
            Rule(theirs + "attn.in_proj_bias", ours + "qkv.bias"),
            Rule(theirs + "attn.out_proj.{t*}", ours + "proj.{t*}"))


TRANSFORMER = (Rule("backbone.patch_embed.projection.{t*}", "backbone.patch_embed.proj.{t*}"),
               Rule(LAYER + "ffns.0.layers.0.0.{t*}", BLOCK + "mlp.fc1.{t*}"),
               Rule(LAYER + "ffns.0.layers.1.{t*}", BLOCK + "mlp.fc2.{t*}"))
DIVIDED = (Rule(LAYER + "attentions.0.norm.{t*}", BLOCK + "temporal_norm1.{t*}"),
           *_attention(LAYER + "attentions.0.", BLOCK + "temporal_attn."),
           Rule(LAYER + "attentions.0.temporal_fc.{t*}", BLOCK + "temporal_fc.{t*}"),
           Rule(LAYER + "attentions.1.norm.{t*}", BLOCK + "norm1.{t*}"),
           *_attention(LAYER + "attentions.1.", BLOCK + "attn."),
           Rule(LAYER + "ffns.0.norm.{t*}", BLOCK + "norm2.{t*}"), *TRANSFORMER)
PLAIN = (*_attention(LAYER + "attentions.0.", BLOCK + "attn."),            # joint space-time, space only
         Rule(LAYER + "norms.{n}.{t*}", BLOCK + "norm{n+1}.{t*}"), *TRANSFORMER)
TIMESFORMER_TEST = {"clip_len": 8, "frame_interval": 32, "num_clips": 1, "size": 224, "scale": 224, "views": [1, 3],
                    "mean": [127.5] * 3, "std": [127.5] * 3}


@dataclass(frozen=True)
class Family:
    config: str                          # configs/recognition/<config>.py in MMAction2 1.2.0
    rules: tuple[Rule, ...]
    test: dict[str, Any]                 # its test pipeline as our data: knobs
    squeezed: tuple[str, ...] = ()       # our keys MMAction2 stores without the time axis (2D patch kernels)
    keymap: KeyMap = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "keymap", KeyMap(self.rules))


FAMILIES: dict[str, Family] = {
    "tsn_r50": Family("tsn/tsn_imagenet-pretrained-r50_8xb32-1x1x3-100e_kinetics400-rgb", RESNET,
                      {"clip_len": 1, "frame_interval": 1, "num_clips": 25, "size": 224, "scale": 256,
                       "views": [1, 10], **IMAGENET}),
    "tsm_r50": Family("tsm/tsm_imagenet-pretrained-r50_8xb16-1x1x8-50e_kinetics400-rgb", TSM,
                      {"clip_len": 1, "frame_interval": 1, "num_clips": 8, "size": 224, "scale": 256,
                       "views": [1, 10], **IMAGENET}),
    "i3d_r50": Family("i3d/i3d_imagenet-pretrained-r50_8xb8-32x2x1-100e_kinetics400-rgb", RESNET,
                      {"clip_len": 32, "frame_interval": 2, **THREE_CROP_256}),
    "r2plus1d_r34": Family("r2plus1d/r2plus1d_r34_8xb8-32x2x1-180e_kinetics400-rgb", RESNET,
                           {"clip_len": 32, "frame_interval": 2, **THREE_CROP_256}),
    "ircsn_r152": Family("csn/ircsn_ig65m-pretrained-r152_8xb12-32x2x1-58e_kinetics400-rgb", CSN_IR,
                         {"clip_len": 32, "frame_interval": 2, **THREE_CROP_256}),
    "ipcsn_r152": Family("csn/ipcsn_ig65m-pretrained-r152-bnfrozen_32x2x1-58e_kinetics400-rgb", CSN_IP,
                         {"clip_len": 32, "frame_interval": 2, **THREE_CROP_256}),
    "slowonly_r50": Family("slowonly/slowonly_r50_8xb16-4x16x1-256e_kinetics400-rgb", RESNET,
                           {"clip_len": 4, "frame_interval": 16, **THREE_CROP_256}),
    "slowfast_r50": Family("slowfast/slowfast_r50_8xb8-4x16x1-256e_kinetics400-rgb", SLOWFAST,
                           {"clip_len": 32, "frame_interval": 2, **THREE_CROP_256}),
    "x3d_m": Family("x3d/x3d_m_16x5x1_facebook-kinetics400-rgb", X3D,
                    {"clip_len": 16, "frame_interval": 5, **THREE_CROP_256,
                     "mean": [114.75] * 3, "std": [57.38] * 3}),
    "c3d": Family("c3d/c3d_sports1m-pretrained_8xb30-16x1x1-45e_ucf101-rgb", C3D,
                  {"clip_len": 16, "frame_interval": 1, "num_clips": 1, "size": 112, "scale": 128, "views": [10, 1],
                   "mean": [104, 117, 128], "std": [1, 1, 1]}),
    "timesformer_divst": Family("timesformer/timesformer_divST_8xb8-8x32x1-15e_kinetics400-rgb", DIVIDED,
                                TIMESFORMER_TEST, ("backbone.patch_embed.proj.weight",)),
    "timesformer_jointst": Family("timesformer/timesformer_jointST_8xb8-8x32x1-15e_kinetics400-rgb", PLAIN,
                                  TIMESFORMER_TEST, ("backbone.patch_embed.proj.weight",)),
    "timesformer_spaceonly": Family("timesformer/timesformer_spaceOnly_8xb8-8x32x1-15e_kinetics400-rgb", PLAIN,
                                    TIMESFORMER_TEST, ("backbone.patch_embed.proj.weight",)),
}


def to_mmaction2(state: Mapping[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    """Our state dict of model `name` under MMAction2's names and shapes (the reverse of `keymap.fit`)."""
    fam = FAMILIES[name]
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        theirs = fam.keymap.to_theirs(key)
        if fam.keymap.to_ours(theirs) != key:
            raise ValueError(f"{name}: {key!r} has no MMAction2 name that maps back to it ({theirs!r})")
        out[theirs] = value.squeeze(2) if key in fam.squeezed else value
    return out
