"""Wan image-to-video through diffusers' `WanImageToVideoPipeline`: Wan 2.1 I2V-14B (480P, 720P), Wan 2.2
I2V-A14B (two experts) and Wan 2.2 TI2V-5B's image mode, on top of the text-to-video adapter.

Two ways to condition, by the folder's config (as the pipeline):
- channels (2.1 I2V, 2.2 I2V-A14B; transformer in_channels 36): the noisy latent [B, 16, F, h, w] is concatenated
  on the channel axis with a 4-channel mask (frame 0 known) and the VAE-encoded, normalised video of the image
  followed by black frames; Wan 2.1 also takes a CLIP vision encoder's penultimate states of the image as
  `encoder_hidden_states_image` (the cross-attention puts them before the 512 text tokens).
- frame 0 (TI2V-5B, `expand_timesteps`): frame 0 of the latent is replaced by the clean image latent in every
  forward, its tokens get timestep 0, and it is pasted once more before decoding; a gradient on frame 0 is
  zero by construction.
The guided latent is only the noisy one: the condition is a constant of every forward, never optimised.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .base import Geometry
from .preset import ModelPreset
from .wan import WanBackbone
from .wan_presets import I2V_ALIASES, I2V_LAYOUTS, I2V_PRESETS, folder_preset

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class WanCondition:
    """latent: [1, 20, F, h, w] (mask + image video) or, frame-0 mode, [1, C, 1, h, w]; mask: frame-0 mode's
    [1, 1, F, h, w] (0 on frame 0) or None; image_embeds: [1, 257, D] CLIP states (Wan 2.1) or None."""

    latent: Any
    mask: Any = None
    image_embeds: Any = None


class WanI2VBackbone(WanBackbone):
    pipeline_class = "WanImageToVideoPipeline"
    presets, aliases = I2V_PRESETS, I2V_ALIASES
    needs_image = True

    @classmethod
    def folder_preset(cls, model, folder, defaults) -> ModelPreset:
        """A released I2V layout's preset, else the pipeline's own defaults (480x832, 81 frames, CFG 5, fp32)."""
        return folder_preset(model, folder, defaults, cls.setting_names(), I2V_PRESETS, I2V_LAYOUTS)

    @classmethod
    def pipeline_type(cls):
        from diffusers import WanImageToVideoPipeline

        return WanImageToVideoPipeline

    @classmethod
    def image_pipeline(cls, folder) -> str | None:
        return cls.pipeline_class

    @property
    def frame0_mode(self) -> bool:
        return bool(self.pipe.config.get("expand_timesteps"))

    # -- the condition --------------------------------------------------------------------------------
    def condition(self, image: np.ndarray, geo: Geometry, generator) -> WanCondition:
        """The pipeline's condition for uint8 [H, W, 3] `image` at this geometry (its prepare_latents, given a
        latent so that it draws no noise: the VAE takes the mode, so the generator is not used)."""
        import torch
        from PIL import Image

        pipe, pil = self.pipe, Image.fromarray(image)
        z = pipe.vae.config.z_dim
        pixels = pipe.video_processor.preprocess(pil, height=geo.height, width=geo.width).to(self.device, torch.float32)
        placeholder = torch.zeros(1, z, geo.latent_frames, geo.latent_height, geo.latent_width, device=self.device)
        with torch.no_grad():
            out = pipe.prepare_latents(pixels, 1, z, geo.height, geo.width, geo.frames, torch.float32, self.device,
                                       None, placeholder)
            embeds = None
            if self.transformer.config.get("image_dim") is not None:  # Wan 2.1 I2V: CLIP vision states
                embeds = pipe.encode_image(pil, self.device).to(self.dtype)
        if self.frame0_mode:
            return WanCondition(out[1], mask=out[2], image_embeds=embeds)
        return WanCondition(out[1], image_embeds=embeds)

    def initial_noise(self, geo: Geometry, generator):
        """float32 noise of the VAE's channels (the transformer's in_channels include the condition's)."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        shape = (1, self.pipe.vae.config.z_dim, geo.latent_frames, geo.latent_height, geo.latent_width)
        return randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)

    def model_inputs(self, x, t, geo: Geometry, cond: WanCondition | None):
        """What the pipeline feeds the transformer: x with the condition's channels, or with frame 0 replaced
        by the image (timestep 0 on its tokens)."""
        import torch

        if cond is None:
            raise ValueError("an image-to-video forward needs its condition")
        b = x.shape[0]
        extra = {} if cond.image_embeds is None else {"encoder_hidden_states_image": cond.image_embeds.expand(b, -1, -1)}
        if cond.mask is None:
            latent = cond.latent.to(x.device, x.dtype).expand(b, -1, -1, -1, -1)
            return torch.cat([x, latent], dim=1), t.expand(b), extra
        mask = cond.mask.to(x.device)
        hidden = (1 - mask) * cond.latent.to(x.device) + mask * x
        _, ph, pw = self.transformer.config.patch_size
        ts = (mask[0][0][:, ::ph, ::pw] * t).flatten().unsqueeze(0).expand(b, -1)
        return hidden, ts, extra

    def final_latent(self, x, cond: WanCondition):
        """Frame-0 mode pastes the image latent back before decoding, as the pipeline."""
        if cond is None or cond.mask is None:
            return x
        mask = cond.mask.to(x.device)
        return (1 - mask) * cond.latent.to(x.device) + mask * x

