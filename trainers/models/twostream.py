"""Two-stream late fusion: an RGB and an optical-flow recognizer whose class scores are summed with weights.

The input is a mapping `{"rgb": [N, V, 3, T, H, W], "flow": [N, V, 2L, S, H, W]}` (flow from `trainers.flow`).
`predict` fuses what each stream's own `predict` returns (views averaged per its `average_clips`), which is
MMAction2's offline fusion of two result files with coefficients 1:1; `fuse_scores` does the same for saved
scores. `forward` returns the weighted sum of per-view logits, so the pair also trains end to end with one
loss; `stream_logits` gives each stream's logits for a loop that supervises the streams separately.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

STREAMS = ("rgb", "flow")


def fuse_scores(scores: Sequence[torch.Tensor], coefficients: Sequence[float],
                apply_softmax: bool = False) -> torch.Tensor:
    """Weighted sum of per-stream class scores [N, classes] (optionally softmaxed first)."""
    if len(scores) != len(coefficients):
        raise ValueError(f"{len(scores)} score sets but {len(coefficients)} coefficients")
    return sum(c * (s.softmax(dim=-1) if apply_softmax else s) for s, c in zip(scores, coefficients))


class TwoStream(nn.Module):
    def __init__(self, rgb: nn.Module, flow: nn.Module, coefficients: Sequence[float] = (1.0, 1.0)):
        super().__init__()
        if len(coefficients) != 2:
            raise ValueError(f"coefficients must be [rgb, flow], got {list(coefficients)}")
        if rgb.num_classes != flow.num_classes:
            raise ValueError(f"streams disagree on num_classes: rgb {rgb.num_classes}, flow {flow.num_classes}")
        self.rgb, self.flow = rgb, flow
        self.coefficients = tuple(float(c) for c in coefficients)

    @property
    def num_classes(self) -> int:
        return self.rgb.num_classes

    def _inputs(self, x: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        if not isinstance(x, Mapping) or any(k not in x for k in STREAMS):
            got = sorted(x) if isinstance(x, Mapping) else type(x).__name__
            raise ValueError(f"TwoStream wants a mapping with keys {list(STREAMS)}, got {got}")
        return x["rgb"], x["flow"]

    def stream_logits(self, x: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        rgb, flow = self._inputs(x)
        return {"rgb": self.rgb(rgb), "flow": self.flow(flow)}

    def embed(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Both streams' penultimate embeddings side by side, [N*V, D_rgb + D_flow]."""
        rgb, flow = self._inputs(x)
        return torch.cat([self.rgb.embed(rgb), self.flow.embed(flow)], dim=1)

    def forward(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused logits per view [N*V, num_classes]."""
        logits = self.stream_logits(x)
        return fuse_scores([logits[k] for k in STREAMS], self.coefficients)

    def predict(self, x: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """Fused class scores per clip [N, num_classes]."""
        rgb, flow = self._inputs(x)
        return fuse_scores([self.rgb.predict(rgb), self.flow.predict(flow)], self.coefficients)
