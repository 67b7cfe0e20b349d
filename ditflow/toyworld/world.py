"""Procedural videos of one (sometimes two) shapes in named colours over plain, gradient or textured
backgrounds, moving along varied paths. Seeded and deterministic; every clip carries the ground truth
(trajectories and masks). The prompt describes appearance only, never motion, so a model's motion is
random and only guidance can fix it.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40), "green": (40, 180, 60), "blue": (40, 80, 220), "yellow": (235, 215, 40),
    "orange": (240, 140, 30), "purple": (140, 50, 190), "pink": (240, 120, 190), "white": (245, 245, 245),
    "black": (15, 15, 15), "grey": (128, 128, 128), "brown": (130, 80, 40),
}
SHAPES = ("circle", "square", "triangle", "diamond", "cross")  # the classic world's (Recipe(), v4)
# The coarse world's (v8, v9): shapes that differ at the 8x8 token grid, not only in a few edge pixels. In the
# classic world a wrong shape word costs a model at most a few percent of its loss (make probe-text), and its
# samples are mostly circles whatever the prompt asks (docs/toy-model.md)
COARSE_SHAPES = ("circle", "triangle", "bar", "column")
ALL_SHAPES = tuple(dict.fromkeys(SHAPES + COARSE_SHAPES))
BACKGROUNDS = ("plain", "gradient", "textured")
MOTIONS = ("straight", "arc", "bounce", "zigzag", "pan")
BG_COLOURS = ("grey", "black", "white", "green", "blue", "brown")


@dataclass
class Clip:
    frames: np.ndarray  # uint8 [T, H, W, 3]
    prompt: str
    trajectories: np.ndarray  # float [objects, T, 2]: (x, y) centre of each object in pixels
    masks: np.ndarray  # bool [objects, T, H, W]: where each object is visible
    shapes: list[str]
    colours: list[str]
    background: str
    motion: str
    radii: list[float] = field(default_factory=list)  # each object's radius in pixels, as drawn


@dataclass(frozen=True)
class World:
    """What a toy model's training clips were drawn from, beyond size and frames: benchmarks draw references
    and judge shapes in the same world (`references.model_world`)."""
    radius: tuple[float, float]  # object radii, fractions of the frame side
    shapes: tuple[str, ...]


def _shape_mask(shape: str, cx: float, cy: float, r: float, h: int, w: int) -> np.ndarray:
    """Anti-aliasing is left to the VAE: a hard mask keeps colour statistics exact for judging."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32) + 0.5
    dx, dy = xx - cx, yy - cy
    if shape == "circle":
        return dx * dx + dy * dy <= r * r
    if shape == "square":
        return (np.abs(dx) <= r * 0.85) & (np.abs(dy) <= r * 0.85)
    if shape == "diamond":
        return np.abs(dx) + np.abs(dy) <= r
    if shape == "cross":
        arm = r * 0.35
        return ((np.abs(dx) <= arm) & (np.abs(dy) <= r)) | ((np.abs(dy) <= arm) & (np.abs(dx) <= r))
    if shape == "bar":  # horizontal, as wide as the circle, 0.4 of its height
        return (np.abs(dx) <= r) & (np.abs(dy) <= r * 0.4)
    if shape == "column":
        return (np.abs(dx) <= r * 0.4) & (np.abs(dy) <= r)
    if shape == "triangle":  # pointing up, centred on its centroid
        top, base = cy - r, cy + r * 0.6
        half = (yy - top) / (base - top) * r
        return (yy >= top) & (yy <= base) & (np.abs(dx) <= half)
    raise ValueError(f"unknown shape {shape!r}")


def _background(kind: str, colour: str, rng: np.random.Generator, h: int, w: int, pad: int) -> np.ndarray:
    """A background larger than the frame by `pad` on each side, so whole-scene pans can crop it."""
    H, W = h + 2 * pad, w + 2 * pad
    base = np.array(COLOURS[colour], dtype=np.float32)
    if kind == "plain":
        img = np.broadcast_to(base, (H, W, 3)).copy()
    elif kind == "gradient":
        other = np.array(COLOURS[rng.choice([c for c in BG_COLOURS if c != colour])], dtype=np.float32)
        angle = rng.uniform(0, 2 * np.pi)
        yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
        s = (np.cos(angle) * xx + np.sin(angle) * yy)
        s = (s - s.min()) / (s.max() - s.min() + 1e-6)
        img = base * (1 - s[..., None]) + other * s[..., None]
    elif kind == "textured":
        import cv2

        noise = rng.standard_normal((H // 4 + 1, W // 4 + 1)).astype(np.float32)
        noise = cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)
        img = base + 35.0 * noise[..., None]
    else:
        raise ValueError(f"unknown background {kind!r}")
    return np.clip(img, 0, 255)


def _path(motion: str, rng: np.random.Generator, t: np.ndarray, h: int, w: int, r: float, travel: float) -> np.ndarray:
    """Centre positions [T, 2] in pixels for one object; `travel` is the straight-line extent in pixels."""
    lo, hi = np.array([r, r]), np.array([w - r, h - r])
    angle = rng.uniform(0, 2 * np.pi)
    direction = np.array([np.cos(angle), np.sin(angle)])
    if motion in ("straight", "pan"):
        offsets = np.outer(t, direction) * travel
    elif motion == "arc":
        radius = travel / rng.uniform(1.2, 2.0)
        sweep = travel / radius * rng.choice([-1, 1])
        a = angle + sweep * t
        offsets = radius * np.stack([np.cos(a) - np.cos(angle), np.sin(a) - np.sin(angle)], axis=1)
    elif motion == "zigzag":
        normal = np.array([-direction[1], direction[0]])
        wiggle = np.abs(((t * rng.uniform(2.0, 3.0)) % 2) - 1) * 2 - 1  # triangle wave in [-1, 1]
        offsets = np.outer(t, direction) * travel + np.outer(wiggle, normal) * travel * 0.25
    elif motion == "bounce":
        offsets = np.outer(t, direction) * travel * 1.6  # long path, folded back at the walls below
    else:
        raise ValueError(f"unknown motion {motion!r}")
    low = lo + np.maximum(-offsets.min(0), 0) * (motion != "bounce")
    # a path longer than the frame cannot fit whole: start anywhere valid, the clip below keeps it inside
    start = rng.uniform(low, np.maximum(hi - np.maximum(offsets.max(0), 0) * (motion != "bounce"), low + 1e-3))
    pos = start + offsets
    if motion == "bounce":  # reflect at the walls
        size = hi - lo
        rel = np.mod(pos - lo, 2 * size)
        pos = lo + np.where(rel > size, 2 * size - rel, rel)
    return np.clip(pos, lo, hi)


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def _draw_scene(rng: np.random.Generator, two_objects_prob: float,
                shape_set: tuple[str, ...]) -> tuple[str, str, str, list[str], list[str]]:
    """A clip's first draws, which fix its prompt: (motion, background kind, background colour, shapes,
    colours). Shared with `scene_prompt`, so prompts can be drawn without rendering."""
    n = 2 if rng.random() < two_objects_prob else 1
    motion = str(rng.choice(MOTIONS))
    bg_kind = str(rng.choice(BACKGROUNDS))
    bg_colour = str(rng.choice(BG_COLOURS))
    shapes, colours = [], []
    for _ in range(n):
        shapes.append(str(rng.choice(shape_set)))
        colours.append(str(rng.choice([c for c in COLOURS if c != bg_colour and c not in colours])))
    return motion, bg_kind, bg_colour, shapes, colours


def scene_prompt(seed: int, two_objects_prob: float = 0.2, shapes: tuple[str, ...] = SHAPES) -> str:
    """make_clip(seed, shapes=shapes).prompt, without rendering the clip."""
    _, bg_kind, bg_colour, shapes, colours = _draw_scene(np.random.default_rng(seed), two_objects_prob, shapes)
    return prompt_text(list(zip(colours, shapes)), bg_kind, bg_colour)


OBJECT_RADIUS = (0.14, 0.22)  # fraction of the frame side. At 64 px a 4x-downsampling VAE blurs smaller shapes
# past recognition: after a round trip the judge reads 29% of the shapes of radius 0.10-0.14, 66% of 0.14-0.18
CLASSIC_WORLD = World(OBJECT_RADIUS, SHAPES)  # Recipe()'s (v4) and a folder's without recipe.json; v8, v9: COARSE_SHAPES


def make_clip(seed: int, frames: int = 17, height: int = 128, width: int = 128, *, two_objects_prob: float = 0.2,
              min_travel: float = 0.3, radius: tuple[float, float] = OBJECT_RADIUS,
              shapes: tuple[str, ...] = SHAPES) -> Clip:
    """One deterministic clip. `min_travel` is the least straight-line travel as a fraction of the frame
    (0.3 of 128 px = 38 px: several patches of a 16x16 patch grid); `radius` the range of object radii, also
    as a fraction of the frame side; `shapes` the world's shape set (SHAPES, or COARSE_SHAPES)."""
    rng = np.random.default_rng(seed)
    motion, bg_kind, bg_colour, shapes, colours = _draw_scene(rng, two_objects_prob, shapes)
    n = len(shapes)
    t = np.linspace(0.0, 1.0, frames)
    side = min(height, width)
    pad = int(side * 0.5) if motion == "pan" else 0
    bg = _background(bg_kind, bg_colour, rng, height, width, pad)
    radii = [side * rng.uniform(*radius) for _ in range(n)]
    travel = side * rng.uniform(min_travel, 0.6)
    if motion == "pan":  # the camera moves: background and objects shift together, objects also drift
        ang = rng.uniform(0, 2 * np.pi)
        cam = np.outer(t, [np.cos(ang), np.sin(ang)]) * min(travel, pad * 0.95)
    else:
        cam = np.zeros((frames, 2))
    trajectories = np.zeros((n, frames, 2), dtype=np.float32)
    for i in range(n):
        if motion == "pan":  # objects fixed in the scene: they move on screen opposite to the camera
            r = radii[i]
            # a range may be empty (a large object and a long pan): start at its low end, the clip keeps it inside
            lo_x, hi_x = (r + travel, width - r) if cam[-1, 0] > 0 else (r, width - r - travel)
            lo_y, hi_y = (r + travel, height - r) if cam[-1, 1] > 0 else (r, height - r - travel)
            start = np.array([rng.uniform(lo_x, max(hi_x, lo_x)), rng.uniform(lo_y, max(hi_y, lo_y))])
            trajectories[i] = np.clip(start - cam, radii[i], [width - radii[i], height - radii[i]])
        else:
            trajectories[i] = _path(motion, rng, t, height, width, radii[i], travel)
    video = np.empty((frames, height, width, 3), dtype=np.uint8)
    masks = np.zeros((n, frames, height, width), dtype=bool)
    for f in range(frames):
        ox, oy = (np.round(cam[f]).astype(int) + pad) if motion == "pan" else (0, 0)
        img = bg[oy : oy + height, ox : ox + width].copy()
        for i in range(n):
            m = _shape_mask(shapes[i], *trajectories[i, f], radii[i], height, width)
            for j in range(i):  # later objects cover earlier ones
                masks[j, f] &= ~m
            masks[i, f] = m
            img[m] = COLOURS[colours[i]]
        video[f] = img.astype(np.uint8)
    return Clip(video, prompt_text(list(zip(colours, shapes)), bg_kind, bg_colour), trajectories, masks, shapes,
                colours, bg_kind, motion, radii)


def draw_still(colour: str, shape: str, centre: tuple[float, float], radius: float, bg_kind: str, bg_colour: str,
               height: int, width: int, seed: int = 0) -> np.ndarray:
    """uint8 [H, W, 3]: one object of the world drawn at `centre` (x, y pixels) over a background of the world
    (its gradient's second colour or texture from `seed`): an image-to-video model's picture, e.g. another
    object placed where a reference's starts. Its prompt is prompt_text([(colour, shape)], bg_kind, bg_colour)."""
    img = _background(bg_kind, bg_colour, np.random.default_rng(seed), height, width, 0)
    img[_shape_mask(shape, *centre, radius, height, width)] = COLOURS[colour]
    return img.astype(np.uint8)


def _shape_regions(clip: Clip, shapes: tuple[str, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(covered, ambiguous) bool [T, H, W]: pixels that some of `shapes` would cover at one of the clip's objects
    (its centre and radius), and those where the shapes disagree for one of them. Ambiguity is per object: one
    object's core does not hide another's disagreeing edge."""
    t, h, w = clip.frames.shape[:3]
    covered, ambiguous = np.zeros((t, h, w), dtype=bool), np.zeros((t, h, w), dtype=bool)
    for i, r in enumerate(clip.radii):
        for f in range(t):
            drawn = [_shape_mask(s, *clip.trajectories[i, f], r, h, w) for s in shapes]
            some = np.logical_or.reduce(drawn)
            covered[f] |= some
            ambiguous[f] |= some & ~np.logical_and.reduce(drawn)
    return covered, ambiguous


def shape_region(clip: Clip, shapes: tuple[str, ...] = SHAPES) -> np.ndarray:
    """bool [T, H, W]: pixels any of the world's `shapes` would cover at the clip's objects: where a prompt's
    shape word can change what is drawn (a fair region to compare prompts whose shapes differ in area)."""
    return _shape_regions(clip, shapes)[0]


def shape_ambiguity(clip: Clip, shapes: tuple[str, ...] = SHAPES) -> np.ndarray:
    """bool [T, H, W]: pixels where the world's `shapes` disagree for some object of the clip (covered by one
    shape and not by another of the same centre and radius): the only pixels where the shape word matters."""
    return _shape_regions(clip, shapes)[1]


def prompt_text(objects: list[tuple[str, str]], bg_kind: str, bg_colour: str) -> str:
    """"a red circle and a blue square on a textured grey background" from (colour, shape) pairs."""
    things = " and ".join(f"{_article(c)} {c} {s}" for c, s in objects)
    bg_text = {"plain": f"a {bg_colour} background", "gradient": f"a {bg_colour} gradient background",
               "textured": f"a textured {bg_colour} background"}[bg_kind]
    return f"{things} on {bg_text}"
