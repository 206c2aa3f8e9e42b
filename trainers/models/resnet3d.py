"""3D ResNets: I3D (inflated from 2D), SlowOnly, R(2+1)D and CSN share one network with per-block choices.

Which blocks carry a temporal kernel is an `inflate` list per stage (an int applies to every block of the stage;
a tuple names each block, as MMAction2 writes it). `inflate_style` says where the time kernel goes in a
bottleneck: '3x1x1' puts it on the first 1x1 conv (I3D, SlowOnly), '3x3x3' on the middle 3x3 conv (CSN).
`conv_type='2plus1d'` replaces every convolution by a spatial conv, BN+ReLU and a temporal conv (R(2+1)D);
`bottleneck_mode='ir'|'ip'` makes the middle conv depthwise (CSN). `bn_eps` is the BatchNorm epsilon of the
network's own norms (MMAction2 uses 1e-3 for CSN and R(2+1)D; the BN inside a (2+1)D conv keeps 1e-5, as there).
Parameter names follow torchvision's 2D ResNet (`conv1`, `layer1.0.conv2`, `downsample.0`), so
`inflate_2d_weights` maps a 2D state dict key for key.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from trainers.models.resnet2d import DEPTHS, BasicBlock, Bottleneck, NormEval, he_init

Triple = tuple[int, int, int]


class Conv2Plus1d(nn.Module):
    """k_t x k x k as 1 x k x k (Cin -> mid) + BN + ReLU + k_t x 1 x 1 (mid -> Cout), mid chosen so the
    parameter count matches the full 3D conv: mid = 3 Cin Cout k^2 / (Cin k^2 + 3 Cout)."""

    def __init__(self, cin: int, cout: int, kernel: Triple, stride: Triple = (1, 1, 1)):
        super().__init__()
        kt, kh, kw = kernel
        mid = int(3 * cin * cout * kh * kw / (cin * kh * kw + 3 * cout))
        self.conv_s = nn.Conv3d(cin, mid, (1, kh, kw), (1, stride[1], stride[2]), (0, kh // 2, kw // 2), bias=False)
        self.bn_s = nn.BatchNorm3d(mid)
        self.relu = nn.ReLU(inplace=True)
        self.conv_t = nn.Conv3d(mid, cout, (kt, 1, 1), (stride[0], 1, 1), (kt // 2, 0, 0), bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_t(self.relu(self.bn_s(self.conv_s(x))))


def make_conv(cin: int, cout: int, kernel: Triple, stride: Triple = (1, 1, 1), groups: int = 1,
              conv_type: str = "3d") -> nn.Module:
    """A bias-free conv with 'same' padding: plain Conv3d, or the factorised (2+1)D pair."""
    if conv_type == "2plus1d":
        if groups != 1:
            raise ValueError("(2+1)D convolutions are not grouped")
        return Conv2Plus1d(cin, cout, kernel, stride)
    return nn.Conv3d(cin, cout, kernel, stride, tuple(k // 2 for k in kernel), groups=groups, bias=False)


class BasicBlock3d(BasicBlock):
    """Two 3x3x3 convs (1x3x3 when not inflated); the first carries the strides. residual / forward: the 2D
    block's."""
    expansion = 1

    def __init__(self, inplanes: int, planes: int, stride: Triple, downsample: nn.Module | None, inflate: bool,
                 inflate_style: str, conv_type: str, bottleneck_mode: str | None, bn_eps: float):
        nn.Module.__init__(self)
        kt = 3 if inflate else 1
        self.conv1 = make_conv(inplanes, planes, (kt, 3, 3), stride, conv_type=conv_type)
        self.bn1 = nn.BatchNorm3d(planes, eps=bn_eps)
        self.conv2 = make_conv(planes, planes, (kt, 3, 3), conv_type=conv_type)
        self.bn2 = nn.BatchNorm3d(planes, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


class Bottleneck3d(Bottleneck):
    """1x1x1 -> 3x3 -> 1x1x1 (x4 channels). Inflated '3x1x1': the first conv is 3x1x1; '3x3x3': the middle one.
    CSN: the middle conv is depthwise 3x3x3, preceded in 'ip' mode by a 1x1x1 conv and its BN (no ReLU) that keep
    channel interaction; 'ir' drops them. residual / forward: the 2D bottleneck's."""
    expansion = 4

    def __init__(self, inplanes: int, planes: int, stride: Triple, downsample: nn.Module | None, inflate: bool,
                 inflate_style: str, conv_type: str, bottleneck_mode: str | None, bn_eps: float):
        nn.Module.__init__(self)
        kt1 = 3 if inflate and inflate_style == "3x1x1" else 1
        kt2 = 3 if inflate and inflate_style == "3x3x3" else 1
        self.conv1 = make_conv(inplanes, planes, (kt1, 1, 1), conv_type=conv_type)
        self.bn1 = nn.BatchNorm3d(planes, eps=bn_eps)
        if bottleneck_mode is None:
            self.conv2 = make_conv(planes, planes, (kt2, 3, 3), stride, conv_type=conv_type)
        else:
            depthwise = make_conv(planes, planes, (3, 3, 3), stride, groups=planes, conv_type=conv_type)
            self.conv2 = (nn.Sequential(make_conv(planes, planes, (1, 1, 1), conv_type=conv_type),
                                        nn.BatchNorm3d(planes, eps=bn_eps), depthwise)
                          if bottleneck_mode == "ip" else depthwise)
        self.bn2 = nn.BatchNorm3d(planes, eps=bn_eps)
        self.conv3 = make_conv(planes, planes * 4, (1, 1, 1), conv_type=conv_type)
        self.bn3 = nn.BatchNorm3d(planes * 4, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = downsample


def per_block(flags: int | Sequence[int], n: int, where: str) -> list[bool]:
    """An inflate entry for one stage: an int for every block, or one flag per block."""
    if isinstance(flags, int):
        return [bool(flags)] * n
    if len(flags) != n:
        raise ValueError(f"{where}: {len(flags)} flags for a stage of {n} blocks")
    return [bool(f) for f in flags]


class ResNet3d(NormEval):
    """Clips [N, C, T, H, W] -> feature map [N, out_channels, T', H/32, W/32] (no pooling, no classifier).

    Defaults are I3D-R50 (MMAction2 `ResNet3d`): 5x7x7 stem with temporal stride 2, temporal stride 2 in pool1,
    a 2x1x1 max-pool after res2, 3x1x1 kernels in alternate blocks. `lateral_channels` widens the first block of
    each stage for the channels a SlowFast fast pathway concatenates onto this one (see `slowfast.py`).
    """

    def __init__(self, depth: int = 50, in_channels: int = 3, base_channels: int = 64,
                 conv1_kernel: Sequence[int] = (5, 7, 7), conv1_stride_t: int = 2, pool1_stride_t: int = 2,
                 with_pool1: bool = True, with_pool2: bool = True,
                 spatial_strides: Sequence[int] = (1, 2, 2, 2), temporal_strides: Sequence[int] = (1, 1, 1, 1),
                 inflate: Sequence[int | Sequence[int]] = ((1, 1, 1), (1, 0, 1, 0), (1, 0, 1, 0, 1, 0), (0, 1, 0)),
                 inflate_style: str = "3x1x1", conv_type: str = "3d", bottleneck_mode: str | None = None,
                 lateral_channels: Sequence[int] = (0, 0, 0, 0), norm_eval: bool = False,
                 pretrained: str | None = None, zero_init_residual: bool = False, bn_eps: float = 1e-5):
        super().__init__()
        if depth not in DEPTHS:
            raise ValueError(f"ResNet3d depth must be one of {sorted(DEPTHS)}, got {depth}")
        if inflate_style not in ("3x1x1", "3x3x3") or conv_type not in ("3d", "2plus1d"):
            raise ValueError("inflate_style must be '3x1x1' or '3x3x3' and conv_type '3d' or '2plus1d'")
        if bottleneck_mode not in (None, "ir", "ip"):
            raise ValueError(f"bottleneck_mode must be null, 'ir' or 'ip', got {bottleneck_mode!r}")
        kind, layers = DEPTHS[depth]
        block = Bottleneck3d if kind == "bottleneck" else BasicBlock3d
        if bottleneck_mode and block is not Bottleneck3d:
            raise ValueError("CSN bottleneck_mode needs a bottleneck depth (50, 101, 152)")
        for name, seq in (("spatial_strides", spatial_strides), ("temporal_strides", temporal_strides),
                          ("inflate", inflate), ("lateral_channels", lateral_channels)):
            if len(seq) != len(layers):
                raise ValueError(f"{name} needs {len(layers)} entries (one per stage), got {len(seq)}")
        self.norm_eval = norm_eval
        kt, kh, kw = conv1_kernel
        self.conv1 = make_conv(in_channels, base_channels, (kt, kh, kw), (conv1_stride_t, 2, 2), conv_type=conv_type)
        self.bn1 = nn.BatchNorm3d(base_channels, eps=bn_eps)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = (nn.MaxPool3d((1, 3, 3), (pool1_stride_t, 2, 2), (0, 1, 1)) if with_pool1
                        else nn.Identity())
        self.pool2 = nn.MaxPool3d((2, 1, 1), (2, 1, 1)) if with_pool2 else nn.Identity()
        inplanes = base_channels
        self.stage_channels: list[int] = []
        for i, n in enumerate(layers):
            planes = base_channels * 2 ** i
            cin = inplanes + lateral_channels[i]
            stride = (temporal_strides[i], spatial_strides[i], spatial_strides[i])
            down = None
            if stride != (1, 1, 1) or cin != planes * block.expansion:
                down = nn.Sequential(make_conv(cin, planes * block.expansion, (1, 1, 1), stride, conv_type=conv_type),
                                     nn.BatchNorm3d(planes * block.expansion, eps=bn_eps))
            flags = per_block(inflate[i], n, f"inflate[{i}]")
            style = dict(inflate_style=inflate_style, conv_type=conv_type, bottleneck_mode=bottleneck_mode,
                         bn_eps=bn_eps)
            blocks = [block(cin, planes, stride, down, flags[0], **style)]
            inplanes = planes * block.expansion
            blocks += [block(inplanes, planes, (1, 1, 1), None, flags[j], **style) for j in range(1, n)]
            setattr(self, f"layer{i + 1}", nn.Sequential(*blocks))
            self.stage_channels.append(inplanes)
        self.out_channels = inplanes
        self._init_weights(zero_init_residual)
        if pretrained:  # a local 2D ResNet state dict (torchvision's ImageNet file), inflated
            inflate_2d_weights(self, torch.load(pretrained, map_location="cpu", weights_only=True))

    def _init_weights(self, zero_init_residual: bool) -> None:
        he_init(self)
        if zero_init_residual:
            for m in self.modules():
                if isinstance(m, (BasicBlock3d, Bottleneck3d)):
                    nn.init.zeros_(m.bn3.weight if isinstance(m, Bottleneck3d) else m.bn2.weight)

    def stem(self, x: torch.Tensor) -> torch.Tensor:
        return self.maxpool(self.relu(self.bn1(self.conv1(x))))

    def stage(self, i: int, x: torch.Tensor) -> torch.Tensor:
        """Stage i (0-based, res2..res5); the 2x1x1 pool2 follows res2."""
        x = getattr(self, f"layer{i + 1}")(x)
        return self.pool2(x) if i == 0 else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        for i in range(len(self.stage_channels)):
            x = self.stage(i, x)
        return x


def inflate_2d_weights(model: nn.Module, state2d: Mapping[str, torch.Tensor]) -> dict[str, list[str]]:
    """Copy a 2D ResNet state dict (ours or torchvision's) into a 3D one: each k x k kernel is repeated over the
    3D kernel's T time steps and divided by T, so a clip of identical frames gives the 2D activations.

    Convs that also read a SlowFast lateral (more input channels than the 2D kernel) get zero weights for the
    extra channels, so they start as the 2D network. BN statistics copy as they are; the classifier and keys
    without a same-named 3D tensor are left out. Returns the 3D keys that got nothing and the 2D keys not used.
    """
    state2d = state2d.get("state_dict", state2d)
    own = model.state_dict()
    usable, used = {}, set()
    for name, value in state2d.items():
        key = name.removeprefix("module.").removeprefix("backbone.")
        if key not in own:
            continue
        target = own[key]
        if value.dim() == 4 and target.dim() == 5:
            t = target.shape[2]
            value = value.unsqueeze(2).expand(-1, -1, t, -1, -1) / t
            extra = target.shape[1] - value.shape[1]
            if extra > 0:
                value = torch.cat([value, value.new_zeros(value.shape[0], extra, *value.shape[2:])], dim=1)
        if value.shape == target.shape:
            usable[key] = value
            used.add(name)
    model.load_state_dict(usable, strict=False)
    return {"missing": sorted(k for k in set(own) - set(usable) if not k.endswith("num_batches_tracked")),
            "unused": sorted(set(state2d) - used)}


def resnet3d_slowonly(depth: int = 50, in_channels: int = 3, base_channels: int = 64,
                      conv1_kernel: Sequence[int] = (1, 7, 7), inflate: Sequence[int | Sequence[int]] = (0, 0, 1, 1),
                      norm_eval: bool = False, pretrained: str | None = None) -> ResNet3d:
    """SlowOnly (SlowFast's slow pathway alone): 1x7x7 stem, no temporal striding or pool2, 3x1x1 kernels in
    every block of res4 and res5 only."""
    return ResNet3d(depth=depth, in_channels=in_channels, base_channels=base_channels, conv1_kernel=conv1_kernel,
                    conv1_stride_t=1, pool1_stride_t=1, with_pool2=False, inflate=inflate, inflate_style="3x1x1",
                    norm_eval=norm_eval, pretrained=pretrained)


def resnet2plus1d(depth: int = 34, in_channels: int = 3, base_channels: int = 64,
                  conv1_kernel: Sequence[int] = (3, 7, 7), temporal_strides: Sequence[int] = (1, 2, 2, 2),
                  norm_eval: bool = False, bn_eps: float = 1e-5) -> ResNet3d:
    """R(2+1)D (MMAction2 `ResNet2Plus1d`): every conv, stem and shortcuts included, factorised into (2+1)D;
    every block inflated; time halved in res3..res5; no pool2."""
    return ResNet3d(depth=depth, in_channels=in_channels, base_channels=base_channels, conv1_kernel=conv1_kernel,
                    conv1_stride_t=1, pool1_stride_t=1, with_pool2=False, temporal_strides=temporal_strides,
                    inflate=(1, 1, 1, 1), conv_type="2plus1d", norm_eval=norm_eval, bn_eps=bn_eps)


def resnet3d_csn(depth: int = 152, in_channels: int = 3, base_channels: int = 64, bottleneck_mode: str = "ir",
                 conv1_kernel: Sequence[int] = (3, 7, 7), temporal_strides: Sequence[int] = (1, 2, 2, 2),
                 norm_eval: bool = False, bn_eps: float = 1e-5) -> ResNet3d:
    """CSN (MMAction2 `ResNet3dCSN`): bottlenecks with a depthwise 3x3x3 middle conv ('ir', or 'ip' with an
    extra 1x1x1 conv + BN before it), 3x7x7 stem, time halved in res3..res5, no pool2."""
    return ResNet3d(depth=depth, in_channels=in_channels, base_channels=base_channels, conv1_kernel=conv1_kernel,
                    conv1_stride_t=1, pool1_stride_t=1, with_pool2=False, temporal_strides=temporal_strides,
                    inflate=(1, 1, 1, 1), inflate_style="3x3x3", bottleneck_mode=bottleneck_mode,
                    norm_eval=norm_eval, bn_eps=bn_eps)

