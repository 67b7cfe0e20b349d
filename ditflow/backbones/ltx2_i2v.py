"""LTX-2 image-to-video through diffusers' `LTX2ImageToVideoPipeline`, on top of the text-to-video adapter.

The picture is re-compressed as the pipeline does (H.264 at the text encoder generation's CRF: 33 for Gemma-3
models), resized (bilinear), VAE-encoded (its mode) and normalised into one latent frame; every forward puts
it at latent frame 0, whose tokens get timestep 0 (the others the step's), as the pipeline's conditioning mask.
The pipeline steps only frames 1..; here the whole latent steps and frame 0 is pasted again before each forward
and before decoding, which is the same; a latent-mode gradient on frame 0 is zero by construction.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from .base import Geometry
from .ltx2 import LTX2Backbone
from .ltx2_presets import I2V_ALIASES, I2V_PRESETS


@dataclass(frozen=True)
class LTX2Condition:
    """latent: the picture's normalised latent [1, C, 1, h, w]."""

    latent: Any


class LTX2I2VBackbone(LTX2Backbone):
    pipeline_class = "LTX2ImageToVideoPipeline"
    presets, aliases = I2V_PRESETS, I2V_ALIASES
    needs_image = True

    @classmethod
    def image_pipeline(cls, folder) -> str | None:
        return cls.pipeline_class

    @classmethod
    def pipeline_type(cls):
        from diffusers import LTX2ImageToVideoPipeline

        return LTX2ImageToVideoPipeline

    def condition(self, image: np.ndarray, geo: Geometry, generator) -> LTX2Condition:
        """The pipeline's image latent for uint8 [H, W, 3] `image` (the VAE's mode: the generator is not drawn)."""
        import torch
        from diffusers.pipelines.ltx2.utils import apply_image_conditioning_crf, resolve_default_image_crf
        from PIL import Image

        pipe = self.pipe
        crf = resolve_default_image_crf(pipe.text_encoder)
        pil = Image.fromarray(apply_image_conditioning_crf(np.ascontiguousarray(image), crf))
        pixels = pipe.video_processor.preprocess(pil, height=geo.height, width=geo.width)
        pixels = pixels.to(self.device, self.dtype)  # the pipeline casts it to the text embeddings' dtype
        with torch.no_grad():
            z = pipe.vae.encode(pixels.unsqueeze(2).to(pipe.vae.dtype)).latent_dist.mode().float()
        mean, std, _ = self._latent_stats(z)
        return LTX2Condition((z - mean) / std)  # the pipeline normalises the picture without the scaling factor

    def video_input(self, x, cond: LTX2Condition | None):
        """x with latent frame 0 replaced by the picture's latent."""
        import torch

        if cond is None:
            raise ValueError("an image-to-video forward needs its condition")
        first = cond.latent.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1, -1)
        return torch.cat([first, x[:, :, 1:]], dim=2)

    def video_timestep(self, t, batch: int, geo: Geometry, cond):
        """[B, S]: 0 on frame 0's tokens, t on the others (the pipeline's t * (1 - conditioning mask))."""
        import torch

        f, h, w = geo.grid
        per_frame = torch.ones(f, device=t.device)
        per_frame[0] = 0
        return (t.float() * per_frame.repeat_interleave(h * w)).unsqueeze(0).expand(batch, -1)

    def final_latent(self, x, cond: LTX2Condition):
        """The picture's latent at frame 0 for decoding, as the pipeline's latent holds it."""
        return x if cond is None else self.video_input(x, cond)
