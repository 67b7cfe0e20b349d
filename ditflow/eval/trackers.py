"""Point trackers behind one interface: frames uint8 [T, H, W, 3] -> tracks float [N, T, 2] (x, y in
pixels) and visibility bool [N, T].

- ``lk``: OpenCV pyramidal Lucas–Kanade on a point grid, chained frame to frame with a forward–backward
  check; a point that fails once is dropped, so every returned track is complete. Needs no weights.
- ``cotracker``: CoTracker3 (offline), loaded from a local checkout of facebookresearch/co-tracker with
  torch.hub (source="local") and a local checkpoint; it is not on PyPI and nothing is downloaded.
- ``auto``: cotracker when it can be loaded, else lk.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ..errors import InputError, ModelUnavailable
from .settings import GRID_SIZE, TRACKERS
COTRACKER_CHECKPOINT = "scaled_offline.pth"
COTRACKER_URL = "https://huggingface.co/facebook/cotracker3/resolve/main/scaled_offline.pth"


class Tracker(Protocol):
    name: str

    def track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """frames uint8 [T, H, W, 3] -> (tracks float32 [N, T, 2] as (x, y) px, visible bool [N, T])."""
        ...

    def track_points(self, frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Given points (x, y) px of frame 0 [N, 2] -> (tracks float32 [N, T, 2], kept bool [N]); a point the
        tracker lost keeps its row (so two videos' tracks of the same points stay in step) but is not kept."""
        ...


def grid_points(height: int, width: int, size: int, margin: float) -> np.ndarray:
    """size×size points evenly spread over the frame, `margin` px from its edges: [size*size, 2] (x, y)."""
    ys, xs = np.meshgrid(np.linspace(margin, height - 1 - margin, size), np.linspace(margin, width - 1 - margin, size), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=-1).astype(np.float32)


def grid_margin(height: int, width: int, window: int = 21) -> float:
    """How far from the edges the grid starts: half LK's window, less on tiny frames."""
    return min(window / 2, (min(height, width) - 1) / 4)


def lost_for_good(visible: np.ndarray) -> np.ndarray:
    """Which tracks disappear and never come back, before the last frame (RoPECraft's ftd.py drops these):
    visible bool [N, T] -> bool [N]."""
    seen_after = np.flip(np.logical_or.accumulate(np.flip(visible, axis=1), axis=1), axis=1)  # [N, T]: visible at t or later
    first_gone = np.argmax(~visible, axis=1)
    gone = (~visible).any(axis=1) & (first_gone + 1 < visible.shape[1])
    return gone & ~seen_after[np.arange(len(visible)), np.minimum(first_gone + 1, visible.shape[1] - 1)]


@dataclass
class LucasKanadeTracker:
    """Pyramidal LK from a grid on frame 0; a point is dropped when LK loses it, when tracking it back
    lands more than `fb_max` px from where it started, or when it leaves the frame."""

    grid_size: int = GRID_SIZE
    window: int = 21
    levels: int = 3
    fb_max: float = 1.0
    name: str = "lk"

    def track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        h, w = frames.shape[1:3]
        tracks, kept = self.track_points(frames, grid_points(h, w, self.grid_size, grid_margin(h, w, self.window)))
        tracks = tracks[kept]
        return tracks, np.ones(tracks.shape[:2], bool)

    def track_points(self, frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import cv2

        t, h, w = frames.shape[:3]
        gray = [cv2.cvtColor(np.ascontiguousarray(f), cv2.COLOR_RGB2GRAY) for f in frames]
        pts = np.asarray(points, np.float32).reshape(-1, 2)
        tracks = np.zeros((len(pts), t, 2), np.float32)
        tracks[:, 0] = pts
        alive = np.arange(len(pts))
        lk = dict(winSize=(self.window, self.window), maxLevel=self.levels,
                  criteria=(cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 30, 0.01))
        for i in range(t - 1):
            if len(alive) == 0:
                break
            p0 = tracks[alive, i].reshape(-1, 1, 2)
            p1, ok, _ = cv2.calcOpticalFlowPyrLK(gray[i], gray[i + 1], p0, None, **lk)
            back, ok_back, _ = cv2.calcOpticalFlowPyrLK(gray[i + 1], gray[i], p1, None, **lk)
            p1, back = p1.reshape(-1, 2), back.reshape(-1, 2)
            keep = (ok.ravel() == 1) & (ok_back.ravel() == 1)
            keep &= np.linalg.norm(back - p0.reshape(-1, 2), axis=1) < self.fb_max
            keep &= (p1[:, 0] >= 0) & (p1[:, 0] <= w - 1) & (p1[:, 1] >= 0) & (p1[:, 1] <= h - 1)
            tracks[alive, i + 1] = p1
            alive = alive[keep]
        kept = np.zeros(len(pts), bool)
        kept[alive] = True
        return tracks, kept


def _torch_hub_dir() -> Path:
    # torch.hub.get_dir() without importing torch: $TORCH_HOME, else $XDG_CACHE_HOME/torch, then /hub
    home = os.environ.get("TORCH_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "torch")
    return Path(home) / "hub"


def find_cotracker(repo: str | os.PathLike | None = None, checkpoint: str | os.PathLike | None = None) -> tuple[Path, Path]:
    """(co-tracker checkout, CoTracker3 offline checkpoint) from the arguments, else $DITFLOW_COTRACKER_REPO /
    $DITFLOW_COTRACKER_CHECKPOINT, else the torch hub cache. Raises ModelUnavailable saying how to provide them."""
    hub = _torch_hub_dir()
    if repo is None:
        repo = os.environ.get("DITFLOW_COTRACKER_REPO")
    if repo is None:
        cached = sorted(hub.glob("facebookresearch_co-tracker_*"))
        repo = cached[0] if cached else None
    if repo is None or not (Path(repo) / "hubconf.py").is_file():
        where = f"{repo} has no hubconf.py" if repo is not None else f"no checkout given and none in {hub}"
        raise ModelUnavailable(
            f"CoTracker is not available ({where}); it is not on PyPI: clone https://github.com/facebookresearch/co-tracker "
            "on a connected machine, install its requirements, and pass --cotracker-repo PATH (or set DITFLOW_COTRACKER_REPO)"
        )
    if checkpoint is None:
        checkpoint = os.environ.get("DITFLOW_COTRACKER_CHECKPOINT") or hub / "checkpoints" / COTRACKER_CHECKPOINT
    if not Path(checkpoint).is_file():
        raise ModelUnavailable(
            f"CoTracker3 checkpoint not found at {checkpoint}: download {COTRACKER_URL} on a connected machine and pass "
            f"--cotracker-checkpoint PATH (or set DITFLOW_COTRACKER_CHECKPOINT, or put it in {hub / 'checkpoints'})"
        )
    return Path(repo), Path(checkpoint)


@dataclass
class CoTracker:
    """CoTracker3 offline on a grid_size×grid_size grid of frame 0 (as in the DiTFlow evaluation)."""

    repo: Path
    checkpoint: Path
    grid_size: int = GRID_SIZE
    device: str = "cpu"
    name: str = "cotracker3"
    _predictor: Any = field(default=None, repr=False)

    def load(self) -> "CoTracker":
        if self._predictor is not None:
            return self
        import torch

        try:
            predictor = torch.hub.load(str(self.repo), "cotracker3_offline", source="local", pretrained=False)
            state = torch.load(str(self.checkpoint), map_location="cpu", weights_only=True)
            predictor.model.load_state_dict(state.get("model", state) if isinstance(state, dict) else state)
        except Exception as e:  # a broken checkout, a missing dependency of co-tracker, a wrong checkpoint
            msg = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise ModelUnavailable(f"cannot load CoTracker3 from {self.repo} with {self.checkpoint}: {msg}")
        self._predictor = predictor.to(self.device).eval()
        return self

    def track(self, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        self.load()
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None].float().to(self.device)
        with torch.no_grad():
            tracks, visible = self._predictor(video, grid_size=self.grid_size)  # [1, T, N, 2], [1, T, N]
        tracks = tracks[0].transpose(0, 1).float().cpu().numpy()
        visible = (visible[0].transpose(0, 1).float() > 0.5).cpu().numpy()
        return tracks, visible

    def track_points(self, frames: np.ndarray, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        import torch

        self.load()
        video = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2)[None].float().to(self.device)
        pts = torch.from_numpy(np.asarray(points, np.float32).reshape(-1, 2))
        queries = torch.cat([torch.zeros(len(pts), 1), pts], dim=1)[None].to(self.device)  # [1, N, 3]: (t=0, x, y)
        with torch.no_grad():
            tracks, visible = self._predictor(video, queries=queries)  # [1, T, N, 2], [1, T, N]
        tracks = tracks[0].transpose(0, 1).float().cpu().numpy()
        visible = (visible[0].transpose(0, 1).float() > 0.5).cpu().numpy()
        return tracks, ~lost_for_good(visible)  # positions through an occlusion are CoTracker's estimates


def get_tracker(name: str = "auto", *, grid_size: int = GRID_SIZE, cotracker_repo: str | os.PathLike | None = None,
                cotracker_checkpoint: str | os.PathLike | None = None, device: str = "cpu") -> tuple[Tracker, str | None]:
    """The tracker `name` and, when `auto` fell back to lk, why CoTracker was not used (else None)."""
    if name not in TRACKERS:
        raise InputError(f"unknown tracker '{name}': use {', '.join(TRACKERS)}")
    if name == "lk":
        return LucasKanadeTracker(grid_size=grid_size), None
    try:
        repo, ckpt = find_cotracker(cotracker_repo, cotracker_checkpoint)
        return CoTracker(repo, ckpt, grid_size=grid_size, device=device).load(), None
    except ModelUnavailable as e:
        if name == "cotracker":
            raise
        return LucasKanadeTracker(grid_size=grid_size), str(e)
