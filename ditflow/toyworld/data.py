"""Training data: world clips drawn deterministically per (stage, step), their pixels and latent-grid masks,
and stage 2's latent bank (clips encoded once, kept in the work folder)."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from ..progress import Progress
from .recipes import Recipe
from .world import Clip, make_clip, shape_ambiguity

TRAIN_SEED0 = 10_000  # training seeds start here; seeds below are held out for evaluation


def world_seed(stage: int, step: int, batch: int, i: int) -> int:
    """The world seed of clip i of a step's batch: distinct per stage, never below TRAIN_SEED0."""
    return TRAIN_SEED0 + stage * 10_000_000 + step * batch + i


def render_batch(recipe: Recipe, step: int, batch: int, stage: int) -> list[Clip]:
    """The clips of one step, deterministic in (stage, step)."""
    return [make_clip(world_seed(stage, step, batch, i), recipe.frames, recipe.size, recipe.size,
                      radius=recipe.object_radius, shapes=recipe.shapes) for i in range(batch)]


def frames_to_video(frames: np.ndarray) -> torch.Tensor:
    """uint8 frames [B, T, H, W, 3] -> pixels [B, 3, T, H, W] in [-1, 1]."""
    return torch.from_numpy(frames.astype(np.float32) / 127.5 - 1.0).permute(0, 4, 1, 2, 3)


def to_video(clips: list[Clip]) -> torch.Tensor:
    """Pixels [B, 3, T, H, W] in [-1, 1]."""
    return frames_to_video(np.stack([c.frames for c in clips]))


def clip_batch(recipe: Recipe, step: int, batch: int, stage: int) -> tuple[torch.Tensor, list[str]]:
    """Clips for one step, deterministic in (stage, step): pixels [B, 3, T, H, W] in [-1, 1] and prompts."""
    clips = render_batch(recipe, step, batch, stage)
    return to_video(clips), [c.prompt for c in clips]


def latent_rgb(video: torch.Tensor, spatial: int, temporal: int = 4) -> torch.Tensor:
    """The frames as the latent grid sees them: [B, 3, T, H, W] -> [B, 3, 1 + (T-1)/temporal, H/s, W/s], the
    first frame alone and then the mean of each group of `temporal` frames, area-downsampled by `spatial`."""
    first, rest = video[:, :, :1], video[:, :, 1:]
    b, c, t, h, w = rest.shape
    groups = rest.reshape(b, c, t // temporal, temporal, h, w).mean(dim=3)
    return torch.nn.functional.avg_pool3d(torch.cat([first, groups], dim=2), (1, spatial, spatial))


def to_latent_grid(mask: np.ndarray, spatial: int, temporal: int = 4) -> np.ndarray:
    """bool [T, H, W] pixel-frame mask -> float [F, h, w]: a latent frame covers its group of pixel frames (set
    in any of them), averaged over each latent pixel's block."""
    groups = [mask[:1]] + [mask[1 + temporal * k: 1 + temporal * (k + 1)] for k in range((len(mask) - 1) // temporal)]
    lat = np.stack([g.any(axis=0) for g in groups]).astype(np.float32)
    t, h, w = lat.shape
    return lat.reshape(t, h // spatial, spatial, w // spatial, spatial).mean(axis=(2, 4))


def latent_mask(clip: Clip, spatial: int, temporal: int = 4) -> np.ndarray:
    """Object coverage of a clip at latent resolution [F, h, w] (any object)."""
    return to_latent_grid(clip.masks.any(axis=0), spatial, temporal)


@torch.no_grad()
def encode(vae, video: torch.Tensor, scaling: float) -> torch.Tensor:
    """Pixels [B, 3, T, H, W] -> scaled latents [B, F, C, h, w] (the encoder's mode: no draw)."""
    return (vae.encode(video).latent_dist.mode() * scaling).permute(0, 2, 1, 3, 4)


def latent_scaling(recipe: Recipe, vae, device: str) -> float:
    """The latent scaling factor: unit-variance latents, as CogVideoX's scaling factor gives its data."""
    video, _ = clip_batch(recipe, 0, 16, stage=3)
    return float(1.0 / encode(vae.to(device), video.to(device), 1.0).std())


def bank_rows(recipe: Recipe, step: int, batch: int):
    """Batch `step` of the latent bank, rendered: (uint8 frames [B, T, H, W, 3], prompts, [B, F, h, w] object
    coverage, [B, F, h, w] shape ambiguity or None). A top-level function so worker processes can run it."""
    clips = render_batch(recipe, step, batch, stage=2)
    masks = np.stack([latent_mask(c, recipe.spatial) for c in clips])
    ambiguity = (np.stack([to_latent_grid(shape_ambiguity(c, recipe.shapes), recipe.spatial) for c in clips])
                 if recipe.shape_weight else None)
    return np.stack([c.frames for c in clips]), [c.prompt for c in clips], masks, ambiguity


def rendered(recipe: Recipe, batches: int, batch: int, workers: int):
    """The bank's batches in order, rendered by `workers` processes (0: this one). Rendering is numpy on the CPU
    and costs as much as the VAE pass, so a machine with many cores and a GPU wants both at once."""
    from functools import partial

    render = partial(bank_rows, recipe, batch=batch)
    if workers <= 0:
        yield from map(render, range(batches))
        return
    import multiprocessing

    # fork: the workers only run numpy, never CUDA, so a CUDA context in the parent is harmless
    with multiprocessing.get_context("fork").Pool(workers) as pool:
        yield from pool.imap(render, range(batches), chunksize=4)


def latent_bank(recipe: Recipe, vae, scaling: float, work: Path, device: str, progress: Progress, workers: int = 0):
    """`recipe.bank` training clips encoded once: ([B, F, C, h, w] scaled latents, prompts, [B, F, 1, h, w]
    object coverage, [B, F, 1, h, w] shape ambiguity (`world.shape_ambiguity`; None when the recipe does not
    weigh it)), kept in the work folder so a resumed run does not encode them again. The same for any
    `workers`."""
    from safetensors.torch import load_file, save_file

    path = work / "latents.safetensors"
    if path.is_file() and (work / "latents.json").is_file():
        meta = json.loads((work / "latents.json").read_text())
        if meta.get("size") == recipe.bank and meta.get("scaling") == scaling:
            saved = load_file(str(path))
            if "masks" in saved and ("ambiguity" in saved or not recipe.shape_weight):  # else encoded again
                return saved["latents"], meta["prompts"], saved["masks"], saved.get("ambiguity")
    chunks, prompts, masks, ambiguity, batch = [], [], [], [], 32
    with progress.task("encode training clips", total=recipe.bank) as bar:
        for frames, p, m, a in rendered(recipe, -(-recipe.bank // batch), batch, workers):
            chunks.append(encode(vae, frames_to_video(frames).to(device), scaling).cpu())
            prompts += p
            masks.append(m)
            if a is not None:
                ambiguity.append(a)
            bar.advance(advance=batch)
    latents = torch.cat(chunks)[: recipe.bank].contiguous()
    saved = {"latents": latents, "masks": torch.from_numpy(np.concatenate(masks)[: recipe.bank])[:, :, None].contiguous()}
    if ambiguity:
        saved["ambiguity"] = torch.from_numpy(np.concatenate(ambiguity)[: recipe.bank])[:, :, None].contiguous()
    save_file(saved, str(work / ".latents.tmp"))
    os.replace(work / ".latents.tmp", path)
    (work / "latents.json").write_text(json.dumps({"size": recipe.bank, "scaling": scaling, "prompts": prompts[: recipe.bank]}))
    return latents, prompts[: recipe.bank], saved["masks"], saved.get("ambiguity")
