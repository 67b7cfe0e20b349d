"""Pictures of what DiTFlow computes: AMF flow fields, side-by-side videos, guidance loss curves.

Pure functions of numpy arrays (uint8 RGB frames [T, H, W, 3]); only `plot_losses` and `free_path` touch
the disk. Flow colours: hue = direction (0° = right/red, 90° = down, 180° = left/cyan, 270° = up, in
image coordinates), saturation = magnitude relative to `max_magnitude` (white = no motion).
"""
from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .errors import InputError
from .fileio import atomic_file, check_target

MAX_SIDE_BY_SIDE = (2160, 3840)  # (height, width) a side-by-side frame keeps within (to a few pixels): 4K UHD


# -- flow colours --------------------------------------------------------------------------------------
def flow_to_rgb(flow: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """flow [..., 2] (dx, dy) -> uint8 RGB [..., 3] on the HSV wheel; magnitudes at or above
    `max_magnitude` (default: the largest in `flow`) are fully saturated."""
    import cv2

    flow = np.asarray(flow, dtype=np.float32)
    mag = np.linalg.norm(flow, axis=-1)
    top = float(max_magnitude) if max_magnitude else float(mag.max(initial=0.0))
    angle = np.degrees(np.arctan2(flow[..., 1], flow[..., 0])) % 360.0
    hsv = np.stack([angle / 2.0, 255.0 * np.clip(mag / (top if top > 0 else 1.0), 0, 1), np.full_like(mag, 255.0)], -1)
    hsv = np.round(hsv).astype(np.uint8).reshape(-1, 1, 3)
    hsv[..., 0] %= 180  # 359.9° rounds to 180, which OpenCV's 8-bit hue (0..179) does not have
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB).reshape(*flow.shape[:-1], 3)


def color_wheel(size: int, background: int = 255) -> np.ndarray:
    """Legend of `flow_to_rgb`: the colour of every (dx, dy) within a disc of radius 1: uint8 [size, size, 3]."""
    c = (size - 1) / 2
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    flow = np.stack([(xs - c) / max(c, 1), (ys - c) / max(c, 1)], -1)
    rgb = flow_to_rgb(flow, max_magnitude=1.0)
    rgb[np.linalg.norm(flow, axis=-1) > 1.0] = background
    return rgb


# -- AMF pictures --------------------------------------------------------------------------------------
def latent_to_pixel_frame(i: int, n_latent: int, n_pixel: int) -> int:
    """The pixel frame a latent frame stands for: latent 0 is frame 0 and the last latent the last frame
    (4x temporal compression: 49 frames -> 13 latents, latent i ≈ frame 4i)."""
    if n_latent <= 1:
        return 0
    return min(n_pixel - 1, round(i * (n_pixel - 1) / (n_latent - 1)))


def parse_pairs(text: str | None, n_latent: int) -> list[tuple[int, int]]:
    """"0-1,0-3" -> [(0, 1), (0, 3)]; None -> frame 0 to each later latent frame."""
    if not text:
        pairs = [(0, j) for j in range(1, n_latent)] or [(0, 0)]
        return pairs
    pairs = []
    for item in text.split(","):
        m = re.fullmatch(r"\s*(\d+)\s*-\s*(\d+)\s*", item)
        if not m:
            raise InputError(f"bad frame pair '{item}': write pairs like 0-1,0-3")
        i, j = int(m[1]), int(m[2])
        if i >= n_latent or j >= n_latent:
            raise InputError(f"frame pair {i}-{j} is out of range: the AMF has latent frames 0..{n_latent - 1}")
        pairs.append((i, j))
    return pairs


def draw_arrows(frame: np.ndarray, flow: np.ndarray, max_arrows: int = 16, max_magnitude: float | None = None) -> np.ndarray:
    """Arrows of a patch flow over a frame: frame uint8 [H, W, 3], flow [h, w, 2] in patches -> uint8 [H, W, 3].
    At most max_arrows per side (every k-th patch), coloured like `flow_to_rgb`, outlined for contrast."""
    import cv2

    out = np.ascontiguousarray(frame).copy()
    (hp, wp), (h, w) = flow.shape[:2], frame.shape[:2]
    sx, sy = w / wp, h / hp
    step = max(1, math.ceil(max(hp, wp) / max_arrows))
    colors = flow_to_rgb(flow, max_magnitude)
    thick = max(1, round(min(h, w) / 200))
    for y in range(step // 2, hp, step):
        for x in range(step // 2, wp, step):
            p0 = (int(round((x + 0.5) * sx)), int(round((y + 0.5) * sy)))
            p1 = (int(round(p0[0] + flow[y, x, 0] * sx)), int(round(p0[1] + flow[y, x, 1] * sy)))
            color = tuple(int(c) for c in colors[y, x])
            if p0 == p1:
                cv2.circle(out, p0, thick + 1, color, -1, cv2.LINE_AA)
                continue
            cv2.arrowedLine(out, p0, p1, (0, 0, 0), thick + 2, cv2.LINE_AA, tipLength=0.25)
            cv2.arrowedLine(out, p0, p1, color, thick, cv2.LINE_AA, tipLength=0.25)
    return out


def amf_pictures(frames: np.ndarray, amf: np.ndarray, grid: tuple[int, int, int], pairs: Sequence[tuple[int, int]],
                 title: str = "AMF") -> np.ndarray:
    """One picture per latent frame pair (i, j): [frame of i with arrows | colour-coded flow i→j + wheel].

    frames: uint8 [T, H, W, 3], the reference video; amf: [F, F, h*w, 2] (dx, dy) in patches; grid (F, h, w).
    Returns uint8 [len(pairs), header + H, 2W, 3]. One colour scale (the largest magnitude of the chosen
    pairs) for every picture, so pictures compare.
    """
    import cv2

    n_lat, hp, wp = grid
    t, h, w = frames.shape[:3]
    flows = [np.asarray(amf[i, j], np.float32).reshape(hp, wp, 2) for i, j in pairs]
    top = max((float(np.linalg.norm(f, axis=-1).max()) for f in flows), default=0.0) or 1.0
    wheel = color_wheel(max(24, min(h, w) // 4))
    out = []
    for (i, j), flow in zip(pairs, flows):
        fi, fj = latent_to_pixel_frame(i, n_lat, t), latent_to_pixel_frame(j, n_lat, t)
        arrows = draw_arrows(frames[fi], flow, max_magnitude=top)
        colors = cv2.resize(flow_to_rgb(flow, top), (w, h), interpolation=cv2.INTER_NEAREST)
        s, m = wheel.shape[0], max(2, min(h, w) // 40)
        if s + 2 * m <= min(h, w):
            colors[m:m + s, w - m - s:w - m] = wheel
        text = f"{title}  latent {i}->{j} (frame {fi}->{fj})  max {top:.2f} patches"
        out.append(add_header(np.concatenate([arrows, colors], axis=1), text))
    return np.stack(out)


# -- side by side --------------------------------------------------------------------------------------
def picture_grid(pictures: np.ndarray, columns: int | None = None, gap: int = 4) -> np.ndarray:
    """One still image of pictures [N, H, W, 3] (uint8) in a grid, row by row on white: [rows*(H+gap)-gap,
    cols*(W+gap)-gap, 3]. Default columns: ceil(sqrt(N)), so a paper figure stays near square."""
    n, h, w, _ = pictures.shape
    cols = columns or int(np.ceil(np.sqrt(n)))
    rows = -(-n // cols)
    out = np.full((rows * (h + gap) - gap, cols * (w + gap) - gap, 3), 255, np.uint8)
    for k, pic in enumerate(pictures):
        r, c = divmod(k, cols)
        out[r * (h + gap): r * (h + gap) + h, c * (w + gap): c * (w + gap) + w] = pic
    return out


def write_still(image: np.ndarray, path: str | os.PathLike, overwrite: bool = False) -> Path:
    """Write one uint8 image [H, W, 3] as PNG, atomically; refuses to replace `path` unless asked."""
    import imageio.v3 as iio

    path = check_target(path, overwrite)
    with atomic_file(path) as tmp:
        iio.imwrite(tmp, np.ascontiguousarray(image, dtype=np.uint8), extension=".png")
    return path


def header_strip(width: int, text: str, height: int) -> np.ndarray:
    """A black strip uint8 [height, width, 3] holding `text` in white (ASCII; shrunk to fit the width)."""
    import cv2

    strip = np.zeros((height, width, 3), np.uint8)
    text = text.encode("ascii", "replace").decode()
    font, thick = cv2.FONT_HERSHEY_SIMPLEX, 1
    scale = height / 32
    (tw, _), _ = cv2.getTextSize(text, font, scale, thick)
    if tw > width - 8:
        scale *= (width - 8) / tw
    (_, th), _ = cv2.getTextSize(text, font, scale, thick)
    cv2.putText(strip, text, (4, (height + th) // 2), font, scale, (255, 255, 255), thick, cv2.LINE_AA)
    return strip


def _header_height(frame_height: int) -> int:
    return max(16, round(frame_height / 12)) // 2 * 2  # even, so mp4 (yuv420p) needs no padding


def add_header(frame: np.ndarray, text: str) -> np.ndarray:
    """frame uint8 [H, W, 3] -> [header + H, W, 3] with `text` on a strip on top."""
    return np.concatenate([header_strip(frame.shape[1], text, _header_height(frame.shape[0])), frame], axis=0)


def panel_height(videos: Sequence[np.ndarray]) -> int:
    """The common (even) height of `side_by_side`'s panels: the first video's, lowered until the whole frame fits
    MAX_SIDE_BY_SIDE, so a thin strip or a huge frame shows smaller instead of making a picture of gigabytes."""
    h = max(2, videos[0].shape[1] // 2 * 2)
    max_h, max_w = MAX_SIDE_BY_SIDE
    width = sum(v.shape[2] * h / v.shape[1] for v in videos)
    if h > max_h or width > max_w:
        h = max(2, int(min(max_h, h * max_w / width)) // 2 * 2)
    return h


def side_by_side(videos: Sequence[np.ndarray], labels: Sequence[str]) -> np.ndarray:
    """Videos [T_k, H_k, W_k, 3] next to each other under their labels: cut to the shortest, resized to the
    first one's height keeping aspect (even widths, so it encodes as mp4; smaller where the frame would pass
    MAX_SIDE_BY_SIDE: `panel_height`). -> uint8 [T, header + H, ΣW, 3]."""
    from .video import resize_frames

    if len(videos) != len(labels):
        raise InputError(f"{len(labels)} labels for {len(videos)} videos")
    t = min(len(v) for v in videos)
    h = panel_height(videos)
    panels = []
    for v in videos:
        w = max(2, round(v.shape[2] * h / v.shape[1] / 2) * 2)
        panels.append(resize_frames(v[:t], h, w))
    height = _header_height(h)
    cols = []
    for p, label in zip(panels, labels):
        header = header_strip(p.shape[2], label, height)
        cols.append(np.concatenate([np.broadcast_to(header, (t, *header.shape)), p], axis=1))
    return np.concatenate(cols, axis=2)


def side_by_side_still(videos: Sequence[np.ndarray], labels: Sequence[str], rows: int = 4, gap: int = 4) -> np.ndarray:
    """One still of `side_by_side(videos, labels)`: its labels once, then `rows` evenly spaced frames under
    them, separated by white gaps. -> uint8 [header + rows*(H+gap)-gap, ΣW, 3]."""
    frames = side_by_side(videos, labels)
    header = _header_height(panel_height(videos))
    picks = np.linspace(0, len(frames) - 1, min(rows, len(frames))).round().astype(int)
    bodies = [frames[i, header:] for i in picks]
    white = np.full((gap, frames.shape[2], 3), 255, np.uint8)
    parts = [frames[picks[0], :header]]
    for k, body in enumerate(bodies):
        parts += [white, body] if k else [body]
    return np.concatenate(parts, axis=0)


# -- loss curves ---------------------------------------------------------------------------------------
def plot_losses(losses: list[dict[str, Any]], path: str | os.PathLike, title: str = "guidance loss", overwrite: bool = False) -> Path:
    """PNG of a guide run's losses ({"step", "timestep", "opt_step", "loss"} records): left, every
    optimisation iteration in order with the denoising steps separated and their timesteps marked;
    right, loss against optimisation step, one curve per timestep."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    if not losses:
        raise InputError("no losses to plot")
    path = check_target(path, overwrite)
    steps: dict[int, list[dict[str, Any]]] = {}
    for rec in sorted(losses, key=lambda r: (r["step"], r.get("opt_step", 0))):
        steps.setdefault(int(rec["step"]), []).append(rec)
    timesteps = [int(recs[0].get("timestep", s)) for s, recs in steps.items()]
    cmap = plt.get_cmap("viridis")
    norm = matplotlib.colors.Normalize(min(timesteps), max(timesteps) if max(timesteps) > min(timesteps) else min(timesteps) + 1)
    values = np.array([float(r["loss"]) for r in losses])
    log = bool((values > 0).all() and values.max() / values.min() > 20)

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=110, gridspec_kw={"width_ratios": [3, 2]})
    x0, centers = 0, []
    for recs, t in zip(steps.values(), timesteps):
        xs = np.arange(x0, x0 + len(recs))
        ys = [float(r["loss"]) for r in recs]
        ax1.plot(xs, ys, color=cmap(norm(t)), lw=1.5, marker="." if len(recs) < 30 else None)
        ax2.plot([int(r.get("opt_step", k)) for k, r in enumerate(recs)], ys, color=cmap(norm(t)), lw=1.2)
        if x0 > 0:
            ax1.axvline(x0 - 0.5, color="0.8", lw=0.8, ls=":")
        centers.append((xs[0] + xs[-1]) / 2)
        x0 += len(recs)
    every = max(1, math.ceil(len(centers) / 12))  # at most ~12 timestep labels
    top = ax1.secondary_xaxis("top")
    top.set_xticks(centers[::every], [str(t) for t in timesteps[::every]], fontsize=8)
    top.set_xlabel("timestep of the guided denoising step", fontsize=9)
    ax1.set_xlabel("optimisation iteration (all guided steps in order)")
    ax1.set_ylabel("AMF loss")
    ax2.set_xlabel("optimisation step within a denoising step")
    ax2.set_title("one curve per timestep", fontsize=10)
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        if log:
            ax.set_yscale("log")
    fig.colorbar(matplotlib.cm.ScalarMappable(norm=norm, cmap=cmap), ax=ax2, label="timestep")
    fig.suptitle(title)
    fig.tight_layout()
    try:
        with atomic_file(path) as tmp:
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path


# -- output names --------------------------------------------------------------------------------------
def free_path(path: str | os.PathLike) -> Path:
    """`path`, or the first of path-1, path-2... (before the suffix) that does not exist yet."""
    path = Path(path)
    n = 1
    candidate = path
    while candidate.exists():
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
        n += 1
    return candidate
