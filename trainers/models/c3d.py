"""C3D: eight 3x3x3 convs (with bias, no BN), five max-pools and two fully connected layers over 16x112x112 clips.

Widths are base_channels x (1, 2, 4, 4, 8, 8, 8, 8) and fc6/fc7 `fc_channels` wide (64 and 4096 published).
fc6's input size is measured from a clip of `clip_len` x `img_size`^2 (8192 at 16x112x112). pool5 rounds up
(ceil_mode), which changes nothing at 16 frames and lets clips of 8 frames (tiny tests) reach fc6.
`with_bn` puts BN after every conv (MMAction2's `norm_cfg`; the published model has none).
"""
from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

WIDTHS = (1, 2, 4, 4, 8, 8, 8, 8)          # conv1a, conv2a, conv3a, conv3b, conv4a, conv4b, conv5a, conv5b
POOL_AFTER = {0: "pool1", 1: "pool2", 3: "pool3", 5: "pool4", 7: "pool5"}


class C3D(nn.Module):
    """Clips [N, C, clip_len, img_size, img_size] -> fc7 features [N, fc_channels]."""

    def __init__(self, in_channels: int = 3, base_channels: int = 64, fc_channels: int = 4096, clip_len: int = 16,
                 img_size: int = 112, dropout_ratio: float = 0.5, init_std: float = 0.005, with_bn: bool = False):
        super().__init__()
        layers: list[tuple[str, nn.Module]] = []
        cin = in_channels
        names = ("conv1a", "conv2a", "conv3a", "conv3b", "conv4a", "conv4b", "conv5a", "conv5b")
        for i, (name, w) in enumerate(zip(names, WIDTHS)):
            layers.append((name, nn.Conv3d(cin, base_channels * w, 3, padding=1, bias=not with_bn)))
            if with_bn:
                layers.append((f"bn{i}", nn.BatchNorm3d(base_channels * w)))
            layers.append((f"relu{i}", nn.ReLU(inplace=True)))
            cin = base_channels * w
            if i == 0:
                layers.append(("pool1", nn.MaxPool3d((1, 2, 2), (1, 2, 2))))
            elif i in POOL_AFTER:
                pad, ceil = ((0, 1, 1), True) if i == 7 else (0, False)
                layers.append((POOL_AFTER[i], nn.MaxPool3d(2, 2, pad, ceil_mode=ceil)))
        self.features = nn.Sequential(OrderedDict(layers))
        with torch.no_grad():
            flat = self.features(torch.zeros(1, in_channels, clip_len, img_size, img_size)).numel()
        self.fc6 = nn.Linear(flat, fc_channels)
        self.fc7 = nn.Linear(fc_channels, fc_channels)
        self.relu = nn.ReLU(inplace=True)
        self.dropout = nn.Dropout(dropout_ratio)
        self.out_channels = fc_channels
        for m in self.modules():
            if isinstance(m, nn.Conv3d):
                nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                if m.bias is not None:
                    nn.init.zeros_(m.bias)
            elif isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, 0, init_std)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.features(x).flatten(1)
        if x.shape[1] != self.fc6.in_features:
            raise ValueError(f"C3D's fc6 was sized for clips of its clip_len x img_size^2 ({self.fc6.in_features} "
                             f"inputs); a {tuple(x.shape[2:])} clip gives {x.shape[1]}: set backbone.clip_len/img_size")
        x = self.dropout(self.relu(self.fc6(x)))
        return self.dropout(self.relu(self.fc7(x)))
