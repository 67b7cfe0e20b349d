"""Local AMF (fast mode): each query patch of frame i looks only at key patches of frame j within a square
window around its own position, and only at key frames at most `frame_distance` latent frames away.

The same memory-lean streaming form as `amf.attention_motion_flow`'s soft mode (one [chunk, keys] softmax at a
time, recomputed in backward), and equal to it where the window covers the frame and every frame pair is in
reach. Frame pairs out of reach are not computed (a third to a half of the logits for 13 latent frames and a
distance of 4 or 2); their entries are zero displacement and `local_mask` marks them so a loss leaves them out.
The spatial window masks logits (it saves no multiply-adds: a dense [chunk, keys] product is faster than a
gather on every device); what it changes is which matches count.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .amf import Grid, _check_inputs, _frame_softmax, _joint_heads, _logit_grad, patch_coordinates


@dataclass(frozen=True)
class Window:
    """radius: key patches within `radius` patches of the query's position along x and y (None: the whole
    frame); frame_distance: key frames within this many latent frames of the query's (None: all)."""

    radius: int | None = None
    frame_distance: int | None = None

    def covers(self, grid: Grid) -> bool:
        """True when this window is the full AMF for a (frames, h, w) grid."""
        return self.for_grid(grid) is None

    def for_grid(self, grid: Grid) -> "Window | None":
        """This window with the limits that cover a (frames, h, w) grid dropped; None when nothing is left."""
        f, h, w = grid
        radius = self.radius if self.radius is not None and self.radius < max(h, w) - 1 else None
        distance = self.frame_distance if self.frame_distance is not None and self.frame_distance < f - 1 else None
        return None if radius is None and distance is None else Window(radius, distance)

    def frames(self, i: int, f: int) -> tuple[int, int]:
        """[lo, hi) key frames query frame i reaches."""
        d = f if self.frame_distance is None else self.frame_distance
        return max(0, i - d), min(f, i + d + 1)


def local_mask(grid: Grid, window: Window, reference: torch.Tensor | None = None) -> torch.Tensor:
    """[F, F, P] bool: the entries a local AMF computes (frame pairs in reach) and, given a reference AMF
    [F, F, P, 2], whose reference displacement lies inside the window (a match the local AMF can reach)."""
    f, h, w = grid
    i = torch.arange(f)
    d = f if window.frame_distance is None else window.frame_distance
    mask = ((i[:, None] - i[None, :]).abs() <= d)[:, :, None].expand(f, f, h * w).clone()
    if reference is not None and window.radius is not None:
        mask &= (reference.abs() <= window.radius + 1e-6).all(dim=-1).to(mask.device)
    return mask


def _window_keys(rows: torch.Tensor, coords: torch.Tensor, radius: int | None) -> torch.Tensor | None:
    """[c, P] bool: key patches inside the window of each query position `rows` [c] (None: no window)."""
    if radius is None:
        return None
    delta = (coords[None, :, :] - coords[rows][:, None, :]).abs()  # [c, P, 2]
    return (delta <= radius).all(dim=-1)


def _blocks(f: int, p: int, chunk: int, window: Window):
    """(query rows slice, positions in frame [c], key frames lo, hi) for every chunk of every query frame."""
    for i in range(f):
        lo, hi = window.frames(i, f)
        for s in range(0, p, chunk):
            e = min(s + chunk, p)
            yield slice(i * p + s, i * p + e), torch.arange(s, e), lo, hi


class _LocalSoftFlow(torch.autograd.Function):
    """Expected key position per (query, key frame) in reach, streamed like `amf._SoftFlow`; entries out of
    reach hold the query's own position (zero displacement)."""

    @staticmethod
    def forward(ctx, qj, kj, coords, f, p, alpha, chunk, window):
        n = qj.shape[0]
        out = coords.repeat(f, 1)[:, None, :].expand(n, f, 2).clone()  # [N, F, 2]: own position by default
        for rows, pos, lo, hi in _blocks(f, p, chunk, window):
            prob = _frame_softmax(qj[rows], kj[lo * p: hi * p], hi - lo, p, alpha, coords.dtype,
                                  _window_keys(pos.to(coords.device), coords, window.radius))
            out[rows, lo:hi] = torch.matmul(prob, coords)
        ctx.save_for_backward(qj, kj, coords, out)
        ctx.f, ctx.p, ctx.alpha, ctx.chunk, ctx.window = f, p, alpha, chunk, window
        return out

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_out):
        qj, kj, coords, out = ctx.saved_tensors
        f, p, alpha, window = ctx.f, ctx.p, ctx.alpha, ctx.window
        grad_out = grad_out.to(coords.dtype)
        dq = torch.zeros_like(qj) if ctx.needs_input_grad[0] else None
        dk = torch.zeros_like(kj) if ctx.needs_input_grad[1] else None
        for rows, pos, lo, hi in _blocks(f, p, ctx.chunk, window):
            kf = kj[lo * p: hi * p]
            prob = _frame_softmax(qj[rows], kf, hi - lo, p, alpha, coords.dtype,
                                  _window_keys(pos.to(coords.device), coords, window.radius))
            # zero outside the window, where prob is
            dlogit = _logit_grad(grad_out[rows, lo:hi], out[rows, lo:hi], prob, coords).reshape(len(pos), -1).to(qj.dtype)
            del prob
            if dq is not None:
                dq[rows] = torch.mm(dlogit, kf)
            if dk is not None:
                dk[lo * p: hi * p].addmm_(dlogit.T, qj[rows])
        if dq is not None:
            dq.mul_(alpha)
        if dk is not None:
            dk.mul_(alpha)
        return dq, dk, None, None, None, None, None, None


def local_attention_motion_flow(q: torch.Tensor, k: torch.Tensor, grid: Grid, window: Window,
                                temperature: float = 2.0, chunk: int = 2048) -> torch.Tensor:
    """Soft AMF restricted to `window`: [frames, frames, h*w, 2] displacements in patches, as
    `attention_motion_flow(..., mode="soft")` where the window covers the frame; zero for frame pairs out of
    reach (see `local_mask`). q, k: [heads, N, head_dim] post-RoPE video tokens in (frame, row, column) order."""
    _check_inputs(q, k, grid, chunk)
    f, h, w = grid
    p = h * w
    qj, kj, scale = _joint_heads(q, k)
    coords = patch_coordinates(h, w, device=q.device, dtype=torch.promote_types(q.dtype, torch.float32))
    expected = _LocalSoftFlow.apply(qj, kj, coords, f, p, scale * temperature, chunk, window)
    return (expected.view(f, p, f, 2).transpose(1, 2) - coords.view(1, 1, p, 2)).to(q.dtype)


@torch.no_grad()
def local_attention_confidence(q: torch.Tensor, k: torch.Tensor, grid: Grid, window: Window,
                               temperature: float = 2.0, chunk: int = 2048) -> torch.Tensor:
    """`amf.attention_confidence` of the local softmax: [F, F, P]; entries out of reach are 0."""
    _check_inputs(q, k, grid, chunk)
    f, h, w = grid
    p = h * w
    qj, kj, scale = _joint_heads(q, k)
    coords = patch_coordinates(h, w, device=q.device)
    out = torch.zeros(qj.shape[0], f, dtype=torch.float32, device=q.device)
    for rows, pos, lo, hi in _blocks(f, p, chunk, window):
        prob = _frame_softmax(qj[rows], kj[lo * p: hi * p], hi - lo, p, scale * temperature, torch.float32,
                              _window_keys(pos.to(q.device), coords, window.radius))
        out[rows, lo:hi] = prob.amax(dim=-1)
    return out.view(f, p, f).transpose(1, 2).contiguous()
