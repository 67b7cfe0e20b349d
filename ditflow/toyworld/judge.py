"""Judge generated videos of the synthetic world from pixels alone: does the prompt's object appear in the
named colour and shape, and how far is its path from a reference path. Pure numpy/cv2; written for the
blurry, colour-shifted output of a small diffusion model, so every test is tolerant by design.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache

import cv2
import numpy as np

from .world import ALL_SHAPES, COLOURS, SHAPES, _shape_mask

# Decoded colours are off by ~20-40 per channel: 40 on every channel is 69 in RGB distance. The palette's
# closest pair (orange/yellow) is 76 apart, so "nearest" already decides between palette colours; the
# threshold only drops pixels far from every colour (blends at blurred edges).
COLOUR_THRESHOLD = 90.0
MIN_AREA_FRAC = 0.008  # under the smallest object (a triangle of r = 0.14 * side covers 3%; of r = 0.10, 1.6%);
# texture blobs cover ~0.5-1%
MAX_AREA_FRAC = 0.25  # the largest object (a circle of r = 0.22 * side) covers 15%: bigger is background. Worlds of
# larger objects (v8's) raise it: see max_area_for
FG_THRESHOLD = 40.0  # distance from the fitted background; noise of sigma 15 per channel is ~26
GROW_STEPS = 2  # a 5x5 blur spreads an edge over ~2 px
PRESENT_FRAC = 0.8  # share of frames the object must be visible in
COHERENT_FRAC = 0.5  # share of object-coloured pixels the kept components must hold

_PALETTE_NAMES = list(COLOURS)
_PALETTE = np.array([COLOURS[c] for c in _PALETTE_NAMES], dtype=np.float32)  # [K, 3]
_C, _S = "|".join(COLOURS), "|".join(ALL_SHAPES)
_OBJECT = re.compile(rf"an? ({_C}) ({_S})")
_PROMPT = re.compile(rf"(.+) on a (textured )?({_C}) (gradient )?background")


@dataclass
class Prompt:
    objects: list[tuple[str, str]]  # (colour, shape), in prompt order
    background: str  # plain / gradient / textured
    bg_colour: str


@dataclass
class Match:
    colour: bool
    shape: bool
    ok: bool
    coverage: np.ndarray = field(repr=False)  # float [T]: fraction of each frame the object covers
    mask: np.ndarray = field(repr=False)  # bool [T,H,W]: the object per frame, as object_mask finds it


def parse_prompt(prompt: str) -> Prompt:
    """Inverse of the world's prompt format ("a red circle and a blue square on a textured grey background")."""
    m = _PROMPT.fullmatch(prompt.strip())
    parts = m.group(1).split(" and ") if m else []
    objects = [_OBJECT.fullmatch(p) for p in parts]
    if not m or not all(objects) or (m.group(2) and m.group(4)):
        raise ValueError(f"not a toy-world prompt: {prompt!r}")
    kind = "textured" if m.group(2) else "gradient" if m.group(4) else "plain"
    return Prompt([(o.group(1), o.group(2)) for o in objects], kind, m.group(3))


def swap_word(prompt: str, word: str, k: int, shapes: tuple[str, ...] = SHAPES) -> str:
    """The prompt with its first object's "shape" or "colour" replaced by the k-th other choice (of the world's
    `shapes`; a colour never the background's, which would make the object vanish rather than change)."""
    from .world import prompt_text

    p = parse_prompt(prompt)
    (colour, shape), rest = p.objects[0], p.objects[1:]
    if word == "shape":
        others = [s for s in shapes if s != shape]
        shape = others[k % len(others)]
    elif word == "colour":
        others = [c for c in COLOURS if c not in (colour, p.bg_colour)]
        colour = others[k % len(others)]
    else:
        raise ValueError(f"word must be 'shape' or 'colour', not {word!r}")
    return prompt_text([(colour, shape)] + rest, p.background, p.bg_colour)


def _background(frame: np.ndarray) -> np.ndarray:
    """float [H,W,3]: a per-channel plane fitted to the frame, refitted without its worst quarter. Plain and
    gradient backgrounds are exactly such planes, and the object (under 10% of the frame) drops out."""
    h, w, _ = frame.shape
    yy, xx = np.mgrid[0:h, 0:w]
    a = np.stack([np.ones(h * w), xx.ravel() / w, yy.ravel() / h], axis=1)
    y = frame.reshape(-1, 3)
    keep = np.ones(h * w, dtype=bool)
    for _ in range(2):
        coef = np.linalg.lstsq(a[keep], y[keep], rcond=None)[0]
        resid = np.linalg.norm(y - a @ coef, axis=1)
        keep = resid <= np.quantile(resid, 0.75)
    return (a @ coef).reshape(h, w, 3)


def max_area_for(radius: tuple[float, float]) -> float:
    """The largest blob (fraction of the frame) taken for an object in a world of these object radii (fractions
    of the frame side): 1.6x its largest circle, and never under MAX_AREA_FRAC (v4's world and smaller)."""
    return max(MAX_AREA_FRAC, 1.6 * np.pi * float(radius[1]) ** 2)


def _colour_masks(frames: np.ndarray, colour: str, bg_colour: str | None, bg: np.ndarray | None = None,
                  max_area: float = MAX_AREA_FRAC) -> tuple[np.ndarray, np.ndarray]:
    """(kept, blobs) bool [T,H,W]: the object's component per frame; all foreground blobs of its colour.
    `bg` float [T,H,W,3]: the frames' fitted backgrounds, when the caller has them already; `max_area`: larger
    blobs are background (fraction of the frame)."""
    if colour not in COLOURS or (bg_colour is not None and bg_colour not in COLOURS):
        raise ValueError(f"unknown colour {colour!r} or {bg_colour!r}")
    if colour == bg_colour:  # the world never draws an object in its background's colour
        raise ValueError(f"object and background are both {colour}")
    x = frames.astype(np.float32)
    if bg is None:
        bg = np.stack([_background(f) for f in x])
    # All palette colours compete, not only object vs background: a pixel counts only when `colour` is its
    # best explanation, so an object of another colour is never taken for it.
    dist = np.linalg.norm(x[..., None, :] - _PALETTE, axis=-1)  # [T, H, W, K]
    k = _PALETTE_NAMES.index(colour)
    # Foreground only: a gradient can pass through (or end in) the object's colour, but it fits the plane.
    to_bg = np.linalg.norm(x - bg, axis=-1)
    raw = (dist.argmin(-1) == k) & (dist[..., k] <= COLOUR_THRESHOLD) & (to_bg > FG_THRESHOLD)
    # Blurred edges are blends that may be nearest to a third colour: grow into neighbours that are nearer
    # the object's colour than the background (the half-way line of a blurred hard edge).
    nearer = dist[..., k] < to_bg
    t, h, w = raw.shape
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    kept, opened = np.zeros_like(raw), np.zeros_like(raw)
    for f in range(t):
        opened[f] = cv2.morphologyEx(raw[f].astype(np.uint8), cv2.MORPH_OPEN, kernel)  # specks do not count
        _, labels, stats, _ = cv2.connectedComponentsWithStats(opened[f].astype(np.uint8), connectivity=8)
        areas = stats[1:, cv2.CC_STAT_AREA]
        fits = np.nonzero(areas <= max_area * h * w)[0]  # a huge region is background, not an object
        if not len(fits):
            continue
        m = (labels == 1 + fits[areas[fits].argmax()]).astype(np.uint8)
        for _ in range(GROW_STEPS):
            m = cv2.dilate(m, kernel) & (m | nearer[f])
        kept[f] = m.astype(bool)
    return kept, opened


def object_mask(frames: np.ndarray, colour: str, bg_colour: str | None = None,
                max_area: float = MAX_AREA_FRAC) -> np.ndarray:
    """frames uint8 [T,H,W,3] -> bool [T,H,W]: per frame, the largest foreground blob of pixels nearest to
    `colour` (empty where there is none). The background is fitted from the pixels; `bg_colour` (the
    prompt's) only guards against asking for the background's own colour."""
    return _colour_masks(frames, colour, bg_colour, max_area=max_area)[0]


def centroid_path(mask: np.ndarray) -> np.ndarray:
    """bool [T,H,W] -> float [T,2] (x, y) pixel centroid (+0.5: pixel centres, as the world's); NaN if empty."""
    out = np.full((mask.shape[0], 2), np.nan)
    for f, m in enumerate(mask):
        ys, xs = np.nonzero(m)
        if len(xs):
            out[f] = xs.mean() + 0.5, ys.mean() + 0.5
    return out


@lru_cache(maxsize=None)
def _area_per_r2(shape: str) -> float:
    """Area of `shape` at radius r is this times r^2, measured on a large render."""
    return float(_shape_mask(shape, 256.0, 256.0, 200.0, 512, 512).sum()) / 200.0**2


def classify_shape(mask2d: np.ndarray, shapes: tuple[str, ...] = SHAPES) -> str:
    """bool [H,W] -> the shape of the world's `shapes` whose template (same area and centroid) overlaps the
    mask best (IoU)."""
    h, w = mask2d.shape
    ys, xs = np.nonzero(mask2d)
    if not len(xs):
        raise ValueError("empty mask")
    cx, cy = xs.mean() + 0.5, ys.mean() + 0.5
    best, best_iou = shapes[0], -1.0
    for shape in shapes:
        r = np.sqrt(len(xs) / _area_per_r2(shape))  # the radius that gives the mask's area
        tpl = _shape_mask(shape, cx, cy, r, h, w)
        ty, tx = np.nonzero(tpl)
        if len(tx):  # re-centre: a template's centroid is not exactly (cx, cy) (triangle, pixel grid)
            tpl = _shape_mask(shape, 2 * cx - tx.mean() - 0.5, 2 * cy - ty.mean() - 0.5, r, h, w)
        iou = (tpl & mask2d).sum() / max((tpl | mask2d).sum(), 1)
        if iou > best_iou:
            best, best_iou = shape, iou
    return best


def prompt_match(frames: np.ndarray, prompt: str, max_area: float = MAX_AREA_FRAC,
                 shapes: tuple[str, ...] = SHAPES) -> Match:
    """frames uint8 [T,H,W,3]: is the prompt's first object there in its colour and shape? `max_area` and
    `shapes` are the world's (`max_area_for(radius)`; the shapes it draws, which the judge chooses among)."""
    p = parse_prompt(prompt)
    colour, shape = p.objects[0]
    kept, blobs = _colour_masks(frames, colour, p.bg_colour, max_area=max_area)
    t, h, w = kept.shape
    areas = kept.reshape(t, -1).sum(1)
    coverage = areas / (h * w)
    present = coverage >= MIN_AREA_FRAC
    coherent = areas.sum() >= COHERENT_FRAC * blobs.sum()  # not a few blobs out of a colour-speckled frame
    colour_ok = bool(present.mean() >= PRESENT_FRAC and coherent)
    votes = [classify_shape(kept[f], shapes) == shape for f in np.nonzero(present)[0]]
    shape_ok = bool(votes) and sum(votes) > len(votes) / 2
    return Match(colour_ok, shape_ok, colour_ok and shape_ok, coverage, kept)


def background_residual(frames: np.ndarray, prompt: str, max_area: float = MAX_AREA_FRAC) -> float | None:
    """frames uint8 [T,H,W,3] -> mean RGB distance (0-255 scale) of the pixels away from every prompt
    object from the plane fitted to the frame; None for a textured background, which no plane fits. A
    plain or gradient background is such a plane, so this measures what a generator added that the prompt
    did not ask for: texture, stray blobs, a reference's colours leaking in."""
    p = parse_prompt(prompt)
    if p.background == "textured":
        return None
    x = frames.astype(np.float32)
    bg = np.stack([_background(f) for f in x])  # fitted once: the object masks below use the same planes
    away = np.ones(x.shape[:3], dtype=bool)
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (5, 5))
    for colour, _shape in p.objects:
        for f, m in enumerate(_colour_masks(frames, colour, p.bg_colour, bg, max_area)[0]):
            away[f] &= ~cv2.dilate(m.astype(np.uint8), kernel).astype(bool)  # blurred edges are not residue
    dist = np.linalg.norm(x - bg, axis=-1)
    resid = [dist[f][away[f]].mean() for f in range(len(x)) if away[f].any()]
    return float(np.mean(resid)) if resid else None


def _fill_nan(path: np.ndarray) -> np.ndarray | None:
    """Each NaN row takes the nearest valid frame's value; None when no frame is valid."""
    valid = np.nonzero(np.isfinite(path).all(1))[0]
    if not len(valid):
        return None
    nearest = valid[np.abs(np.arange(len(path))[:, None] - valid[None]).argmin(1)]
    return path[nearest]


def path_errors(path: np.ndarray, ref: np.ndarray) -> tuple[float, float]:
    """path, ref float [T,2] -> (relative, absolute) mean Euclidean error in pixels. Relative compares
    displacements from the first frame, so a different start does not count; absolute compares positions."""
    if path.shape != ref.shape:
        raise ValueError(f"path {path.shape} and reference {ref.shape} differ in shape")
    p = _fill_nan(np.asarray(path, dtype=np.float64))
    if p is None:
        return float("inf"), float("inf")
    ref = np.asarray(ref, dtype=np.float64)
    rel = np.linalg.norm((p - p[0]) - (ref - ref[0]), axis=1).mean()
    return float(rel), float(np.linalg.norm(p - ref, axis=1).mean())


def static_relative_error(ref: np.ndarray) -> float:
    """The relative error of an object that never moves: mean |r_t - r_0| over frames of ref [T,2]."""
    return float(np.linalg.norm(ref - ref[0], axis=1).mean())
