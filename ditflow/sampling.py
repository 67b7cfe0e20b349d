"""The denoising loop, in the shape of k-diffusion's samplers, and the classifier-free guided prediction.

`sample()` is the loop; `Denoiser` is one CFG prediction (with KV injection at its active steps); a guide
(see guides.py) may replace the latent or the positions before a step's prediction. The backbone steps its
scheduler and keeps whatever state that scheduler needs between steps.
"""
from __future__ import annotations

from contextlib import ExitStack

import torch

from .finite import WEIGHTS, check_finite
from .model import Model

STEP_HINT = f"try a lower --cfg or --lr; {WEIGHTS}"


@torch.no_grad()
def sample(denoise, x, timesteps, backbone, state=None, *, guide=None, callback=None):
    """Walk `timesteps` from latent x; `state` is the backbone's `sampler_state` (None: a fresh one)."""
    state = backbone.sampler_state() if state is None else state
    for i, t in enumerate(timesteps):
        positions = None
        if guide is not None and guide.active(i):
            x, positions = guide(x, i, t)  # grad only inside the guide; detached out
        v = denoise(x, i, t, positions)
        x_next, x0, state = backbone.step(v, t, x, state)
        x = x_next.to(x.dtype)
        # a diverged step (a huge CFG or lr, an overflow) stops here, not as black frames after the last step
        check_finite(f"the latent after denoising step {i + 1} of {len(timesteps)}", x, hint=STEP_HINT)
        if callback is not None:
            callback(i=i, t=t, x=x, x0=x0)
    return x


class Denoiser:
    """Classifier-free guided prediction, with KV injection at the steps where `injection` is active.
    text_cfg: [2, L, D] (negative, positive); the backbone runs CFG its model's way."""

    def __init__(self, model: Model, text_cfg, cfg: float, steps: int, injection=None):
        self.model, self.text, self.cfg, self.steps = model, text_cfg, cfg, steps
        self.injection = injection

    def scale(self, t) -> float:
        return self.model.backbone.cfg_scale(self.cfg, self.steps, t)

    def __call__(self, x, i, t, positions=None):
        with ExitStack() as stack:
            if self.injection is not None and self.injection.active(i):
                stack.enter_context(self.injection.installed(i, t))
            elif positions is not None:  # optimised tables need the out-of-place RoPE of our processor
                stack.enter_context(self.model.install({}))
            return self.model.predict(x, t, self.text, self.scale(t) if self.cfg > 1.0 else None, positions)
