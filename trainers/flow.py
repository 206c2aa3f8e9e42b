"""Optical flow for the flow stream of two-stream models, stored and normalised as MMAction2's flow TSN expects.

TV-L1 (the published two-stream numbers) needs `cv2.optflow`, which only opencv-contrib builds ship; plain
opencv(-python-headless) falls back to Farneback. `flow_method()` says which one this install uses.
Flow is clipped to +-bound pixels and quantised to uint8 as the flow JPEGs of `denseflow` are
(`bound=20`: 128 = no motion), then normalised with mean = std = 128 into the network's input.
"""
from __future__ import annotations

import cv2
import numpy as np

METHODS = ("auto", "tvl1", "farneback")


def tvl1_available() -> bool:
    return hasattr(cv2, "optflow") and hasattr(cv2.optflow, "DualTVL1OpticalFlow_create")


def flow_method(method: str = "auto") -> str:
    """The method that `optical_flow(..., method)` will use: 'tvl1' where OpenCV has it, else 'farneback'."""
    if method not in METHODS:
        raise ValueError(f"flow method must be one of {METHODS}, got {method!r}")
    if method == "tvl1" and not tvl1_available():
        raise RuntimeError("TV-L1 needs cv2.optflow (opencv-contrib-python-headless); this OpenCV has no optflow "
                           "module; use method='farneback' or 'auto'")
    if method == "auto":
        return "tvl1" if tvl1_available() else "farneback"
    return method


def _gray(frames: np.ndarray) -> np.ndarray:
    frames = np.asarray(frames)
    if frames.ndim == 4 and frames.shape[-1] == 3:
        frames = np.stack([cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames])
    if frames.ndim != 3:
        raise ValueError(f"frames must be (T, H, W, 3) RGB or (T, H, W) gray, got shape {frames.shape}")
    if frames.dtype != np.uint8:
        frames = np.clip(frames, 0, 255).astype(np.uint8)
    return frames


def optical_flow(frames: np.ndarray, method: str = "auto") -> np.ndarray:
    """(T, H, W, 3) RGB or (T, H, W) gray frames -> (T-1, H, W, 2) float32 flow (dx, dy) in pixels from t to t+1."""
    gray = _gray(frames)
    if len(gray) < 2:
        raise ValueError(f"optical flow needs at least 2 frames, got {len(gray)}")
    if flow_method(method) == "tvl1":
        tvl1 = cv2.optflow.DualTVL1OpticalFlow_create()
        pairs = (tvl1.calc(a, b, None) for a, b in zip(gray[:-1], gray[1:]))
    else:
        pairs = (cv2.calcOpticalFlowFarneback(a, b, None, pyr_scale=0.5, levels=3, winsize=15, iterations=3,
                                              poly_n=5, poly_sigma=1.2, flags=0)
                 for a, b in zip(gray[:-1], gray[1:]))
    return np.stack(list(pairs)).astype(np.float32)


def quantize_flow(flow: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """Float flow -> uint8, linear over [-bound, bound] (values outside are clipped), as flow JPEGs store it."""
    flow = np.clip(flow, -bound, bound)
    return np.round((flow + bound) * (255.0 / (2 * bound))).astype(np.uint8)


def dequantize_flow(q: np.ndarray, bound: float = 20.0) -> np.ndarray:
    """uint8 flow -> float pixels (the inverse of quantize_flow up to its rounding step of 2*bound/255)."""
    return q.astype(np.float32) * (2 * bound / 255.0) - bound


def flow_stack(frames: np.ndarray, bound: float = 20.0, mean: float = 128.0, std: float = 128.0,
               method: str = "auto") -> np.ndarray:
    """Frames (S, L+1, H, W[, 3]) — S segments of L+1 consecutive frames — -> flow input [2L, S, H, W] float32.

    Channels interleave x and y of the L flow fields (x1, y1, x2, y2, ...), i.e. 10 channels for L=5, the layout
    of MMAction2's NCHW_Flow; segments sit on the time axis so Recognizer2D folds them like RGB frames.
    """
    frames = np.asarray(frames)
    if frames.ndim not in (4, 5) or frames.shape[1] < 2:
        raise ValueError(f"flow_stack wants (segments, clip_len+1, H, W[, 3]) frames, got shape {frames.shape}")
    q = np.stack([quantize_flow(optical_flow(seg, method), bound) for seg in frames])  # [S, L, H, W, 2]
    x = (q.astype(np.float32) - mean) / std
    s, length, h, w, _ = x.shape
    return np.ascontiguousarray(x.transpose(1, 4, 0, 2, 3).reshape(2 * length, s, h, w))
