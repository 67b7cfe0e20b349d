"""Attention Motion Flow (AMF): where each patch of frame i attends to in frame j.

Pure functions of the post-RoPE queries and keys of a video's tokens, streamed by one kernel (kernel.py) in
memory linear in N, over the whole frame or a local `Window` (window.py; fast mode). Soft mode is attention
whose values are the key patches' coordinates, with a softmax per key frame, in a custom autograd function:
PyTorch's fused CPU SDPA kernel needs value width == query width, so coordinates would have to be padded to
heads·head_dim (one more N²·heads·head_dim matmul forward, two more backward, [frames, N, heads·head_dim]
buffers). `ditflow.amf.reference` is the paper-style oracle of tests and benchmarks.
"""
from __future__ import annotations

import torch

from .kernel import best_patches, expected_positions, joint_heads, peak_probabilities
from .window import Grid, Window, patch_coordinates, window_mask

__all__ = ["Grid", "Window", "attention_confidence", "attention_motion_flow", "patch_coordinates", "window_mask"]


def _check_inputs(q: torch.Tensor, k: torch.Tensor, grid: Grid, chunk: int) -> None:
    if q.ndim != 3 or q.shape != k.shape:
        raise ValueError(f"q and k must both be [heads, N, head_dim], got {tuple(q.shape)} and {tuple(k.shape)}")
    f, h, w = grid
    if f * h * w != q.shape[1]:
        raise ValueError(f"grid {grid} has {f * h * w} patches but q/k have {q.shape[1]} tokens")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")


def _layout(per_query: torch.Tensor, grid: Grid) -> torch.Tensor:
    """[N, F_key, ...] in query order -> [F_query, F_key, P, ...]."""
    f, h, w = grid
    return per_query.view(f, h * w, f, *per_query.shape[2:]).transpose(1, 2)


def _displacement(target: torch.Tensor, coords: torch.Tensor, grid: Grid) -> torch.Tensor:
    """Key positions [N, F_key, 2] -> displacements from each query's position [F_query, F_key, P, 2]."""
    return _layout(target, grid) - coords.view(1, 1, -1, 2)


def attention_motion_flow(
    q: torch.Tensor,
    k: torch.Tensor,
    grid: Grid,
    temperature: float = 2.0,
    mode: str = "argmax",
    chunk: int = 2048,
    window: Window | None = None,
) -> torch.Tensor:
    """AMF of one video from the post-RoPE queries and keys of its video tokens.

    q, k: [heads, N, head_dim] with N = frames*h*w in (frame, row, column) order.
    grid: (frames, h, w) in patches.
    Returns [frames, frames, h*w, 2]: entry [i, j, p] is the (dx, dy) displacement, in patches, from patch p
    of frame i to where it attends in frame j. logits = mean over heads of q·kᵀ/√d; for each key frame j,
    soft mode takes the softmax over frame j's patches of temperature·logits and returns the expected key
    position minus the query position (differentiable); argmax mode returns the position of the largest
    logit minus the query position (no gradient; temperature cannot change an argmax).
    window: only the key patches and frames it reaches count (None: the whole frame); frame pairs out of reach
    are zero displacement (`window_mask` marks the others). A window that covers the grid is the full AMF.
    chunk: query rows processed at a time; memory beyond q and k is O(chunk·N), whatever the mode.
    Soft mode returns q.dtype but computes its softmax and sums in float32 or wider; argmax returns float32.
    """
    _check_inputs(q, k, grid, chunk)
    if mode not in ("soft", "argmax"):
        raise ValueError(f"unknown AMF mode {mode!r}: use 'soft' or 'argmax'")
    window = None if window is None else window.for_grid(grid)
    _, h, w = grid
    qj, kj, scale = joint_heads(q, k)
    if mode == "soft":
        # softmax and coordinate sums in float32 at least, even for half-precision q/k
        coords = patch_coordinates(h, w, device=q.device, dtype=torch.promote_types(q.dtype, torch.float32))
        expected = expected_positions(qj, kj, coords, grid, window, scale * temperature, chunk)
        return _displacement(expected, coords, grid).to(q.dtype)
    coords = patch_coordinates(h, w, device=q.device)
    return _displacement(coords[best_patches(qj, kj, coords, grid, window, chunk)], coords, grid)


@torch.no_grad()
def attention_confidence(q: torch.Tensor, k: torch.Tensor, grid: Grid, temperature: float = 2.0,
                         chunk: int = 2048, window: Window | None = None) -> torch.Tensor:
    """How sharply each patch attends into each frame: [frames, frames, h*w], entry [i, j, p] the largest
    probability of the softmax (as soft mode takes it, inside `window`) of patch p of frame i over frame j's
    patches; 0 for frame pairs out of the window's reach.

    Near 1/(h*w) where the attention is flat (plain background, whose argmax is arbitrary), near 1 where it
    picks one patch (a distinct object): a weight for the AMF loss. q, k: [heads, N, head_dim].
    """
    _check_inputs(q, k, grid, chunk)
    window = None if window is None else window.for_grid(grid)
    qj, kj, scale = joint_heads(q, k)
    coords = patch_coordinates(grid[1], grid[2], device=q.device)
    return _layout(peak_probabilities(qj, kj, coords, grid, window, scale * temperature, chunk), grid).contiguous()
