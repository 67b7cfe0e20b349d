"""FastVMT's loss as pure functions of one block's post-RoPE queries and keys (mayuelala/FastVMT,
diffsynth/pipelines/wan_video.py: `compute_tile_AMF`, `compute_tile_amf_loss`, and the weights built in
`__call__`).

A video's tiled AMF: for every frame pair (i, j) with 0 <= j - i < `pair_distance` (a frame with itself
included, as the peer's `range(i, i + sf)`), each query patch of frame i gets its expected displacement into
frame j. The frame with itself: soft attention over its whole frame. Later frames: the frame is cut into tiles
of `tile` patches; each tile's centre query finds, by soft attention over the whole of frame j, where the tile
went (its soft-argmax, rounded), and every query of the tile then attends only within the `window`×`window`
patches around that spot. Memory stays one frame pair at a time (at most [P, P] logits for P patches a frame,
[P, window²] kept for backward), never the [F·P, F·P] map of the full AMF.

Shapes: q, k [H, N, D] with N = F·h·w in (frame, row, column) order; displacements (dx, dy) in patches, the
convention of ditflow.amf.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from ..amf import patch_coordinates


def pair_weights(pair_distance: int, far_weight: float) -> torch.Tensor:
    """Weight of each frame offset 0..pair_distance-1: linspace(1, far_weight, pair_distance), as the peer's
    np.linspace(1, 0.8, sf). [pair_distance] float32."""
    return torch.linspace(1.0, far_weight, pair_distance, dtype=torch.float64).float()


def frame_pairs(frames: int, pair_distance: int) -> list[tuple[int, int]]:
    """The (i, j) frame pairs, i-major, j from i to min(frames, i + pair_distance) - 1 (the peer's order)."""
    return [(i, j) for i in range(frames) for j in range(i, min(frames, i + pair_distance))]


def pair_weight_vector(frames: int, pair_distance: int, far_weight: float) -> torch.Tensor:
    """[len(frame_pairs)]: each pair's weight by its offset j - i (truncated at the video's end, as the peer's)."""
    w = pair_weights(pair_distance, far_weight)
    return torch.stack([w[j - i] for i, j in frame_pairs(frames, pair_distance)])


def tile_layout(h: int, w: int, tile: tuple[int, int], device=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Tiles of tile=(rows, cols) patches covering an h×w frame (the last row/column of tiles cut short where
    they do not divide it; a tile larger than the frame is the frame). Returns tile_of [h·w] (each patch's
    tile, raster) and centres [T] (the patch index of each tile's centre query: row th//2, col tw//2 within
    the tile, as the peer's `arange(tile_h // 2, h, tile_h)`)."""
    th, tw = min(tile[0], h), min(tile[1], w)
    rows, cols = torch.arange(h, device=device), torch.arange(w, device=device)
    ntw = -(-w // tw)
    tile_of = ((rows // th)[:, None] * ntw + (cols // tw)[None, :]).flatten()

    def centre(n: int, size: int) -> torch.Tensor:
        start = torch.arange(0, n, size, device=device)
        return start + (torch.clamp(n - start, max=size)) // 2

    cy, cx = centre(h, th), centre(w, tw)
    return tile_of, (cy[:, None] * w + cx[None, :]).flatten()


def window_indices(centres: torch.Tensor, h: int, w: int, window: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The window around each centre (x, y) [T, 2] (float patches): `window` patches a side (at most the frame's),
    centred on the rounded centre and shifted, as a whole, to lie inside the frame. Returns idx [T, L] (key
    patch indices, raster within the window), origin [T, 2] (its top-left (x, y)) and local [L, 2] ((x, y)
    of each slot within the window)."""
    lh, lw = min(window, h), min(window, w)
    x0 = (centres[:, 0].round().long() - lw // 2).clamp(0, w - lw)
    y0 = (centres[:, 1].round().long() - lh // 2).clamp(0, h - lh)
    local = patch_coordinates(lh, lw, device=centres.device).long()  # [L, 2]
    idx = (y0[:, None] + local[None, :, 1]) * w + (x0[:, None] + local[None, :, 0])
    return idx, torch.stack([x0, y0], dim=-1), local


def frame_flow(qi: torch.Tensor, kj: torch.Tensor, coords: torch.Tensor, alpha: float) -> torch.Tensor:
    """Soft attention of every query of frame i over the whole of frame j: expected key position minus the
    query's own. qi, kj [P, D]; coords [P, 2]; alpha the logit scale (temperature/√D). Returns [P, 2]."""
    return torch.softmax(alpha * (qi @ kj.T), dim=-1) @ coords - coords


def local_flow(qi: torch.Tensor, kj: torch.Tensor, hw: tuple[int, int], tile: tuple[int, int], window: int,
               alpha: float) -> tuple[torch.Tensor, torch.Tensor]:
    """One later-frame pair: each tile's centre query places the tile's window in frame j (soft-argmax over the
    whole frame, no gradient: the placement is an integer), then each query's soft attention within its tile's
    window gives its expected key position. qi, kj [P, D]. Returns displacements [P, 2] (absolute: the window's
    origin added back) and the window's mean keys [T, L] (each slot's key averaged over D: the window loss)."""
    h, w = hw
    coords = patch_coordinates(h, w, device=qi.device, dtype=torch.promote_types(qi.dtype, torch.float32))
    tile_of, centres = tile_layout(h, w, tile, qi.device)
    with torch.no_grad():
        found = torch.softmax(alpha * (qi[centres] @ kj.T), dim=-1) @ coords  # [T, 2]
    idx, origin, local = window_indices(found, h, w, window)
    logits = (alpha * (qi @ kj.T)).gather(1, idx[tile_of])  # [P, L]: the full row only transiently
    expected = origin[tile_of].to(coords.dtype) + torch.softmax(logits, dim=-1) @ local.to(coords.dtype)
    return expected - coords, kj.mean(dim=-1)[idx]


@dataclass
class TiledAMF:
    """A video's tiled AMF: flows [pairs, P, 2] in `frame_pairs` order, and per query frame the mean keys of
    its later frames' windows [J, T, L] (J = its later frames in reach; None when it has none)."""

    flows: torch.Tensor
    key_means: list[torch.Tensor | None]


def tiled_amf(q: torch.Tensor, k: torch.Tensor, grid: tuple[int, int, int], *, tile: tuple[int, int], window: int,
              pair_distance: int, temperature: float) -> TiledAMF:
    """The tiled AMF of one video (see the module docstring) from q, k [H, N, D]. Heads are averaged first
    (q̄, k̄ [N, D], what the peer's `reshape_qk` means to do); logits τ·q̄·k̄ᵀ/√D. Computed in float32 or wider."""
    f, h, w = grid
    if q.ndim != 3 or q.shape != k.shape or q.shape[1] != f * h * w:
        raise ValueError(f"q and k must be [heads, {f * h * w}, head_dim] for grid {grid}, got {tuple(q.shape)} "
                         f"and {tuple(k.shape)}")
    dtype = torch.promote_types(q.dtype, torch.float32)
    qm = q.to(dtype).mean(dim=0).view(f, h * w, -1)
    km = k.to(dtype).mean(dim=0).view(f, h * w, -1)
    alpha = temperature / math.sqrt(qm.shape[-1])
    coords = patch_coordinates(h, w, device=q.device, dtype=dtype)
    flows, key_means = [], []
    for i in range(f):
        means = []
        for j in range(i, min(f, i + pair_distance)):
            if j == i:
                flows.append(frame_flow(qm[i], km[j], coords, alpha))
            else:
                d, m = local_flow(qm[i], km[j], (h, w), tile, window, alpha)
                flows.append(d)
                means.append(m)
        key_means.append(torch.stack(means) if means else None)
    return TiledAMF(torch.stack(flows), key_means)


def amf_l2(generated: torch.Tensor, reference: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    """The peer's AMF loss: mean over frame pairs of weight × the squared L2 norm of the pair's displacement
    error, summed over its P patches and both coordinates. generated, reference [pairs, P, 2]; weights [pairs]."""
    err = (generated - reference.detach().to(generated.dtype)).pow(2).sum(dim=(1, 2))
    return (weights.to(err) * err).mean()


def window_loss(key_means: list[torch.Tensor | None]) -> torch.Tensor | float:
    """The peer's tracking loss: for each query frame with two or more later frames in reach, the L2 norm over
    the window's slots of the change of its mean keys [J, T, L] from one later frame to the next, averaged
    over tiles and frame steps; then averaged over those query frames (0 when there are none)."""
    per_frame = [(m[1:] - m[:-1]).norm(dim=-1).mean() for m in key_means if m is not None and m.shape[0] > 1]
    return torch.stack(per_frame).mean() if per_frame else 0.0


def fastvmt_loss(generated: TiledAMF, reference: torch.Tensor, weights: torch.Tensor, amf_weight: float,
                 window_weight: float) -> torch.Tensor:
    """amf_weight × amf_l2(generated, reference) + window_weight × the generated video's window loss."""
    return amf_weight * amf_l2(generated.flows, reference, weights) + window_weight * window_loss(generated.key_means)
