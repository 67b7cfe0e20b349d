"""The denoising loop, in the shape of k-diffusion's samplers, and the classifier-free guided prediction.

`sample()` is the loop; `Denoiser` is one CFG prediction (with KV injection at its active steps); a guide
(see guides.py) may replace the latent or the positions before a step's prediction.
"""
from __future__ import annotations

import math
from contextlib import ExitStack

import torch

from .model import Model
from .processors import Attention, installed


def guidance_steps(steps: int, guidance_range: tuple[int, int]) -> range:
    """Step indices with guidance: the paper's range (50, 40) of 50 steps is steps 0..9."""
    hi, lo = guidance_range
    return range(max(steps - hi, 0), max(steps - lo, 0))


def scheduler_step(scheduler, v, x0_prev, t, t_prev, x, extra):
    """One step of either CogVideoX scheduler; returns (x_next, x0). DPM also needs the previous x0."""
    from diffusers import CogVideoXDPMScheduler

    if isinstance(scheduler, CogVideoXDPMScheduler):
        x_next, x0 = scheduler.step(v, x0_prev, t, t_prev, x, **extra, return_dict=False)
    else:
        out = scheduler.step(v, t, x, **extra, return_dict=True)
        x_next, x0 = out.prev_sample, out.pred_original_sample
    return x_next, x0


@torch.no_grad()
def sample(denoise, x, timesteps, scheduler, extra, *, guide=None, callback=None):
    x0 = None
    for i, t in enumerate(timesteps):
        positions = None
        if guide is not None and guide.active(i):
            x, positions = guide(x, i, t)  # grad only inside the guide; detached out
        v = denoise(x, i, t, positions)
        x_next, x0 = scheduler_step(scheduler, v, x0, t, timesteps[i - 1] if i > 0 else None, x, extra)
        x = x_next.to(x.dtype)
        if callback is not None:
            callback(i=i, t=t, x=x, x0=x0)
    return x


class Denoiser:
    """Classifier-free guided prediction, with KV injection at the steps where `injection` is active."""

    def __init__(self, model: Model, text_cfg, cfg: float, dynamic_cfg: bool, steps: int, injection=None):
        self.model, self.text, self.cfg, self.dynamic, self.steps = model, text_cfg, cfg, dynamic_cfg, steps
        self.injection = injection

    def scale(self, t) -> float:
        if not self.dynamic:
            return self.cfg
        # CogVideoX's dynamic CFG (the diffusers pipeline's use_dynamic_cfg), as the paper's 5B runs use
        return 1 + self.cfg * ((1 - math.cos(math.pi * ((self.steps - t.item()) / self.steps) ** 5.0)) / 2)

    def __call__(self, x, i, t, positions=None):
        cfg_on = self.cfg > 1.0
        inp = torch.cat([x, x]) if cfg_on else x
        text = self.text if cfg_on else self.text[-1:]
        with ExitStack() as stack:
            if self.injection is not None and self.injection.active(i):
                stack.enter_context(self.injection.installed(i, t))
            elif positions is not None:  # optimised tables need the out-of-place RoPE of our processor
                stack.enter_context(installed(self.model.transformer, {}, default=Attention()))
            v = self.model.forward(inp, t, text, positions).float()
        if cfg_on:
            uncond, cond = v.chunk(2)
            v = uncond + self.scale(t) * (cond - uncond)
        return v
