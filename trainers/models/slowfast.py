"""SlowFast: a slow pathway (few frames, full width) and a fast one (alpha times the frames, 1/beta_inv the width)
over the same clip, with lateral connections fast -> slow after the stem and res2..res4.

A lateral is a bias-free `fusion_kernel x 1 x 1` conv with temporal stride alpha (= speed_ratio), widening the
fast features `lateral_infl` times; its output is concatenated onto the slow features, so the first block of
each slow stage takes the extra channels (MMAction2's `ResNet3dSlowFast`, 4x16 defaults: tau 8, alpha 8,
beta_inv 8). Each pathway is a `ResNet3d`; the backbone returns (slow, fast) maps for `SlowFastHead`.
`pretrained` (a local 2D ResNet state dict) is inflated into the slow pathway; the fast one starts from scratch.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

from trainers.models.resnet3d import ResNet3d


class ResNet3dSlowFast(nn.Module):
    """Clips [N, C, T, H, W] -> (slow [N, 32 base, T/tau, H/32, W/32], fast [N, 32 base/beta_inv, T alpha/tau, ...]).

    resample_rate (tau): the slow pathway takes every tau-th frame; speed_ratio (alpha): the fast pathway takes
    alpha times as many (every tau/alpha-th); channel_ratio (beta_inv): fast width = base_channels / beta_inv.
    """

    def __init__(self, depth: int = 50, in_channels: int = 3, base_channels: int = 64, resample_rate: int = 8,
                 speed_ratio: int = 8, channel_ratio: int = 8, fusion_kernel: int = 5, lateral_infl: int = 2,
                 slow_inflate: Sequence[int | Sequence[int]] = (0, 0, 1, 1),
                 fast_conv1_kernel: Sequence[int] = (5, 7, 7), norm_eval: bool = False, pretrained: str | None = None):
        super().__init__()
        if resample_rate % speed_ratio or base_channels % channel_ratio:
            raise ValueError(f"resample_rate ({resample_rate}) must be a multiple of speed_ratio ({speed_ratio}) and "
                             f"base_channels ({base_channels}) of channel_ratio ({channel_ratio})")
        self.resample_rate, self.speed_ratio = resample_rate, speed_ratio
        common = dict(depth=depth, in_channels=in_channels, conv1_stride_t=1, pool1_stride_t=1, with_pool2=False,
                      norm_eval=norm_eval)
        self.fast_path = ResNet3d(base_channels=base_channels // channel_ratio, conv1_kernel=fast_conv1_kernel,
                                  inflate=(1, 1, 1, 1), **common)
        fast_widths = [base_channels // channel_ratio, *self.fast_path.stage_channels[:-1]]
        self.slow_path = ResNet3d(base_channels=base_channels, conv1_kernel=(1, 7, 7), inflate=slow_inflate,
                                  lateral_channels=[c * lateral_infl for c in fast_widths], pretrained=pretrained,
                                  **common)
        self.laterals = nn.ModuleList(
            nn.Conv3d(c, c * lateral_infl, (fusion_kernel, 1, 1), (speed_ratio, 1, 1), (fusion_kernel // 2, 0, 0),
                      bias=False) for c in fast_widths)
        for conv in self.laterals:
            nn.init.kaiming_normal_(conv.weight, mode="fan_out", nonlinearity="relu")
        self.out_channels = self.slow_path.out_channels + self.fast_path.out_channels

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        slow = self.slow_path.stem(x[:, :, ::self.resample_rate])
        fast = self.fast_path.stem(x[:, :, ::self.resample_rate // self.speed_ratio])
        for i, lateral in enumerate(self.laterals):
            slow = self.slow_path.stage(i, torch.cat([slow, lateral(fast)], dim=1))
            fast = self.fast_path.stage(i, fast)
        return slow, fast
