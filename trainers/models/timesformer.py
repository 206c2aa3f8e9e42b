"""TimeSformer: ViT over the patches of every frame, with three ways of attending across space and time.

`attention_type`:
* `divided_space_time` — each block first attends over time (the T patches at one spatial position, residual
  through `temporal_fc`), then over space (the patches of one frame plus the cls token, whose per-frame results
  are averaged), then the MLP. 12 extra temporal attentions over ViT-B: 121.6M parameters with a 400-class head.
* `joint_space_time` — plain ViT blocks over all T*N patch tokens at once (86.1M).
* `space_only` — ViT on each frame alone; the per-frame cls tokens are averaged, then normalised (86.1M, no time
  modelling; MMAction2's order: the final LayerNorm sees the average).
Parameter names follow timm's ViT (and the original TimeSformer), so `load_vit_weights` fills them from a local
ImageNet ViT-B/16 state dict; for divided attention the temporal attention starts as a copy of the spatial one.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from trainers.models.transformer import (
    Attention,
    Block,
    PatchEmbed,
    drop_path_rates,
    load_vit_weights,
    resize_pos_embed,
    resize_time_embed,
)

ATTENTION_TYPES = ("divided_space_time", "joint_space_time", "space_only")
log = logging.getLogger(__name__)


class DividedBlock(Block):
    """Temporal attention over each spatial position, then spatial attention within each frame, then the MLP."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, drop_path: float = 0.0):
        super().__init__(dim, num_heads, mlp_ratio, drop_path)
        self.temporal_norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.temporal_attn = Attention(dim, num_heads)
        self.temporal_fc = nn.Linear(dim, dim)

    def forward(self, x: torch.Tensor, num_frames: int = 1) -> torch.Tensor:
        cls, patches = x[:, :1], x[:, 1:]
        b, tn, d = patches.shape
        t, n = num_frames, tn // num_frames
        p = patches.reshape(b, t, n, d).transpose(1, 2).reshape(b * n, t, d)
        p = p + self.drop_path(self.temporal_fc(self.temporal_attn(self.temporal_norm1(p))))
        p = p.reshape(b, n, t, d).transpose(1, 2).reshape(b * t, n, d)
        seq = torch.cat([cls.repeat_interleave(t, dim=0), p], dim=1)       # every frame sees the cls token
        res = self.drop_path(self.attn(self.norm1(seq)))
        cls = cls + res[:, :1].reshape(b, t, 1, d).mean(dim=1)
        p = (p + res[:, 1:]).reshape(b, t * n, d)
        x = torch.cat([cls, p], dim=1)
        return x + self.drop_path(self.mlp(self.norm2(x)))


class TimeSformer(nn.Module):
    """Clips [B, C, T, H, W] -> cls embedding [B, embed_dims]."""

    def __init__(self, num_frames: int = 8, img_size: int = 224, patch_size: int = 16, in_channels: int = 3,
                 embed_dims: int = 768, num_layers: int = 12, num_heads: int = 12, mlp_ratio: float = 4.0,
                 attention_type: str = "divided_space_time", drop_path_rate: float = 0.1,
                 pretrained: str | None = None):
        super().__init__()
        if attention_type not in ATTENTION_TYPES:
            raise ValueError(f"attention_type must be one of {ATTENTION_TYPES}, got {attention_type!r}")
        if img_size % patch_size:
            raise ValueError(f"img_size {img_size} is not a multiple of patch_size {patch_size}")
        self.attention_type, self.num_frames, self.out_channels = attention_type, num_frames, embed_dims
        grid = img_size // patch_size
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid ** 2, embed_dims))
        if attention_type != "space_only":
            self.time_embed = nn.Parameter(torch.zeros(1, num_frames, embed_dims))
        block = DividedBlock if attention_type == "divided_space_time" else Block
        self.blocks = nn.ModuleList(block(embed_dims, num_heads, mlp_ratio, p)
                                    for p in drop_path_rates(drop_path_rate, num_layers))
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self._init_weights()
        if pretrained:
            log.info("TimeSformer: loaded %s: %s", pretrained, load_vit_weights(self, pretrained))

    def _init_weights(self) -> None:
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)
            elif isinstance(m, nn.LayerNorm):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        for blk in list(self.blocks)[1:]:   # divided: later blocks start as plain ViT blocks (original TimeSformer)
            if isinstance(blk, DividedBlock):
                nn.init.zeros_(blk.temporal_fc.weight)

    def init_from_spatial(self, loaded: set[str]) -> list[str]:
        """After loading an image ViT: temporal attention/norm copied from the spatial ones where absent."""
        filled = []
        for i, blk in enumerate(self.blocks):
            if isinstance(blk, DividedBlock) and f"blocks.{i}.attn.qkv.weight" in loaded \
                    and f"blocks.{i}.temporal_attn.qkv.weight" not in loaded:
                blk.temporal_attn.load_state_dict(blk.attn.state_dict())
                blk.temporal_norm1.load_state_dict(blk.norm1.state_dict())
                filled += [f"blocks.{i}.temporal_attn.{k}" for k in blk.temporal_attn.state_dict()]
                filled += [f"blocks.{i}.temporal_norm1.{k}" for k in blk.temporal_norm1.state_dict()]
        return filled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)                                        # [B, T, N, D]
        b, t, n, d = tokens.shape
        patch = self.patch_embed.patch_size
        pos = resize_pos_embed(self.pos_embed, (x.shape[3] // patch, x.shape[4] // patch))
        cls = (self.cls_token + pos[:, :1]).expand(b, 1, d)
        tokens = tokens + pos[:, 1:].unsqueeze(1)
        if self.attention_type == "space_only":
            seq = torch.cat([cls.repeat_interleave(t, dim=0), tokens.reshape(b * t, n, d)], dim=1)
            for blk in self.blocks:
                seq = blk(seq)
            return self.norm(seq[:, 0].reshape(b, t, d).mean(dim=1))
        tokens = tokens + resize_time_embed(self.time_embed, t).unsqueeze(2)
        seq = torch.cat([cls, tokens.reshape(b, t * n, d)], dim=1)
        for blk in self.blocks:
            seq = blk(seq, num_frames=t) if isinstance(blk, DividedBlock) else blk(seq)
        return self.norm(seq)[:, 0]
