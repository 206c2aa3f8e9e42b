"""S3D and S3D-G: Inception-v1 in 3D with every k x k x k convolution separated into 1 x k x k (space) then
k x 1 x 1 (time), optionally with feature gating (S3D-G).

Feature gating multiplies each channel of a branch output by sigmoid(W · mean_thw(x) + b), a learned C x C
context gate; S3D-G gates the stem's last conv and all four branches of every Inception block. With gating off
the network is torchvision's `s3d` layer for layer (8,320,048 parameters with a 400-class head, so
`load_torchvision_s3d` can copy its weights); gating adds sum(C*C + C) over the gated outputs (+1.23M at
full width). `width` scales every channel count for small models.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import torch
from torch import nn

from trainers.models.resnet2d import he_init

# Inception-v1 (GoogLeNet) widths: branch0 1x1, branch1 reduce -> 3x3, branch2 reduce -> 3x3, branch3 pool -> 1x1.
MIXED = OrderedDict([
    ("mixed_3b", (64, 96, 128, 16, 32, 32)), ("mixed_3c", (128, 128, 192, 32, 96, 64)),
    ("mixed_4b", (192, 96, 208, 16, 48, 64)), ("mixed_4c", (160, 112, 224, 24, 64, 64)),
    ("mixed_4d", (128, 128, 256, 24, 64, 64)), ("mixed_4e", (112, 144, 288, 32, 64, 64)),
    ("mixed_4f", (256, 160, 320, 32, 128, 128)),
    ("mixed_5b", (256, 160, 320, 32, 128, 128)), ("mixed_5c", (384, 192, 384, 48, 128, 128)),
])
POOL_BEFORE = {"mixed_4b": dict(kernel_size=3, stride=2, padding=1), "mixed_5b": dict(kernel_size=2, stride=2)}


def conv_bn_relu(cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), padding=(0, 0, 0)) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, padding, bias=False),
                         nn.BatchNorm3d(cout, eps=1e-3), nn.ReLU(inplace=True))


class SepConv3d(nn.Sequential):
    """k x k x k as a spatial 1 x k x k conv (+BN+ReLU) followed by a temporal k x 1 x 1 conv (+BN+ReLU)."""

    def __init__(self, cin: int, cout: int, k: int, stride: int = 1):
        super().__init__(conv_bn_relu(cin, cout, (1, k, k), (1, stride, stride), (0, k // 2, k // 2)),
                         conv_bn_relu(cout, cout, (k, 1, 1), (stride, 1, 1), (k // 2, 0, 0)))


class SelfGating(nn.Module):
    """x * sigmoid(fc(mean over T, H, W of x)), per channel."""

    def __init__(self, channels: int):
        super().__init__()
        self.fc = nn.Linear(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.sigmoid(self.fc(x.mean(dim=(2, 3, 4))))[:, :, None, None, None]


class SepInception(nn.Module):
    def __init__(self, cin: int, widths: tuple[int, ...], gating: bool):
        super().__init__()
        b0, b1r, b1, b2r, b2, b3 = widths
        self.branch0 = conv_bn_relu(cin, b0)
        self.branch1 = nn.Sequential(conv_bn_relu(cin, b1r), SepConv3d(b1r, b1, 3))
        self.branch2 = nn.Sequential(conv_bn_relu(cin, b2r), SepConv3d(b2r, b2, 3))
        self.branch3 = nn.Sequential(nn.MaxPool3d(3, stride=1, padding=1), conv_bn_relu(cin, b3))
        self.gates = nn.ModuleList(SelfGating(c) for c in (b0, b1, b2, b3)) if gating else None
        self.out_channels = b0 + b1 + b2 + b3

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        outs = [self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)]
        if self.gates is not None:
            outs = [gate(o) for gate, o in zip(self.gates, outs)]
        return torch.cat(outs, dim=1)


class S3D(nn.Module):
    """Clips [B, C, T, H, W] -> features [B, 1024*width, T/8, H/32, W/32]."""

    def __init__(self, in_channels: int = 3, width: float = 1.0, gating: bool = False):
        super().__init__()
        if width <= 0:
            raise ValueError(f"width must be positive, got {width}")

        def w(c: int) -> int:
            return max(1, round(c * width))

        layers = OrderedDict([
            ("conv1", SepConv3d(in_channels, w(64), 7, stride=2)),
            ("pool1", nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))),
            ("conv2", conv_bn_relu(w(64), w(64))),
            ("conv3", SepConv3d(w(64), w(192), 3)),
        ])
        if gating:
            layers["conv3_gate"] = SelfGating(w(192))
        layers["pool2"] = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))
        cin = w(192)
        for name, widths in MIXED.items():
            if name in POOL_BEFORE:
                layers[f"pool_{name[-2:]}"] = nn.MaxPool3d(**POOL_BEFORE[name])
            layers[name] = SepInception(cin, tuple(w(c) for c in widths), gating)
            cin = layers[name].out_channels
        self.features = nn.Sequential(layers)
        self.out_channels = cin
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.features(x)


def load_torchvision_s3d(model: S3D, path: str | Path) -> list[str]:
    """Copy a local torchvision `s3d` state dict (weights_only) into a full-width S3D; returns keys left as they were.

    The two networks register the same tensors in the same order, so they are paired by position (shapes
    checked); gating parameters (S3D-G) and torchvision's classifier have no counterpart.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    theirs = [(k, v) for k, v in state.items() if k.startswith("features.")]
    ours = [k for k in model.state_dict() if ".gates." not in k and "_gate." not in k]
    if len(theirs) != len(ours):
        raise ValueError(f"{path}: {len(theirs)} feature tensors, this S3D has {len(ours)} (width must be 1)")
    own = model.state_dict()
    mapped = {}
    for (tk, tv), ok in zip(theirs, ours):
        if tv.shape != own[ok].shape:
            raise ValueError(f"{path}: {tk} {tuple(tv.shape)} does not fit {ok} {tuple(own[ok].shape)}")
        mapped[ok] = tv
    model.load_state_dict(mapped, strict=False)
    return sorted(set(own) - set(mapped))
