"""ViViT, factorised encoder (the paper's Model 2): a spatial ViT per tubelet slice, then a temporal transformer.

Tubelet embedding: a (tubelet_size, p, p) strided 3D conv turns the clip into T/tubelet_size slices of
(H/p)*(W/p) tokens. Each slice, with its own cls token and spatial position embedding, goes through
`num_layers` spatial blocks; the slice cls tokens (plus a temporal cls token and temporal position embedding)
go through `temporal_layers` temporal blocks, whose cls token is the clip embedding — late temporal fusion.
ViViT-B FE (K400): 32 frames, tubelet 2x16x16, 12 spatial + 4 temporal layers, width 768, 115.0M parameters
with a 400-class head. The spatial blocks carry timm's ViT names, so `load_vit_weights` initialises them (and the
2D patch kernel, inflated over the tubelet) from a local ImageNet ViT; the temporal encoder starts random.
"""
from __future__ import annotations

import logging

import torch
from torch import nn

from trainers.models.transformer import (
    Block,
    PatchEmbed,
    drop_path_rates,
    load_vit_weights,
    resize_pos_embed,
    resize_time_embed,
)

log = logging.getLogger(__name__)


class ViViT(nn.Module):
    """Clips [B, C, T, H, W] -> temporal cls embedding [B, embed_dims]."""

    def __init__(self, num_frames: int = 32, img_size: int = 224, patch_size: int = 16, tubelet_size: int = 2,
                 in_channels: int = 3, embed_dims: int = 768, num_layers: int = 12, temporal_layers: int = 4,
                 num_heads: int = 12, mlp_ratio: float = 4.0, drop_path_rate: float = 0.0,
                 pretrained: str | None = None):
        super().__init__()
        if num_frames % tubelet_size or img_size % patch_size:
            raise ValueError(f"num_frames {num_frames} / img_size {img_size} must be multiples of tubelet_size "
                             f"{tubelet_size} / patch_size {patch_size}")
        self.out_channels = embed_dims
        grid, slices = img_size // patch_size, num_frames // tubelet_size
        self.patch_embed = PatchEmbed(in_channels, embed_dims, patch_size, tubelet_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.pos_embed = nn.Parameter(torch.zeros(1, 1 + grid ** 2, embed_dims))
        self.blocks = nn.ModuleList(Block(embed_dims, num_heads, mlp_ratio, p)
                                    for p in drop_path_rates(drop_path_rate, num_layers))
        self.norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self.temporal_cls_token = nn.Parameter(torch.zeros(1, 1, embed_dims))
        self.temporal_pos_embed = nn.Parameter(torch.zeros(1, 1 + slices, embed_dims))
        self.temporal_blocks = nn.ModuleList(Block(embed_dims, num_heads, mlp_ratio, p)
                                             for p in drop_path_rates(drop_path_rate, temporal_layers))
        self.temporal_norm = nn.LayerNorm(embed_dims, eps=1e-6)
        self._init_weights()
        if pretrained:
            log.info("ViViT: loaded %s: %s", pretrained, load_vit_weights(self, pretrained))

    def _init_weights(self) -> None:
        for p in (self.pos_embed, self.cls_token, self.temporal_pos_embed, self.temporal_cls_token):
            nn.init.trunc_normal_(p, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.trunc_normal_(m.weight, std=0.02)
                nn.init.zeros_(m.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        tokens = self.patch_embed(x)                                        # [B, T', N, D]
        b, t, n, d = tokens.shape
        patch = self.patch_embed.patch_size
        pos = resize_pos_embed(self.pos_embed, (x.shape[3] // patch, x.shape[4] // patch))
        cls = (self.cls_token + pos[:, :1]).expand(b * t, 1, d)
        seq = torch.cat([cls, tokens.reshape(b * t, n, d) + pos[:, 1:]], dim=1)
        for blk in self.blocks:
            seq = blk(seq)
        slices = self.norm(seq)[:, 0].reshape(b, t, d)                      # one token per tubelet slice
        tpos = torch.cat([self.temporal_pos_embed[:, :1], resize_time_embed(self.temporal_pos_embed[:, 1:], t)], 1)
        seq = torch.cat([self.temporal_cls_token.expand(b, 1, d), slices], dim=1) + tpos
        for blk in self.temporal_blocks:
            seq = blk(seq)
        return self.temporal_norm(seq)[:, 0]
