"""Attention Motion Flow (AMF): where each patch of frame i attends to in frame j.

Pure functions of tensors. Neither the per-head map [heads, N, N] nor the joint map [N, N] is ever held:
- the mean over heads of q_h·k_h is one dot product over the concatenated head dims, so all heads fold
  into a single query/key of width heads·head_dim;
- soft mode is attention whose values are the key patches' coordinates with a softmax per key frame. A
  custom autograd function streams it over query chunks like flash attention: forward keeps only q, k and
  the [N, frames, 2] result, backward recomputes each chunk's [chunk, N] softmax. (PyTorch's fused CPU
  SDPA kernel needs value width == query width, so coordinates would have to be padded to heads·head_dim:
  one more N²·heads·head_dim matmul forward, two more backward, and [frames, N, heads·head_dim] buffers.)
- argmax mode streams over query chunks, holding [chunk, N] logits at most.
"""
from __future__ import annotations

import math

import torch

Grid = tuple[int, int, int]  # (frames, h, w) in patches


def patch_coordinates(h: int, w: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(x, y) of every patch of one frame in raster order: [h*w, 2]."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


def _joint_heads(q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, float]:
    """[heads, N, d] -> [N, heads*d] each, and the scale that makes q·k the head-mean of q_h·k_h/√d."""
    heads, n, d = q.shape
    qj = q.transpose(0, 1).reshape(n, heads * d)
    kj = k.transpose(0, 1).reshape(n, heads * d)
    return qj, kj, 1.0 / (heads * math.sqrt(d))


def _check_inputs(q: torch.Tensor, k: torch.Tensor, grid: Grid, chunk: int) -> None:
    if q.ndim != 3 or q.shape != k.shape:
        raise ValueError(f"q and k must both be [heads, N, head_dim], got {tuple(q.shape)} and {tuple(k.shape)}")
    f, h, w = grid
    if f * h * w != q.shape[1]:
        raise ValueError(f"grid {grid} has {f * h * w} patches but q/k have {q.shape[1]} tokens")
    if chunk < 1:
        raise ValueError(f"chunk must be positive, got {chunk}")


def attention_motion_flow(
    q: torch.Tensor,
    k: torch.Tensor,
    grid: Grid,
    temperature: float = 2.0,
    mode: str = "argmax",
    chunk: int = 2048,
) -> torch.Tensor:
    """AMF of one video from the post-RoPE queries and keys of its video tokens.

    q, k: [heads, N, head_dim] with N = frames*h*w in (frame, row, column) order.
    grid: (frames, h, w) in patches.
    Returns [frames, frames, h*w, 2]: entry [i, j, p] is the (dx, dy) displacement, in patches, from patch p
    of frame i to where it attends in frame j. logits = mean over heads of q·kᵀ/√d; for each key frame j,
    soft mode takes the softmax over frame j's patches of temperature·logits and returns the expected key
    position minus the query position (differentiable); argmax mode returns the position of the largest
    logit minus the query position (no gradient; temperature cannot change an argmax).
    chunk: query rows processed at a time; memory beyond q and k is O(chunk·N), whatever the mode.
    Soft mode returns q.dtype but computes its softmax and sums in float32 or wider.
    """
    _check_inputs(q, k, grid, chunk)
    if mode == "soft":
        return _soft_flow(q, k, grid, temperature, chunk)
    if mode == "argmax":
        return _argmax_flow(q, k, grid, chunk)
    raise ValueError(f"unknown AMF mode {mode!r}: use 'soft' or 'argmax'")


def _soft_flow(q: torch.Tensor, k: torch.Tensor, grid: Grid, temperature: float, chunk: int) -> torch.Tensor:
    f, h, w = grid
    p = h * w
    qj, kj, scale = _joint_heads(q, k)
    # softmax and coordinate sums in float32 at least, even for half-precision q/k
    coords = patch_coordinates(h, w, device=q.device, dtype=torch.promote_types(q.dtype, torch.float32))  # [P, 2]
    expected = _SoftFlow.apply(qj, kj, coords, f, p, scale * temperature, chunk)  # [N, F_key, 2]
    return (expected.view(f, p, f, 2).transpose(1, 2) - coords.view(1, 1, p, 2)).to(q.dtype)


class _SoftFlow(torch.autograd.Function):
    """Expected key position per (query, key frame), streamed over query chunks like flash attention.

    Forward keeps only q, k and the [N, F, 2] result; backward recomputes each chunk's [chunk, N] softmax
    instead of storing it. The softmax and the coordinate sums run in coords.dtype (float32 or wider).
    """

    @staticmethod
    def forward(ctx, qj, kj, coords, f, p, alpha, chunk):
        n = qj.shape[0]
        out = torch.empty(n, f, 2, dtype=coords.dtype, device=qj.device)
        for s in range(0, n, chunk):
            prob = _frame_softmax(qj[s : s + chunk], kj, f, p, alpha, coords.dtype)
            torch.matmul(prob, coords, out=out[s : s + chunk])
        ctx.save_for_backward(qj, kj, coords, out)
        ctx.f, ctx.p, ctx.alpha, ctx.chunk = f, p, alpha, chunk
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qj, kj, coords, out = ctx.saved_tensors
        f, p, alpha, chunk = ctx.f, ctx.p, ctx.alpha, ctx.chunk
        n = qj.shape[0]
        grad_out = grad_out.to(coords.dtype)
        dq = torch.empty_like(qj) if ctx.needs_input_grad[0] else None
        dk = torch.zeros_like(kj) if ctx.needs_input_grad[1] else None
        for s in range(0, n, chunk):
            prob = _frame_softmax(qj[s : s + chunk], kj, f, p, alpha, coords.dtype)  # [c, F, P]
            dlogit = _logit_grad(grad_out[s : s + chunk], out[s : s + chunk], prob, coords).view(-1, n).to(qj.dtype)
            del prob  # one [chunk, N] buffer at a time
            if dq is not None:
                torch.mm(dlogit, kj, out=dq[s : s + chunk])
            if dk is not None:
                dk.addmm_(dlogit.T, qj[s : s + chunk])
        if dq is not None:
            dq.mul_(alpha)
        if dk is not None:
            dk.mul_(alpha)
        return dq, dk, None, None, None, None, None


def _logit_grad(g: torch.Tensor, expected: torch.Tensor, prob: torch.Tensor, coords: torch.Tensor) -> torch.Tensor:
    """The gradient of the logits [c, F, P] from that of the expected positions g [c, F, 2]: d expected / d logit_b
    = prob_b * (coord_b - expected), contracted with g (in place in the result; prob is left as is)."""
    dlogit = torch.matmul(g, coords.T)  # [c, F, P]
    dlogit -= (g * expected).sum(dim=-1, keepdim=True)
    dlogit *= prob
    return dlogit


def _frame_softmax(qc: torch.Tensor, kj: torch.Tensor, f: int, p: int, alpha: float, dtype,
                   keep: torch.Tensor | None = None) -> torch.Tensor:
    """softmax over each key frame's patches of alpha·(qc·kjᵀ): [c, F, P] in `dtype`, computed in place; with
    `keep` [c, P] bool, only over the patches it marks in each key frame (a local window)."""
    logits = torch.mm(qc, kj.T).view(qc.shape[0], f, p).to(dtype)  # no copy when already `dtype`
    logits.mul_(alpha)
    if keep is not None:
        logits.masked_fill_(~keep[:, None, :], float("-inf"))
    logits -= logits.amax(dim=-1, keepdim=True)
    logits.exp_()
    logits /= logits.sum(dim=-1, keepdim=True)
    return logits


@torch.no_grad()
def _argmax_flow(q: torch.Tensor, k: torch.Tensor, grid: Grid, chunk: int) -> torch.Tensor:
    f, h, w = grid
    p = h * w
    qj, kj, _ = _joint_heads(q, k)
    n = qj.shape[0]
    best = torch.empty(n, f, dtype=torch.long, device=q.device)
    for s in range(0, n, chunk):
        logits = qj[s : s + chunk] @ kj.T  # [chunk, N]; the positive scale cannot change the argmax
        best[s : s + chunk] = logits.view(-1, f, p).argmax(dim=-1)
    coords = patch_coordinates(h, w, device=q.device)
    target = coords[best]  # [N, F_key, 2]
    return target.view(f, p, f, 2).transpose(1, 2) - coords.view(1, 1, p, 2)


@torch.no_grad()
def attention_confidence(q: torch.Tensor, k: torch.Tensor, grid: Grid, temperature: float = 2.0,
                         chunk: int = 2048) -> torch.Tensor:
    """How sharply each patch attends into each frame: [frames, frames, h*w], entry [i, j, p] the largest
    probability of the softmax (as soft mode takes it) of patch p of frame i over frame j's patches.

    Near 1/(h*w) where the attention is flat (plain background, whose argmax is arbitrary), near 1 where it
    picks one patch (a distinct object): a weight for the AMF loss. q, k: [heads, N, head_dim].
    """
    _check_inputs(q, k, grid, chunk)
    f, h, w = grid
    p = h * w
    qj, kj, scale = _joint_heads(q, k)
    n = qj.shape[0]
    out = torch.empty(n, f, dtype=torch.float32, device=q.device)
    for s in range(0, n, chunk):
        out[s : s + chunk] = _frame_softmax(qj[s : s + chunk], kj, f, p, scale * temperature, torch.float32).amax(dim=-1)
    return out.view(f, p, f).transpose(1, 2).contiguous()
