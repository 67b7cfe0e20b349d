"""Slow reference AMF, for tests and benchmarks only.

`plain_attention_motion_flow` follows the DiTFlow paper's code step by step: the full per-head attention map
[heads, N, N], its mean over heads, a softmax over each key frame's patches, and a Python loop over every
(query frame, key frame) pair, each pair turned into displacements with [P, P] relative-coordinate maps.
It holds O(heads·N²) memory and is meant to be obviously correct, not fast; `ditflow.amf` is the
implementation to use. Same signature and output layout as `ditflow.amf.attention_motion_flow`.
"""
from __future__ import annotations

import math

import torch


def plain_attention_motion_flow(
    q: torch.Tensor,
    k: torch.Tensor,
    grid: tuple[int, int, int],
    temperature: float = 2.0,
    mode: str = "argmax",
) -> torch.Tensor:
    """[heads, N, head_dim] queries/keys -> [frames, frames, h*w, 2] (dx, dy) displacements, the slow way."""
    if q.ndim != 3 or q.shape != k.shape:
        raise ValueError(f"q and k must both be [heads, N, head_dim], got {tuple(q.shape)} and {tuple(k.shape)}")
    f, h, w = grid
    p = h * w
    if f * p != q.shape[1]:
        raise ValueError(f"grid {grid} has {f * p} patches but q/k have {q.shape[1]} tokens")
    if mode not in ("soft", "argmax"):
        raise ValueError(f"unknown AMF mode {mode!r}: use 'soft' or 'argmax'")

    attn = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])  # [heads, N, N], every head's full map
    attn = attn.mean(dim=0)  # [N, N]
    attn = attn.view(f, p, f, p)  # [frame_i, patch_i, frame_j, patch_j]

    ys, xs = torch.meshgrid(
        torch.arange(h, device=q.device), torch.arange(w, device=q.device), indexing="ij"
    )
    xs, ys = xs.flatten(), ys.flatten()
    if mode == "soft":
        # relative[a, b] = coordinate of key patch b minus coordinate of query patch a
        rel_x = (xs.unsqueeze(0) - xs.unsqueeze(1)).to(q.dtype)
        rel_y = (ys.unsqueeze(0) - ys.unsqueeze(1)).to(q.dtype)

    flows = []
    for i in range(f):
        row = []
        for j in range(f):
            a = attn[i, :, j, :]  # [P, P] logits of frame i's patches over frame j's patches
            if mode == "soft":
                a = torch.softmax(temperature * a, dim=-1)
                row.append(torch.stack([(rel_x * a).sum(dim=1), (rel_y * a).sum(dim=1)], dim=-1))
            else:
                # softmax is monotonic, so the argmax of the logits is the argmax of the per-frame softmax
                match = a.argmax(dim=-1)
                row.append(torch.stack([xs[match] - xs, ys[match] - ys], dim=-1).to(torch.float32))
        flows.append(torch.stack(row))
    return torch.stack(flows)  # [F_query, F_key, P, 2]
