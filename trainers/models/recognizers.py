"""Recognizers: backbone + head, with the input layouts and multi-view averaging of MMAction2.

Every recognizer takes a batch of clips shaped [N, V, C, T, H, W]: V views (clips x crops), C channels,
T frames. 2D recognizers fold the T frames of a view into segments (TSN consensus); 3D recognizers feed the
whole [C, T, H, W] volume to the backbone.
"""
from __future__ import annotations

import torch
from torch import nn

AVERAGE_CLIPS = ("prob", "score")


class Recognizer(nn.Module):
    def __init__(self, backbone: nn.Module, cls_head: nn.Module, average_clips: str = "prob"):
        super().__init__()
        if average_clips not in AVERAGE_CLIPS:
            raise ValueError(f"average_clips must be one of {AVERAGE_CLIPS}, got {average_clips!r}")
        self.backbone, self.cls_head, self.average_clips = backbone, cls_head, average_clips

    @property
    def num_classes(self) -> int:
        return self.cls_head.num_classes

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Penultimate embeddings, one per view: [N*V, D]."""
        raise NotImplementedError

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits per view, [N*V, num_classes] (V is 1 in training)."""
        return self.cls_head.classify(self.embed(x))

    def predict(self, x: torch.Tensor) -> torch.Tensor:
        """Class scores per clip [N, num_classes], views averaged as `average_clips` says."""
        n, v = x.shape[:2]
        logits = self(x).reshape(n, v, -1)
        if self.average_clips == "prob":
            return logits.softmax(dim=-1).mean(dim=1)
        return logits.mean(dim=1)


class Recognizer2D(Recognizer):
    """Frames of each view go through a 2D backbone one by one; the head averages them (consensus)."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        n, v, c, t, h, w = x.shape
        frames = x.permute(0, 1, 3, 2, 4, 5).reshape(n * v * t, c, h, w)
        return self.cls_head.pool(self.backbone(frames), num_segs=t)


class Recognizer3D(Recognizer):
    """Each view's [C, T, H, W] volume goes through a 3D (or video transformer) backbone."""

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        n, v = x.shape[:2]
        return self.cls_head.pool(self.backbone(x.reshape(n * v, *x.shape[2:])))
