"""The streaming AMF kernel, for the whole frame and for a local window alike.

Every function walks `query_blocks`: a block of query rows against the key frames it reaches, one
[rows, keys] logit buffer at a time, so neither the per-head map [heads, N, N] nor the joint map [N, N] is
ever held. Heads enter folded into one query/key of width heads·head_dim (`joint_heads`). Without a window
the blocks are plain query chunks over every key and nothing is masked. Entries of frame pairs out of reach
hold the query's own patch (zero displacement) or zero confidence.
"""
from __future__ import annotations

import math

import torch

from .window import Grid, Window, query_blocks


def joint_heads(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """[heads, N, d] -> [N, heads*d] each, and the scale that makes q·k the head-mean of q_h·k_h/√d (the mean
    over heads of dot products is one dot product over the concatenated head dims)."""
    heads, n, d = q.shape
    qj = q.transpose(0, 1).reshape(n, heads * d)
    kj = k.transpose(0, 1).reshape(n, heads * d)
    return qj, kj, 1.0 / (heads * math.sqrt(d))


def _mask_outside(logits: torch.Tensor, keep: torch.Tensor | None) -> torch.Tensor:
    """logits [c, F, P] with the key patches `keep` [c, P] leaves out set to -inf, in place."""
    if keep is not None:
        logits.masked_fill_(~keep[:, None, :], float("-inf"))
    return logits


def _frame_softmax(qc: torch.Tensor, kf: torch.Tensor, p: int, alpha: float, dtype: torch.dtype,
                  keep: torch.Tensor | None = None) -> torch.Tensor:
    """softmax over each key frame's patches of alpha·(qc·kfᵀ), qc [c, D], kf [F·P, D]: [c, F, P] in `dtype`,
    computed in place; with `keep` [c, P] bool only over the patches it marks."""
    logits = torch.mm(qc, kf.T).view(qc.shape[0], -1, p).to(dtype)  # no copy when already `dtype`
    logits.mul_(alpha)
    _mask_outside(logits, keep)
    logits -= logits.amax(dim=-1, keepdim=True)
    logits.exp_()
    logits /= logits.sum(dim=-1, keepdim=True)
    return logits


def _logit_grad(g: torch.Tensor, expected: torch.Tensor, prob: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The gradient of the logits [c, F, P] from that of the expected positions g [c, F, 2]: d expected / d logit_b
    = prob_b * (coord_b - expected), contracted with g. Zero where prob is (outside the window)."""
    dlogit = torch.matmul(g, coords.T)  # [c, F, P]
    dlogit -= (g * expected).sum(dim=-1, keepdim=True)
    dlogit *= prob
    return dlogit


def _own_positions(coords: torch.Tensor, f: int) -> torch.Tensor:
    """[N, F, 2]: every query's own position for every key frame (what entries out of reach hold)."""
    return coords.repeat(f, 1)[:, None, :].expand(f * coords.shape[0], f, 2).clone()


class _SoftFlow(torch.autograd.Function):
    """Expected key position per (query, key frame), streamed over blocks like flash attention: forward keeps
    only qj, kj and the [N, F, 2] result; backward recomputes each block's softmax instead of storing it. The
    softmax and the coordinate sums run in coords.dtype (float32 or wider)."""

    @staticmethod
    def forward(ctx, qj, kj, coords, grid, window, alpha, chunk):
        p = coords.shape[0]
        out = _own_positions(coords, grid[0])
        for b in query_blocks(grid, window, chunk, coords):
            prob = _frame_softmax(qj[b.rows], kj[b.keys], p, alpha, coords.dtype, b.keep)
            out[b.rows, b.frames] = torch.matmul(prob, coords)
        ctx.save_for_backward(qj, kj, coords, out)
        ctx.grid, ctx.window, ctx.alpha, ctx.chunk = grid, window, alpha, chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qj, kj, coords, out = ctx.saved_tensors
        p, alpha = coords.shape[0], ctx.alpha
        grad_out = grad_out.to(coords.dtype)
        dq = torch.empty_like(qj) if ctx.needs_input_grad[0] else None  # every row lies in one block
        dk = torch.zeros_like(kj) if ctx.needs_input_grad[1] else None
        for b in query_blocks(ctx.grid, ctx.window, ctx.chunk, coords):
            kf = kj[b.keys]
            prob = _frame_softmax(qj[b.rows], kf, p, alpha, coords.dtype, b.keep)  # [c, F, P]
            dlogit = _logit_grad(grad_out[b.rows, b.frames], out[b.rows, b.frames], prob, coords)
            del prob  # one [chunk, keys] buffer at a time
            dlogit = dlogit.view(dlogit.shape[0], -1).to(qj.dtype)
            if dq is not None:
                torch.mm(dlogit, kf, out=dq[b.rows])
            if dk is not None:
                dk[b.keys].addmm_(dlogit.T, qj[b.rows])
        if dq is not None:
            dq.mul_(alpha)
        if dk is not None:
            dk.mul_(alpha)
        return dq, dk, None, None, None, None, None


def expected_positions(qj: torch.Tensor, kj: torch.Tensor, coords: torch.Tensor, grid: Grid, window: Window | None,
                       alpha: float, chunk: int) -> torch.Tensor:
    """[N, F, 2]: per query and key frame, the key position expected under the softmax of alpha·logits over
    that frame's patches (inside the window); differentiable in qj and kj [N, D]. coords: [P, 2]."""
    return _SoftFlow.apply(qj, kj, coords, grid, window, alpha, chunk)


@torch.no_grad()
def best_patches(qj: torch.Tensor, kj: torch.Tensor, coords: torch.Tensor, grid: Grid, window: Window | None,
                 chunk: int) -> torch.Tensor:
    """[N, F] long: per query and key frame, the patch of the largest logit (inside the window); out of reach,
    the query's own patch. The positive scale of the logits cannot change an argmax, so it is left out."""
    f, p = grid[0], coords.shape[0]
    best = torch.arange(p, device=qj.device).repeat(f)[:, None].expand(f * p, f).clone()
    for b in query_blocks(grid, window, chunk, coords):
        logits = torch.mm(qj[b.rows], kj[b.keys].T).view(-1, b.frames.stop - b.frames.start, p)
        best[b.rows, b.frames] = _mask_outside(logits, b.keep).argmax(dim=-1)
    return best


@torch.no_grad()
def peak_probabilities(qj: torch.Tensor, kj: torch.Tensor, coords: torch.Tensor, grid: Grid, window: Window | None,
                       alpha: float, chunk: int) -> torch.Tensor:
    """[N, F] float32: per query and key frame, the largest probability of the softmax `expected_positions`
    takes; 0 out of reach."""
    out = torch.zeros(qj.shape[0], grid[0], dtype=torch.float32, device=qj.device)
    for b in query_blocks(grid, window, chunk, coords):
        prob = _frame_softmax(qj[b.rows], kj[b.keys], coords.shape[0], alpha, torch.float32, b.keep)
        out[b.rows, b.frames] = prob.amax(dim=-1)
    return out
