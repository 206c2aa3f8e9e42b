"""Classification heads. Each head splits into pool(features) -> embedding and classify(embedding) -> logits."""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn


class ClsHead(nn.Module):
    """Dropout + linear classifier over an embedding; subclasses define how features become the embedding."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.5, init_std: float = 0.01):
        super().__init__()
        self.num_classes, self.in_channels = num_classes, in_channels
        self.dropout = nn.Dropout(dropout_ratio) if dropout_ratio > 0 else nn.Identity()
        self.fc_cls = nn.Linear(in_channels, num_classes)
        nn.init.normal_(self.fc_cls.weight, 0, init_std)
        nn.init.zeros_(self.fc_cls.bias)

    def pool(self, feat, num_segs: int = 1) -> torch.Tensor:
        raise NotImplementedError

    def classify(self, emb: torch.Tensor) -> torch.Tensor:
        return self.fc_cls(self.dropout(emb))

    def forward(self, feat, num_segs: int = 1) -> torch.Tensor:
        return self.classify(self.pool(feat, num_segs))


class TSNHead(ClsHead):
    """2D features [N*segs, C, h, w] -> spatial average -> average consensus over segments -> [N, C]."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.4, init_std: float = 0.01,
                 spatial_type: str = "avg", consensus: str = "avg"):
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)
        if spatial_type not in ("avg", None) or consensus not in ("avg",):
            raise ValueError("TSNHead supports spatial_type 'avg' and consensus 'avg'")
        self.spatial_type = spatial_type

    def pool(self, feat: torch.Tensor, num_segs: int = 1) -> torch.Tensor:
        if feat.dim() == 4 and self.spatial_type == "avg":
            feat = feat.mean(dim=(2, 3))
        return feat.reshape(-1, num_segs, feat.shape[-1]).mean(dim=1)


class I3DHead(ClsHead):
    """3D features [N, C, t, h, w] (or already pooled [N, C]) -> global average -> [N, C].

    `pool_kernel` [kt, kh, kw] averages windows of that size at stride 1 first, then the windows (torchvision's
    S3D head: (2, 7, 7), which weighs the first and last time steps less once t > 2); a side longer than the
    features is cut to their size."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.5, init_std: float = 0.01,
                 spatial_type: str | None = "avg", pool_kernel: Sequence[int] | None = None):
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)
        self.spatial_type = spatial_type
        self.pool_kernel = tuple(pool_kernel) if pool_kernel else None

    def pool(self, feat: torch.Tensor, num_segs: int = 1) -> torch.Tensor:
        if feat.dim() == 2:
            return feat
        if self.pool_kernel:
            feat = F.avg_pool3d(feat, tuple(min(k, s) for k, s in zip(self.pool_kernel, feat.shape[2:])), stride=1)
        return feat.flatten(2).mean(dim=2)


class SlowFastHead(ClsHead):
    """(slow, fast) 3D feature maps -> each globally averaged -> concatenated fast first, [N, C_fast + C_slow]
    (MMAction2's order, so its classifiers load column for column)."""

    def pool(self, feat: tuple[torch.Tensor, torch.Tensor], num_segs: int = 1) -> torch.Tensor:
        slow, fast = feat
        return torch.cat([fast.flatten(2).mean(dim=2), slow.flatten(2).mean(dim=2)], dim=1)


class TransformerHead(ClsHead):
    """Transformer backbones already return one token per clip [N, D]; the head is dropout + linear."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.0, init_std: float = 0.02):
        super().__init__(num_classes, in_channels, dropout_ratio, init_std)

    def pool(self, feat: torch.Tensor, num_segs: int = 1) -> torch.Tensor:
        return feat


class TSMHead(TSNHead):
    """TSNHead with TSM's defaults (dropout 0.5, init_std 0.001). MMAction2's TSMHead averages per-segment logits;
    the classifier is linear, so at test time that equals TSNHead's average-then-classify and the pooling is shared."""

    def __init__(self, num_classes: int, in_channels: int, dropout_ratio: float = 0.5, init_std: float = 0.001,
                 spatial_type: str = "avg", consensus: str = "avg"):
        super().__init__(num_classes, in_channels, dropout_ratio, init_std, spatial_type, consensus)
