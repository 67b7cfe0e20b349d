"""Motion fidelity (MF) between point tracks of two videos: pure numpy.

A tracklet is the path of one tracked point, [T, 2] (x, y) in pixels. Two tracklets are compared by
the direction of their frame-to-frame displacements only (speed and position do not matter):

    corr(τ, τ') = 1/(T-1) Σ_t cos(τ[t+1] - τ[t], τ'[t+1] - τ'[t])

with the cosine of a zero displacement (a static step) defined as 0, so static points neither help nor
hurt and never give NaN.

Two ways of turning the [N, M] matrix of corr values into one score:
- ``symmetric`` (the SMM paper, arXiv 2311.17009): ½(mean over generated tracklets of their best corr
  with a reference tracklet + mean over reference tracklets of their best corr with a generated one).
- ``ditflow`` (the DiTFlow paper's evaluation script): mean over generated tracklets of their best corr
  with a reference tracklet. The script subtracts an identity matrix before the max, meant to ignore a
  tracklet's match with itself when a video is scored against itself; this matters only when the matrix
  is square (both trackings kept the same grid points, as CoTracker does). We reproduce that exactly:
  the identity is subtracted when N == M, and not otherwise.
"""
from __future__ import annotations

import numpy as np

from .settings import VARIANTS
STATIC_EPS = 1e-6  # px; a displacement shorter than this counts as no motion (cosine 0)


def unit_displacements(tracks: np.ndarray, eps: float = STATIC_EPS) -> np.ndarray:
    """Frame-to-frame displacement directions: [N, T, 2] -> [N, T-1, 2] unit vectors, zero where static."""
    steps = np.diff(np.asarray(tracks, dtype=np.float64), axis=1)
    norm = np.linalg.norm(steps, axis=-1, keepdims=True)
    return np.where(norm > eps, steps / np.maximum(norm, eps), 0.0)


def tracklet_correlation(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """corr of every pair of tracklets: a [N, T, 2], b [M, T, 2] -> [N, M] in [-1, 1].

    Both must have the same T >= 2. The mean over steps of the per-step cosines is one dot product of the
    flattened unit-displacement sequences, so the [N, M, T] tensor is never built.
    """
    if a.shape[1] != b.shape[1]:
        raise ValueError(f"tracklets must have the same length, got {a.shape[1]} and {b.shape[1]}")
    if a.shape[1] < 2:
        raise ValueError("tracklets need at least 2 frames to have a displacement")
    ua = unit_displacements(a).reshape(len(a), -1)
    ub = unit_displacements(b).reshape(len(b), -1)
    return ua @ ub.T / (a.shape[1] - 1)


def motion_fidelity(generated: np.ndarray, reference: np.ndarray, variant: str = "symmetric") -> float:
    """MF of generated tracks [N, T, 2] against reference tracks [M, T', 2] (see the module docstring).

    Both are truncated to the shorter length. Raises ValueError when either set is empty or too short.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown motion fidelity variant {variant!r}: use one of {', '.join(VARIANTS)}")
    if len(generated) == 0 or len(reference) == 0:
        raise ValueError("no tracklets to compare")
    t = min(generated.shape[1], reference.shape[1])
    corr = tracklet_correlation(generated[:, :t], reference[:, :t])  # [N gen, M ref]
    if variant == "symmetric":
        return float(0.5 * (corr.max(axis=1).mean() + corr.max(axis=0).mean()))
    if corr.shape[0] == corr.shape[1]:
        corr = corr - np.eye(len(corr))
    return float(corr.max(axis=1).mean())
