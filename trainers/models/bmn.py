"""BMN, the boundary-matching network (Lin et al., ICCV 2019), on feature sequences [B, C, T].

Temporal positions are anchors at times i / (T - 1) of the video (i = 0..T-1). A proposal starts at anchor s and
lasts d + 1 anchor steps (d = 0..D-1, ending at s + d + 1 <= T - 1); its confidence is read at map cell [d, s].

- base module: two grouped 1D convolutions shared by both branches;
- temporal evaluation module: per-anchor start and end probabilities;
- proposal evaluation module: the boundary-matching layer samples every proposal's extended span
  [s - r*L, e + r*L] (r = boundary_ratio, L = e - s) at num_samples bins of num_samples_per_bin points with a
  fixed sparse-as-dense matrix, then 3D and 2D convolutions give two maps (classification, regression) [2, D, T].
Losses: weighted binary logistic loss for start/end (TEM), MSE on the regression map with IoU-stratified sampling
and weighted BCE on the classification map (PEM); total = tem + 10 * reg + cls.
"""
from __future__ import annotations

import numpy as np
import torch
from torch import nn


def boundary_matching_mask(tscale: int, dscale: int, num_samples: int, per_bin: int, ratio: float) -> torch.Tensor:
    """[T, num_samples * D * T] weights: x [B, C, T] @ mask -> the sampled features of every proposal."""
    mask = np.zeros((tscale, num_samples, dscale, tscale), np.float32)
    d, s = np.meshgrid(np.arange(dscale), np.arange(tscale), indexing="ij")        # [D, T]
    ok = s + d + 1 <= tscale - 1
    d, s = d[ok], s[ok]
    length = d + 1.0
    lo, hi = s - ratio * length, s + length + ratio * length
    n = num_samples * per_bin
    points = lo[:, None] + (hi - lo)[:, None] * (np.arange(n) + 0.5)[None, :] / n   # [K, n]
    left = np.floor(points).astype(int)
    frac = points - left
    bins = np.broadcast_to(np.arange(n) // per_bin, points.shape)
    dd, ss = np.broadcast_to(d[:, None], points.shape), np.broadcast_to(s[:, None], points.shape)
    for idx, w in ((left, 1 - frac), (left + 1, frac)):
        inside = (idx >= 0) & (idx < tscale)
        np.add.at(mask, (idx[inside], bins[inside], dd[inside], ss[inside]), w[inside] / per_bin)
    return torch.from_numpy(mask.reshape(tscale, -1))


def valid_map(tscale: int, dscale: int) -> torch.Tensor:
    """[D, T] booleans: the proposal [s, s + d + 1] ends inside the video."""
    d = torch.arange(dscale)[:, None]
    s = torch.arange(tscale)[None, :]
    return s + d + 1 <= tscale - 1


class BMN(nn.Module):
    """Features [B, feat_dim, T] -> (confidence map [B, 2, D, T], start [B, T], end [B, T])."""

    def __init__(self, temporal_dim: int = 100, max_duration: int | None = None, boundary_ratio: float = 0.5,
                 num_samples: int = 32, num_samples_per_bin: int = 3, feat_dim: int = 400, hidden_dim_1d: int = 256,
                 hidden_dim_2d: int = 128, hidden_dim_3d: int = 512, groups: int = 4,
                 soft_nms_alpha: float = 0.4, soft_nms_low_threshold: float = 0.5,
                 soft_nms_high_threshold: float = 0.9, post_process_top_k: int = 100):
        super().__init__()
        if temporal_dim < 3:
            raise ValueError(f"temporal_dim must be >= 3, got {temporal_dim}")
        self.tscale, self.dscale = temporal_dim, max_duration or temporal_dim
        self.feat_dim, self.num_samples = feat_dim, num_samples
        self.post = dict(alpha=soft_nms_alpha, low=soft_nms_low_threshold, high=soft_nms_high_threshold,
                         top_k=post_process_top_k)
        h1, h2, h3 = hidden_dim_1d, hidden_dim_2d, hidden_dim_3d

        def conv1d(cin: int, cout: int, k: int = 3, g: int = 1) -> nn.Sequential:
            return nn.Sequential(nn.Conv1d(cin, cout, k, padding=k // 2, groups=g), nn.ReLU(inplace=True))

        self.base = nn.Sequential(conv1d(feat_dim, h1, 3, groups), conv1d(h1, h1, 3, groups))
        self.start = nn.Sequential(conv1d(h1, h1, 3, groups), nn.Conv1d(h1, 1, 1), nn.Sigmoid())
        self.end = nn.Sequential(conv1d(h1, h1, 3, groups), nn.Conv1d(h1, 1, 1), nn.Sigmoid())
        self.proposal_1d = conv1d(h1, h2, 3)
        self.proposal_3d = nn.Sequential(nn.Conv3d(h2, h3, (num_samples, 1, 1), stride=(num_samples, 1, 1)),
                                         nn.ReLU(inplace=True))
        self.proposal_2d = nn.Sequential(
            nn.Conv2d(h3, h2, 1), nn.ReLU(inplace=True),
            nn.Conv2d(h2, h2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(h2, h2, 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(h2, 2, 1), nn.Sigmoid())
        self.register_buffer("sample_mask", boundary_matching_mask(self.tscale, self.dscale, num_samples,
                                                                   num_samples_per_bin, boundary_ratio),
                             persistent=False)
        self.register_buffer("valid", valid_map(self.tscale, self.dscale), persistent=False)

    def boundary_matching(self, x: torch.Tensor) -> torch.Tensor:
        """[B, C, T] -> [B, C, num_samples, D, T]."""
        b, c, t = x.shape
        return (x @ self.sample_mask).reshape(b, c, self.num_samples, self.dscale, self.tscale)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if x.shape[1:] != (self.feat_dim, self.tscale):
            raise ValueError(f"BMN wants features [B, {self.feat_dim}, {self.tscale}], got {list(x.shape)}")
        base = self.base(x)
        start, end = self.start(base).squeeze(1), self.end(base).squeeze(1)
        p = self.boundary_matching(self.proposal_1d(base))
        conf = self.proposal_2d(self.proposal_3d(p).squeeze(2))
        return conf, start, end


# --- targets and losses -------------------------------------------------------------------------------------------

def bmn_targets(segments: list[np.ndarray], tscale: int, dscale: int) -> tuple[torch.Tensor, ...]:
    """Per video, ground-truth segments as fractions of the duration [G, 2] -> (IoU map [B, D, T], start [B, T],
    end [B, T]). Boundary labels are the anchor's largest overlap ratio with a region 3 anchor steps wide
    around a true boundary; the map holds each proposal's best IoU with a true segment."""
    gap = 1.0 / (tscale - 1)
    anchors = np.arange(tscale) * gap
    a_lo, a_hi = anchors - gap / 2, anchors + gap / 2
    s_idx = np.arange(tscale)[None, :]
    d_idx = np.arange(dscale)[:, None]
    p_lo, p_hi = s_idx * gap + 0 * d_idx, (s_idx + d_idx + 1) * gap
    maps, starts, ends = [], [], []
    for seg in segments:
        seg = np.asarray(seg, float).reshape(-1, 2)
        iou = np.zeros((dscale, tscale))
        st, en = np.zeros(tscale), np.zeros(tscale)
        for lo, hi in seg:
            inter = np.clip(np.minimum(p_hi, hi) - np.maximum(p_lo, lo), 0, None)
            iou = np.maximum(iou, inter / np.maximum(p_hi - p_lo + (hi - lo) - inter, 1e-9))
            for edge, out in ((lo, st), (hi, en)):
                r_lo, r_hi = edge - 1.5 * gap, edge + 1.5 * gap
                ioa = np.clip(np.minimum(a_hi, r_hi) - np.maximum(a_lo, r_lo), 0, None) / gap
                np.maximum(out, ioa, out=out)
        maps.append(iou)
        starts.append(st)
        ends.append(en)
    as_t = lambda x: torch.as_tensor(np.stack(x), dtype=torch.float32)  # noqa: E731
    return as_t(maps), as_t(starts), as_t(ends)


def binary_logistic_loss(pred: torch.Tensor, gt: torch.Tensor, threshold: float = 0.5,
                         mask: torch.Tensor | None = None) -> torch.Tensor:
    """BCE with positives (gt > threshold) and negatives weighted to balance their counts."""
    mask = torch.ones_like(gt) if mask is None else mask.float()
    pos = (gt > threshold).float() * mask
    n, n_pos = mask.sum(), pos.sum()
    ratio = n / n_pos.clamp(min=1)
    w_pos = 0.5 * ratio
    w_neg = 0.5 * ratio / (ratio - 1).clamp(min=1e-6)
    eps = 1e-6
    loss = w_pos * pos * torch.log(pred + eps) + w_neg * (mask - pos) * torch.log(1 - pred + eps)
    return -loss.sum() / n.clamp(min=1)


def regression_loss(pred: torch.Tensor, gt: torch.Tensor, mask: torch.Tensor, generator: torch.Generator | None = None
                    ) -> torch.Tensor:
    """MSE over all high-IoU (> 0.7) cells plus as many medium (0.3..0.7) and low (< 0.3) cells, drawn at random."""
    mask = mask.float()
    high = (gt > 0.7).float() * mask
    mid = ((gt > 0.3) & (gt <= 0.7)).float() * mask
    low = (gt <= 0.3).float() * mask
    n_high = high.sum()
    keep = high.clone()
    for part in (mid, low):
        r = n_high / part.sum().clamp(min=1)
        keep = keep + part * (torch.rand(part.shape, generator=generator, device=part.device) < r).float()
    return 0.5 * ((pred - gt) ** 2 * keep).sum() / keep.sum().clamp(min=1)


def bmn_loss(outputs: tuple[torch.Tensor, torch.Tensor, torch.Tensor], targets: tuple[torch.Tensor, ...],
             valid: torch.Tensor) -> dict[str, torch.Tensor]:
    """{'tem', 'reg', 'cls', 'loss' = tem + 10 reg + cls}."""
    conf, start, end = outputs
    iou_map, gt_start, gt_end = targets
    mask = valid.expand_as(iou_map)
    tem = binary_logistic_loss(start, gt_start) + binary_logistic_loss(end, gt_end)
    reg = regression_loss(conf[:, 1], iou_map, mask)
    cls = binary_logistic_loss(conf[:, 0], iou_map, threshold=0.9, mask=mask)
    return {"tem": tem, "reg": reg, "cls": cls, "loss": tem + 10 * reg + cls}
