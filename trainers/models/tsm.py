"""TSM: a 2D ResNet whose blocks exchange a slice of channels with the neighbouring frames (zero extra parameters).

Features of a view arrive as [N*T, C, H, W] (T = num_segments). In every block, channels [0, C/shift_div) take the
value of the *next* frame (shift back in time), channels [C/shift_div, 2C/shift_div) take the value of the
*previous* frame (shift forward in time), the rest stay; frames shifted in from outside the clip are zeros.
`shift_place='blockres'` shifts only the input of the residual branch (the identity path keeps the unshifted
features, the TSM paper's choice); `'block'` shifts the block's input, identity included.
"""
from __future__ import annotations

import torch
from torch import nn

from trainers.models.resnet2d import ResNet2d

SHIFT_PLACES = ("blockres", "block")


def temporal_shift(x: torch.Tensor, num_segments: int, shift_div: int = 8) -> torch.Tensor:
    """[N*T, C, ...] -> same shape, 1/shift_div channels shifted back and 1/shift_div forward in time, zero-padded."""
    nt, c = x.shape[:2]
    if nt % num_segments:
        raise ValueError(f"temporal shift: {nt} frames is not a multiple of num_segments={num_segments}")
    x = x.reshape(nt // num_segments, num_segments, c, *x.shape[2:])
    fold = c // shift_div
    pad = torch.zeros_like(x[:, :1, :fold])
    back = torch.cat([x[:, 1:, :fold], pad], dim=1)                  # frame t takes frame t+1
    forward = torch.cat([pad, x[:, :-1, fold:2 * fold]], dim=1)      # frame t takes frame t-1
    return torch.cat([back, forward, x[:, :, 2 * fold:]], dim=2).reshape(nt, c, *x.shape[3:])


class TemporalShift(nn.Module):
    """Parameter-free shift, attached to a block as a forward pre-hook so parameter names stay torchvision's."""

    def __init__(self, num_segments: int, shift_div: int, place: str):
        super().__init__()
        self.num_segments, self.shift_div, self.place = num_segments, shift_div, place

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return temporal_shift(x, self.num_segments, self.shift_div)

    def pre_hook(self, _module: nn.Module, args: tuple) -> tuple:
        return (self(args[0]), *args[1:])

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, shift_div={self.shift_div}, place={self.place}"


def resnet_tsm(depth: int = 50, in_channels: int = 3, base_channels: int = 64, num_segments: int = 8,
               shift_div: int = 8, shift_place: str = "blockres", pretrained: str | None = None,
               norm_eval: bool = False) -> ResNet2d:
    """ResNet2d with a temporal shift in every block; `pretrained` (a torchvision state dict) loads unchanged."""
    if shift_place not in SHIFT_PLACES:
        raise ValueError(f"shift_place must be one of {SHIFT_PLACES}, got {shift_place!r}")
    if num_segments < 1 or shift_div < 2:
        raise ValueError(f"need num_segments >= 1 and shift_div >= 2, got {num_segments}, {shift_div}")

    def add_shift(block: nn.Module) -> nn.Module:
        block.temporal_shift = TemporalShift(num_segments, shift_div, shift_place)
        target = block.conv1 if shift_place == "blockres" else block
        target.register_forward_pre_hook(block.temporal_shift.pre_hook)
        return block

    return ResNet2d(depth=depth, in_channels=in_channels, base_channels=base_channels, pretrained=pretrained,
                    norm_eval=norm_eval, block_wrapper=add_shift)
