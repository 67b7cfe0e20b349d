"""What the eval tests share: textured videos LK can track (their fixtures, `offline` and `tiny_clip`, are in
conftest.py)."""
from __future__ import annotations

import numpy as np

GRID = 12  # points per side: plenty for 96×96 videos, fast


def texture(seed: int, size: int = 160) -> np.ndarray:
    """Smooth random RGB texture, uint8 [size, size, 3]: corners everywhere for LK."""
    import cv2

    noise = np.random.default_rng(seed).uniform(0, 255, (size, size, 3)).astype(np.float32)
    return np.clip(cv2.GaussianBlur(noise, (0, 0), 1.5) * 2 - 128, 0, 255).astype(np.uint8)


def moving(seed: int, vx: float, vy: float, frames: int = 8, size: int = 96) -> np.ndarray:
    """A texture translated by (vx, vy) px per frame, cropped from a larger canvas so no border enters."""
    import cv2

    tex = texture(seed)
    c = (tex.shape[0] - size) // 2
    shift = lambda t: np.float32([[1, 0, vx * t], [0, 1, vy * t]])  # noqa: E731
    return np.stack([cv2.warpAffine(tex, shift(t), tex.shape[1::-1], flags=cv2.INTER_LINEAR)[c:c + size, c:c + size] for t in range(frames)])
