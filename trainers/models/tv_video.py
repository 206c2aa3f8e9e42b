"""torchvision's video classifiers as a bundled backbone: `TorchvisionVideo(arch)` builds
`torchvision.models.video.<arch>` (random weights, nothing downloaded) and takes its classifier off, so a
`Recognizer3D` with an `I3DHead` on top is that network with our recognizer interface (views, embeddings).
`curate weights import --from torchvision` fills both parts from torchvision's published state dict.
"""
from __future__ import annotations

import torch
from torch import nn

# arch -> the classifier module replaced by the identity (mvit's `head` is dropout + linear: both go, the dropout
# moves to our head)
CLASSIFIERS = {"r3d_18": "fc", "mc3_18": "fc", "r2plus1d_18": "fc", "mvit_v1_b": "head", "mvit_v2_s": "head",
               "swin3d_t": "head", "swin3d_s": "head", "swin3d_b": "head"}


class TorchvisionVideo(nn.Module):
    """Clips [N, C, T, H, W] -> torchvision's features before its classifier, [N, out_channels]."""

    def __init__(self, arch: str):
        super().__init__()
        if arch not in CLASSIFIERS:
            raise ValueError(f"arch must be one of {sorted(CLASSIFIERS)}, got {arch!r}")
        from torchvision.models import video

        self.arch = arch
        self.net = getattr(video, arch)()
        linear = [m for m in self.net.get_submodule(CLASSIFIERS[arch]).modules() if isinstance(m, nn.Linear)]
        self.out_channels = linear[-1].in_features
        self.net.set_submodule(CLASSIFIERS[arch], nn.Identity())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)
