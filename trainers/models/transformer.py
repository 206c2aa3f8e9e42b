"""Pieces shared by the video transformers (TimeSformer, ViViT): ViT blocks with timm's parameter names, patch
embedding, positional-embedding resizing and loading of a local ViT state dict."""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn


class Attention(nn.Module):
    """Multi-head self-attention over [B, L, D] (fused qkv projection; scaled_dot_product_attention)."""

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True):
        super().__init__()
        if dim % num_heads:
            raise ValueError(f"embed_dims {dim} is not divisible by num_heads {num_heads}")
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, d // self.num_heads).permute(2, 0, 3, 1, 4)
        return self.proj(F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(b, n, d))


class Mlp(nn.Module):
    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(self.act(self.fc1(x)))


class DropPath(nn.Module):
    """Stochastic depth: zero a sample's residual branch with probability p in training (rescaled otherwise)."""

    def __init__(self, p: float = 0.0):
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.dim() - 1)).bernoulli_(1 - self.p)
        return x * keep / (1 - self.p)


class Block(nn.Module):
    """Pre-norm transformer block: x + attn(norm1(x)), then x + mlp(norm2(x))."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, int(dim * mlp_ratio))
        self.drop_path = DropPath(drop_path)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def drop_path_rates(rate: float, depth: int) -> list[float]:
    """Stochastic-depth probability rising linearly from 0 to `rate` over the blocks."""
    return [rate * i / max(depth - 1, 1) for i in range(depth)]


class PatchEmbed(nn.Module):
    """[B, C, T, H, W] -> tokens [B, T/tubelet, (H/p)*(W/p), D] through a (tubelet, p, p) strided conv."""

    def __init__(self, in_channels: int, dim: int, patch_size: int, tubelet_size: int = 1):
        super().__init__()
        self.patch_size, self.tubelet_size = patch_size, tubelet_size
        k = (tubelet_size, patch_size, patch_size)
        self.proj = nn.Conv3d(in_channels, dim, kernel_size=k, stride=k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        t, h, w = x.shape[2:]
        if t % self.tubelet_size or h % self.patch_size or w % self.patch_size:
            raise ValueError(f"input {t}x{h}x{w} is not divisible by tubelet {self.tubelet_size} and patch "
                             f"{self.patch_size}")
        return self.proj(x).flatten(3).permute(0, 2, 3, 1)  # [B, T', H'*W', D]


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], num_prefix: int = 1) -> torch.Tensor:
    """[1, prefix + g*g, D] -> [1, prefix + grid[0]*grid[1], D], bicubic over the square patch grid."""
    prefix, patches = pos[:, :num_prefix], pos[:, num_prefix:]
    side = int(round(patches.shape[1] ** 0.5))
    if (side, side) == tuple(grid):
        return pos
    patches = patches.reshape(1, side, side, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=grid, mode="bicubic", align_corners=False)
    return torch.cat([prefix, patches.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1)], dim=1)


def resize_time_embed(embed: torch.Tensor, length: int) -> torch.Tensor:
    """[1, T, D] -> [1, length, D], linear along time."""
    if embed.shape[1] == length:
        return embed
    return F.interpolate(embed.transpose(1, 2), size=length, mode="linear", align_corners=False).transpose(1, 2)


def load_vit_weights(model: nn.Module, path: str | Path) -> dict[str, list[str]]:
    """Load a local ViT state dict (timm names; weights_only) into a video transformer with the same names.

    A 2D patch kernel is inflated over the tubelet (repeated, divided by its length); pos_embed is resized to
    the model's patch grid and time_embed to its frame count. Returns missing and unused keys for reporting.
    """
    state = torch.load(path, map_location="cpu", weights_only=True)
    for key in ("model", "state_dict"):
        state = state.get(key, state) if isinstance(state, dict) else state
    state = {k.removeprefix("module.").removeprefix("model.").removeprefix("backbone."): v for k, v in state.items()}
    own = model.state_dict()
    usable = {}
    for k, v in state.items():
        if k not in own:
            continue
        target = own[k]
        if k.endswith("patch_embed.proj.weight") and v.dim() == 4 and target.dim() == 5:
            v = v.unsqueeze(2).repeat(1, 1, target.shape[2], 1, 1) / target.shape[2]
        elif k.endswith("pos_embed") and v.shape != target.shape and v.shape[-1] == target.shape[-1]:
            side = int(round((target.shape[1] - 1) ** 0.5))
            v = resize_pos_embed(v, (side, side))
        elif k.endswith("time_embed") and v.shape != target.shape:
            v = resize_time_embed(v, target.shape[1])
        if v.shape == target.shape:
            usable[k] = v
    model.load_state_dict(usable, strict=False)
    filled = model.init_from_spatial(set(usable)) if hasattr(model, "init_from_spatial") else []
    return {"missing": sorted(set(own) - set(usable) - set(filled)), "unused": sorted(set(state) - set(usable))}
