"""Stage 2's pieces that are not the loop: the forward process and v target, the batch's randomness (in a fixed
order, so a recipe retrains the same weights), the learning-rate schedule, the EMA and the RoPE tables."""
from __future__ import annotations

import numpy as np
import torch

from .recipes import Recipe


def noised(alphas: torch.Tensor, x0: torch.Tensor, noise: torch.Tensor, t: torch.Tensor):
    """x0, noise [B, F, C, h, w], t [B] (or 0-d) timesteps -> (x_t, v target): the forward process and the
    v-prediction target under `alphas` (the scheduler's alphas_cumprod)."""
    a = alphas[t].view(-1, 1, 1, 1, 1)
    return a.sqrt() * x0 + (1 - a).sqrt() * noise, a.sqrt() * noise - (1 - a).sqrt() * x0


def draw_batch(recipe: Recipe, gen: torch.Generator, bank_size: int, latent_shape: tuple[int, ...],
               noise_gen: torch.Generator | None = None):
    """One stage-2 batch's randomness from the seeded CPU generator, in a fixed order (another would change
    every recipe's weights): ([B] bank rows, [B] bool empty prompt, [B] timesteps 999 * u**high_noise_power,
    [B, *latent_shape] noise). With `noise_gen` (Recipe.device_noise) the noise comes from it, on its device."""
    idx = torch.randint(bank_size, (recipe.batch,), generator=gen)
    empty = torch.tensor([torch.rand(1, generator=gen).item() < recipe.empty_prompt for _ in idx])
    t = (999 * torch.rand(recipe.batch, generator=gen) ** recipe.high_noise_power).round().long()
    shape = (recipe.batch,) + tuple(latent_shape)
    if noise_gen is not None:
        return idx, empty, t, torch.randn(shape, generator=noise_gen, device=noise_gen.device)
    return idx, empty, t, torch.randn(shape, generator=gen)


def lr_factor(step: int, total: int, warmup: int = 0) -> float:
    """Stage 2's learning-rate multiplier: a linear warm-up over `warmup` steps times a cosine to 0 at `total`."""
    warm = min(1.0, (step + 1) / warmup) if warmup else 1.0
    return warm * 0.5 * (1 + float(np.cos(np.pi * (min(1.0, step / total) if total else 1.0))))


@torch.no_grad()
def ema_step(ema: dict, module: torch.nn.Module, decay: float) -> None:
    """ema <- decay * ema + (1 - decay) * weights, in one fused pass (ema lives on the module's device)."""
    state = module.state_dict()
    mine, live = [ema[k] for k in state], [v.detach() for v in state.values()]
    if decay == 0.0:
        torch._foreach_copy_(mine, live)
    else:
        torch._foreach_lerp_(mine, live, 1 - decay)


def rope(recipe: Recipe, transformer, device: str):
    """The transformer's RoPE tables for the recipe's latent grid."""
    from ..backbones.cogvideox_attn import rope_tables

    tokens = recipe.latent_size // recipe.patch
    return rope_tables(transformer.config, (recipe.latent_frames, tokens, tokens), device)


def token_table(tokenizer, prompts: list[str], length: int, device: str):
    """Prompts tokenised once: ([U, L] ids of the unique prompts, [N] row of each prompt, row of "")."""
    unique = sorted(set(prompts) | {""})
    ids = tokenizer(unique, padding="max_length", max_length=length, truncation=True, return_tensors="pt").input_ids
    row = {p: i for i, p in enumerate(unique)}
    return ids.to(device), torch.tensor([row[p] for p in prompts]), row[""]
