"""What the benchmarks and probes draw and measure a toy model with: the world it was trained on (from its
recipe.json), held-out reference clips of that world, and the denoising error on an object's pixels."""
from __future__ import annotations

import json
from pathlib import Path

import torch

from .world import CLASSIC_WORLD, MOTIONS, OBJECT_RADIUS, SHAPES, Clip, World, make_clip


def model_world(model: Path) -> World:
    """The world (object radii, shapes) a toy model folder was trained on, from its recipe.json, so benchmarks
    draw references like its training clips. A folder without one gets CLASSIC_WORLD; a recipe.json without
    object_radius was drawn at 0.10-0.18, one without shapes in the classic SHAPES (docs/toy-model.md)."""
    path = Path(model) / "recipe.json"
    if not path.is_file():
        return CLASSIC_WORLD
    recipe = json.loads(path.read_text())
    return World(tuple(recipe.get("object_radius", (0.10, 0.18))), tuple(recipe.get("shapes", SHAPES)))


def model_world_clip(seed: int, model: Path) -> Clip:
    """World clip `seed` as a toy model folder's training clips were drawn (its recipe's size, frames, radius,
    shapes)."""
    recipe, world = json.loads((Path(model) / "recipe.json").read_text()), model_world(model)
    return make_clip(seed, recipe["frames"], recipe["size"], recipe["size"], radius=world.radius, shapes=world.shapes)


def held_out_clips(n: int, frames: int, height: int, width: int, radius: tuple[float, float] = OBJECT_RADIUS,
                   motions: tuple[str, ...] | None = None, shapes: tuple[str, ...] = SHAPES) -> list[tuple[int, Clip]]:
    """(seed, clip) for the first n single-object clips of held-out seeds (from 0; training starts at
    data.TRAIN_SEED0), optionally only of some kinds of motion: the references every toy benchmark uses."""
    bad = set(motions or ()) - set(MOTIONS)
    if bad:
        raise ValueError(f"unknown motion(s) {', '.join(sorted(bad))}; the world has {', '.join(MOTIONS)}")
    out, seed = [], 0
    while len(out) < n:
        clip = make_clip(seed, frames, height, width, radius=radius, shapes=shapes)
        if len(clip.shapes) == 1 and (not motions or clip.motion in motions):
            out.append((seed, clip))
        seed += 1
    return out


def object_errors(pred: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """pred, target [B, F, C, h, w], mask [B, F, 1, h, w] object coverage -> [B] squared error per
    covered latent pixel (mean over channels)."""
    err = ((pred - target) ** 2).mean(dim=2, keepdim=True)
    return (err * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp_min(1e-6)
