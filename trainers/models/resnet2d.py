"""2D ResNets for TSN-style recognizers, any width; parameter names match torchvision so its state dicts load."""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

DEPTHS = {18: ("basic", (2, 2, 2, 2)), 34: ("basic", (3, 4, 6, 3)), 50: ("bottleneck", (3, 4, 6, 3)),
          101: ("bottleneck", (3, 4, 23, 3)), 152: ("bottleneck", (3, 8, 36, 3))}


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        return self.bn2(self.conv2(self.relu(self.bn1(self.conv1(x)))))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        identity = x if self.downsample is None else self.downsample(x)
        return self.relu(self.residual(x) + identity)


class Bottleneck(BasicBlock):
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: int = 1, downsample: nn.Module | None = None):
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample

    def residual(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.bn3(self.conv3(out))


def he_init(model: nn.Module) -> None:
    """torchvision's ResNet init: He-normal (fan_out) convolutions, BatchNorm at weight 1 and bias 0."""
    for m in model.modules():
        if isinstance(m, nn.modules.conv._ConvNd):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
        elif isinstance(m, nn.modules.batchnorm._BatchNorm):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class NormEval(nn.Module):
    """A backbone whose BatchNorm statistics stay frozen while it trains when `norm_eval` is set (MMAction2's
    norm_eval, for fine-tuning from pretrained weights with small batches)."""

    norm_eval: bool = False

    def train(self, mode: bool = True) -> "NormEval":
        super().train(mode)
        if mode and self.norm_eval:
            for m in self.modules():
                if isinstance(m, nn.modules.batchnorm._BatchNorm):
                    m.eval()
        return self


class ResNet2d(NormEval):
    """Images [N, C, H, W] -> feature map [N, out_channels, H/32, W/32] (no pooling, no classifier)."""

    def __init__(self, depth: int = 50, in_channels: int = 3, base_channels: int = 64,
                 pretrained: str | None = None, norm_eval: bool = False,
                 block_wrapper: Callable[[nn.Module], nn.Module] | None = None):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet depth must be one of {sorted(DEPTHS)}, got {depth}")
        kind, layers = DEPTHS[depth]
        block = Bottleneck if kind == "bottleneck" else BasicBlock
        self.norm_eval = norm_eval
        self.conv1 = nn.Conv2d(in_channels, base_channels, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(base_channels)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        inplanes = base_channels
        for i, n in enumerate(layers):
            planes = base_channels * 2 ** i
            stride = 1 if i == 0 else 2
            down = None
            if stride != 1 or inplanes != planes * block.expansion:
                down = nn.Sequential(nn.Conv2d(inplanes, planes * block.expansion, 1, stride, bias=False),
                                     nn.BatchNorm2d(planes * block.expansion))
            blocks = [block(inplanes, planes, stride, down)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes) for _ in range(1, n)]
            if block_wrapper is not None:
                blocks = [block_wrapper(b) for b in blocks]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
        self.out_channels = inplanes
        he_init(self)
        if pretrained:
            load_2d_weights(self, pretrained)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def load_2d_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load a local torchvision ImageNet state dict (weights_only); conv1 is averaged/repeated for other channel counts.

    Returns the keys that were missing from the file and the file keys that were not used, so callers can report them.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    state = state.get("state_dict", state) if isinstance(state, dict) else state
    own = model.state_dict()
    usable = {}
    for k, v in state.items():
        k = k.removeprefix("module.").removeprefix("backbone.")
        if k not in own:
            continue
        if k == "conv1.weight" and v.shape[1] != own[k].shape[1]:  # e.g. 10-channel optical flow input
            v = v.mean(dim=1, keepdim=True).repeat(1, own[k].shape[1], 1, 1)
        if v.shape == own[k].shape:
            usable[k] = v
    model.load_state_dict(usable, strict=False)
    return {"missing": sorted(set(own) - set(usable)), "unused": sorted(set(state) - set(usable))}


def resnet2d(depth: int = 50, **kwargs) -> ResNet2d:
    """TSN's backbone: a 2D ResNet of the given depth (base_channels=64 is the published width)."""
    return ResNet2d(depth=depth, **kwargs)
