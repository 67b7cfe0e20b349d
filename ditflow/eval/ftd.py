"""Fréchet trajectory distance (FTD, RoPECraft's `ftd.py`): the same query points of frame 0 are tracked in the
reference and in the generated video; each point's two trajectories (in frame units: x / W, y / H) are compared
by their discrete Fréchet distance, and the distances are pooled as sqrt(mean(d²)) over the points (all, and,
with a mask, those inside / outside the reference's foreground). 0 is the same motion; lower is better.

The discrete Fréchet distance (Eiter & Mannila, 1994) of two polylines is the shortest leash that lets a walker
on each go from its start to its end, never stepping back, the leash measured at the vertices:

    c(i, j) = max(d(p_i, q_j), min(c(i-1, j), c(i-1, j-1), c(i, j-1))),   F(p, q) = c(len(p)-1, len(q)-1)

It is symmetric, 0 only for the same vertex sequence (up to repeats), and it sees direction: a path walked
backwards is as far as its start is from its end.
"""
from __future__ import annotations

from typing import Any

import numpy as np


def frechet_batch(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Discrete Fréchet distance of matching polylines: a [N, T, D], b [N, T', D] -> [N] (one DP, vectorised over N)."""
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    if a.ndim != 3 or b.ndim != 3 or len(a) != len(b) or a.shape[2] != b.shape[2]:
        raise ValueError(f"expected [N, T, D] and [N, T', D], got {a.shape} and {b.shape}")
    if a.shape[1] == 0 or b.shape[1] == 0:
        raise ValueError("a polyline needs at least one point")
    d = np.linalg.norm(a[:, :, None] - b[:, None, :], axis=-1)  # [N, T, T']
    c = np.empty_like(d)
    c[:, 0] = np.maximum.accumulate(d[:, 0], axis=1)  # first row and column: only one way to get there
    c[:, :, 0] = np.maximum.accumulate(d[:, :, 0], axis=1)
    for i in range(1, d.shape[1]):
        for j in range(1, d.shape[2]):
            reach = np.minimum(np.minimum(c[:, i - 1, j], c[:, i - 1, j - 1]), c[:, i, j - 1])
            c[:, i, j] = np.maximum(reach, d[:, i, j])
    return c[:, -1, -1]


def discrete_frechet(p: np.ndarray, q: np.ndarray) -> float:
    """Discrete Fréchet distance of two polylines p [T, D] and q [T', D]."""
    return float(frechet_batch(np.asarray(p)[None], np.asarray(q)[None])[0])


def pooled(distances: np.ndarray) -> float | None:
    """RoPECraft's pooling of per-point distances [K]: sqrt(mean(d²)); None for no points."""
    return float(np.sqrt(np.mean(np.square(distances)))) if len(distances) else None


def ftd_scores(reference: np.ndarray, generated: np.ndarray, kept: np.ndarray, size: tuple[int, int],
               foreground: np.ndarray | None = None) -> dict[str, Any]:
    """FTD of generated tracks against reference tracks of the same query points.

    reference, generated: float [N, T, 2] (x, y) px, row i the same query point; kept: bool [N], the points
    both trackings kept; size: (height, width) of the frames, to measure in frame units; foreground: bool [N]
    (the query point lies in the reference's mask) or None. Returns {"ftd", "points"} and, with a foreground,
    "ftd_foreground" and "ftd_background" (None where no kept point is on that side).
    """
    h, w = size
    scale = np.array([w, h], np.float64)
    d = frechet_batch(np.asarray(reference)[kept] / scale, np.asarray(generated)[kept] / scale)  # [K]
    out: dict[str, Any] = {"ftd": pooled(d), "points": {"all": int(kept.sum()), "grid": len(kept)}}
    if foreground is not None:
        fg = np.asarray(foreground, bool)[kept]
        out.update(ftd_foreground=pooled(d[fg]), ftd_background=pooled(d[~fg]))
        out["points"].update(foreground=int(fg.sum()), background=int((~fg).sum()))
    return out
