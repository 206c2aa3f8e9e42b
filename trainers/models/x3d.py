"""X3D: a small 3D ResNet of depthwise 3x3x3 bottlenecks, expanded from a tiny base along width (gamma_w),
bottleneck width (gamma_b) and depth (gamma_d); X3D-M is gamma_w 1, gamma_b 2.25, gamma_d 2.2 (3.8M parameters
with its head). Frames and resolution, the other two axes, live in the config's `data:` section.

Block: 1x1x1 (expand to gamma_b x width) + BN + ReLU -> depthwise 3x3x3 (spatial stride) + BN -> squeeze-
excitation (every other block with se_style 'half') -> swish -> 1x1x1 (back to width) + BN, plus the shortcut.
Stem: a 1x3x3 spatial conv then a depthwise 5x1x1 temporal conv; after res5 a 1x1x1 conv widens to
gamma_b x the last width. `X3DHead` pools, projects to 2048 with ReLU, then classifies.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from trainers.models.heads import ClsHead
from trainers.models.resnet2d import NormEval, he_init


def round_width(width: float, multiplier: float, divisor: int = 8) -> int:
    """width x multiplier rounded to a multiple of divisor (at least divisor, never more than 10 % below)."""
    width *= multiplier
    rounded = max(divisor, int(width + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * width else rounded


def conv_bn(cin: int, cout: int, kernel=(1, 1, 1), stride=(1, 1, 1), groups: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv3d(cin, cout, kernel, stride, tuple(k // 2 for k in kernel), groups=groups,
                                   bias=False), nn.BatchNorm3d(cout))


class SqueezeExcite(nn.Module):
    """x * sigmoid(fc2(relu(fc1(mean over T, H, W of x)))), hidden width round_width(channels, ratio)."""

    def __init__(self, channels: int, ratio: float):
        super().__init__()
        hidden = round_width(channels, ratio)
        self.fc1 = nn.Conv3d(channels, hidden, 1)
        self.fc2 = nn.Conv3d(hidden, channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = x.mean(dim=(2, 3, 4), keepdim=True)
        return x * torch.sigmoid(self.fc2(torch.relu(self.fc1(w))))


class X3DBlock(nn.Module):
    def __init__(self, cin: int, width: int, mid: int, stride: int, se_ratio: float | None, use_swish: bool):
        super().__init__()
        self.conv1 = nn.Sequential(conv_bn(cin, mid), nn.ReLU(inplace=True))
        self.conv2 = conv_bn(mid, mid, (3, 3, 3), (1, stride, stride), groups=mid)
        self.se = SqueezeExcite(mid, se_ratio) if se_ratio else nn.Identity()
        self.act = nn.SiLU() if use_swish else nn.ReLU(inplace=True)
        self.conv3 = conv_bn(mid, width)
        self.downsample = conv_bn(cin, width, stride=(1, stride, stride)) if stride != 1 or cin != width else None
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        out = self.conv3(self.act(self.se(self.conv2(self.conv1(x)))))
        return self.relu(out + identity)


class X3D(NormEval):
    """Clips [N, C, T, H, W] -> features [N, gamma_b x 8 x base, T, H/32, W/32] (time is never strided)."""

    def __init__(self, gamma_w: float = 1.0, gamma_b: float = 2.25, gamma_d: float = 2.2, in_channels: int = 3,
                 base_channels: int = 24, stage_blocks: tuple[int, ...] = (1, 2, 5, 3), se_style: str = "half",
                 se_ratio: float | None = 1 / 16, use_swish: bool = True, norm_eval: bool = False):
        super().__init__()
        if se_style not in ("half", "all"):
            raise ValueError(f"se_style must be 'half' or 'all', got {se_style!r}")
        self.norm_eval = norm_eval
        base = round_width(base_channels, gamma_w)
        self.conv1_s = nn.Conv3d(in_channels, base, (1, 3, 3), (1, 2, 2), (0, 1, 1), bias=False)
        self.conv1_t = nn.Sequential(conv_bn(base, base, (5, 1, 1), groups=base), nn.ReLU(inplace=True))
        cin, stages = base, []
        for i, n in enumerate(stage_blocks):
            width = base * 2 ** i
            mid = int(width * gamma_b)
            blocks = []
            for j in range(math.ceil(gamma_d * n)):
                se = se_ratio if se_style == "all" or j % 2 == 0 else None
                blocks.append(X3DBlock(cin, width, mid, 2 if j == 0 else 1, se, use_swish))
                cin = width
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.out_channels = int(cin * gamma_b)
        self.conv5 = nn.Sequential(conv_bn(cin, self.out_channels), nn.ReLU(inplace=True))
        he_init(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv5(self.stages(self.conv1_t(self.conv1_s(x))))


class X3DHead(ClsHead):
    """Global average -> fc1 (in_channels -> hidden_channels) + ReLU = the embedding; dropout + linear classify."""

    def __init__(self, num_classes: int, in_channels: int, hidden_channels: int = 2048, dropout_ratio: float = 0.5,
                 init_std: float = 0.01, fc1_bias: bool = False):
        super().__init__(num_classes, hidden_channels, dropout_ratio, init_std)
        self.in_channels = in_channels
        self.fc1 = nn.Linear(in_channels, hidden_channels, bias=fc1_bias)
        nn.init.normal_(self.fc1.weight, 0, init_std)

    def pool(self, feat: torch.Tensor, num_segs: int = 1) -> torch.Tensor:
        return torch.relu(self.fc1(feat.flatten(2).mean(dim=2)))
