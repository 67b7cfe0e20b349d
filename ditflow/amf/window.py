"""Which keys each query meets: the patch grid, fast mode's local `Window`, and the query blocks the
streaming kernel walks through.

A window limits each query patch of frame i to the key patches of frame j within `radius` patches of its own
position, and to the key frames at most `frame_distance` latent frames away. Frame pairs out of reach are not
computed (a third to a half of the logits for 13 latent frames and a distance of 4 or 2). The spatial window
masks logits rather than gathering keys: a dense [chunk, keys] product is faster than a gather on every device,
so what it changes is which matches count, not the multiply-adds.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import torch

Grid = tuple[int, int, int]  # (frames, h, w) in patches


def patch_coordinates(h: int, w: int, *, device=None, dtype=torch.float32) -> torch.Tensor:
    """(x, y) of every patch of one frame in raster order: [h*w, 2]."""
    ys, xs = torch.meshgrid(
        torch.arange(h, device=device, dtype=dtype), torch.arange(w, device=device, dtype=dtype), indexing="ij"
    )
    return torch.stack([xs.flatten(), ys.flatten()], dim=-1)


@dataclass(frozen=True)
class Window:
    """radius: key patches within `radius` patches of the query's position along x and y (None: the whole
    frame); frame_distance: key frames within this many latent frames of the query's (None: all)."""

    radius: int | None = None
    frame_distance: int | None = None

    def covers(self, grid: Grid) -> bool:
        """True when this window is the full AMF for a (frames, h, w) grid."""
        return self.for_grid(grid) is None

    def for_grid(self, grid: Grid) -> Window | None:
        """This window with the limits that cover a (frames, h, w) grid dropped; None when nothing is left."""
        f, h, w = grid
        radius = self.radius if self.radius is not None and self.radius < max(h, w) - 1 else None
        distance = self.frame_distance if self.frame_distance is not None and self.frame_distance < f - 1 else None
        return None if radius is None and distance is None else Window(radius, distance)

    def frames(self, i: int, f: int) -> tuple[int, int]:
        """[lo, hi) key frames query frame i reaches."""
        d = f if self.frame_distance is None else self.frame_distance
        return max(0, i - d), min(f, i + d + 1)


def window_mask(grid: Grid, window: Window, reference: torch.Tensor | None = None) -> torch.Tensor:
    """[F, F, P] bool: the entries a windowed AMF computes (frame pairs in reach) and, given a reference AMF
    [F, F, P, 2], whose reference displacement lies inside the window (a match the windowed AMF can reach)."""
    f, h, w = grid
    i = torch.arange(f)
    d = f if window.frame_distance is None else window.frame_distance
    mask = ((i[:, None] - i[None, :]).abs() <= d)[:, :, None].expand(f, f, h * w).clone()
    if reference is not None and window.radius is not None:
        mask &= (reference.abs() <= window.radius + 1e-6).all(dim=-1).to(mask.device)
    return mask


@dataclass(frozen=True)
class Block:
    """One step of the kernel: query rows `rows` of the [N] sequence against key frames `frames` (the key rows
    `keys`); `keep` [rows, P] bool marks each query's key patches inside the window (None: every patch)."""

    rows: slice
    frames: slice
    keys: slice
    keep: torch.Tensor | None = None


def query_blocks(grid: Grid, window: Window | None, chunk: int, coords: torch.Tensor) -> Iterator[Block]:
    """Blocks that hold every query row once, in order. Without a window: runs of `chunk` rows across frame
    boundaries against every key frame. With one: runs of at most `chunk` rows within each query frame against
    the key frames in reach, masked to the spatial radius. coords: [P, 2] patch positions (for the mask)."""
    f, h, w = grid
    p = h * w
    if window is None:
        for s in range(0, f * p, chunk):
            yield Block(slice(s, min(s + chunk, f * p)), slice(0, f), slice(0, f * p))
        return
    for i in range(f):
        lo, hi = window.frames(i, f)
        for s in range(0, p, chunk):
            e = min(s + chunk, p)
            keep = None if window.radius is None else _inside(coords[s:e], coords, window.radius)
            yield Block(slice(i * p + s, i * p + e), slice(lo, hi), slice(lo * p, hi * p), keep)


def _inside(queries: torch.Tensor, coords: torch.Tensor, radius: int) -> torch.Tensor:
    """[c, P] bool: key patches within `radius` of each query position, queries [c, 2], coords [P, 2]."""
    return ((coords[None, :, :] - queries[:, None, :]).abs() <= radius).all(dim=-1)
