"""HunyuanVideo 1.5 image-to-video (480p, 720p I2V) through diffusers' `HunyuanVideo15ImageToVideoPipeline`, on top
of the text-to-video adapter.

The picture enters twice, as the pipeline does: its VAE latent (the mode, scaled) on frame 0 of the condition
latent with a mask of 1 on that frame, both concatenated to the noisy latent's channels in every forward, and a
SigLIP vision tower's last hidden states (729 tokens for the release) as the transformer's `image_embeds`, the
first tokens of every block's text stream. Frame 0 of the noisy latent is still denoised (the model learnt to make
it the picture), so latent-mode guidance leaves it out of the gradient (`Backbone.guided_latent`).

The pipeline takes no height/width: it picks the bucket of the picture's aspect at the transformer's
`target_size` (480x848 for a 16:9 picture at 480p) and crops the picture to it. ditflow runs at the reference's
size (the preset's by default, the 16:9 bucket) and fits the picture to it (`--image-fit`), so a picture
already at a bucket size gives the pipeline's own run.
"""
from __future__ import annotations

import numpy as np

from .base import Geometry
from .hunyuan15 import HunyuanCondition, HunyuanVideo15Backbone
from .hunyuan15_presets import I2V_ALIASES, I2V_PRESETS


class HunyuanVideo15I2VBackbone(HunyuanVideo15Backbone):
    pipeline_class = "HunyuanVideo15ImageToVideoPipeline"
    presets, aliases = I2V_PRESETS, I2V_ALIASES
    needs_image = True

    @classmethod
    def pipeline_type(cls):
        from diffusers import HunyuanVideo15ImageToVideoPipeline

        return HunyuanVideo15ImageToVideoPipeline

    def condition(self, image: np.ndarray, geo: Geometry, generator) -> HunyuanCondition:
        """The pipeline's condition for uint8 [H, W, 3] `image` (already at the run's size): its
        prepare_cond_latents_and_mask (the VAE's mode: the generator is not used) and encode_image (SigLIP)."""
        import torch
        from PIL import Image

        pipe, pil = self.pipe, Image.fromarray(image)
        shape = (1, pipe.num_channels_latents, geo.latent_frames, geo.latent_height, geo.latent_width)
        placeholder = torch.zeros(shape, dtype=self.dtype, device=self.device)  # only its shape is read
        with torch.no_grad():
            latent, mask = pipe.prepare_cond_latents_and_mask(placeholder, pil, 1, geo.height, geo.width, self.dtype,
                                                              self.device)
            embeds = pipe.encode_image(pil, 1, self.device, self.dtype)
        return HunyuanCondition(latent, mask, embeds)

    def forward(self, x, t, text, geo, positions=None, expert=None, cond=None):
        if cond is None:
            raise ValueError("an image-to-video forward needs its condition")
        return super().forward(x, t, text, geo, positions, expert, cond)
