"""Spatio-temporal action detection (AVA style): a 3D backbone, then per person box RoIAlign over the temporally
pooled feature map and a multi-label sigmoid classifier (MMAction2's SingleRoIExtractor3D + BBoxHeadAVA).

Boxes come as `rois` [K, 5] = (clip index in the batch, x1, y1, x2, y2) in input pixels; the feature map's
stride is read off the shapes, so any backbone that keeps a spatial map (SlowOnly with res5 unstrided, S3D, ...)
fits. Classes are the actions only: a box with no positive class is background (all-zero target).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import roi_align


class RoIHead(nn.Module):
    """feature map [B, C, T, H, W] + rois [K, 5] -> action logits [K, num_classes]."""

    def __init__(self, in_channels: int, num_classes: int, output_size: int = 8, sampling_ratio: int = 0,
                 temporal_pool: str = "avg", spatial_pool: str = "max", dropout_ratio: float = 0.5,
                 init_std: float = 0.01):
        super().__init__()
        if temporal_pool not in ("avg", "max") or spatial_pool not in ("avg", "max"):
            raise ValueError("temporal_pool and spatial_pool must be 'avg' or 'max'")
        self.num_classes, self.output_size, self.sampling_ratio = num_classes, output_size, sampling_ratio
        self.temporal_pool, self.spatial_pool = temporal_pool, spatial_pool
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc_cls.weight, 0, init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def pool(self, feat: torch.Tensor, rois: torch.Tensor, input_size: int) -> torch.Tensor:
        """Per-box features [K, C]."""
        x = feat.mean(2) if self.temporal_pool == "avg" else feat.amax(2)
        r = roi_align(x, rois.to(x.dtype), self.output_size, spatial_scale=x.shape[-1] / input_size,
                      sampling_ratio=self.sampling_ratio, aligned=True)
        return r.mean((2, 3)) if self.spatial_pool == "avg" else r.amax((2, 3))

    def forward(self, feat: torch.Tensor, rois: torch.Tensor, input_size: int) -> torch.Tensor:
        return self.fc_cls(self.dropout(self.pool(feat, rois, input_size)))


class AVADetector(nn.Module):
    """Clips [B, C, T, H, W] and rois [K, 5] -> logits [K, num_classes] (sigmoid for scores)."""

    def __init__(self, backbone: nn.Module, roi_head: nn.Module):
        super().__init__()
        self.backbone, self.roi_head = backbone, roi_head

    @property
    def num_classes(self) -> int:
        return self.roi_head.num_classes

    def forward(self, clips: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return self.roi_head(self.backbone(clips), rois, clips.shape[-1])

    def predict(self, clips: torch.Tensor, rois: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self(clips, rois))


def multilabel_loss(logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
    """Binary cross-entropy over every (box, class), averaged."""
    return F.binary_cross_entropy_with_logits(logits, targets.float())
