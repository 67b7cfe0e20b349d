"""CogVideoX image-to-video through diffusers' `CogVideoXImageToVideoPipeline`: CogVideoX-5B-I2V (1.0) and
CogVideoX1.5-5B-I2V, on top of the text-to-video adapter.

The condition is the image's latent on the channel axis: the transformer takes [B, F, 2C, h, w], the noisy latent
[B, F, C, h, w] followed by the image latent (frame 0, the VAE *sampled* with the run's generator before the
noise is drawn, as the pipeline) and zeros on the other frames. 1.5 scales the image latent by the inverse of
the VAE's scaling factor (`invert_scale_latents`: how it was trained) and adds an `ofs` embedding of 2.0 to the
time embedding. CogVideoX-5B-I2V also adds a learned positional embedding that exists for one shape only (49
frames at 480x720): another shape is refused before loading (diffusers would raise for another size and
silently swap in a sincos table for another frame count). The guided latent is only the noisy one: the
condition is a constant of every forward, never optimised. The reference's latent stays the C-channel one.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError
from .base import Geometry
from .cogvideox import CONFIG_DEFAULTS, PIPELINE_CFG, PRESETS as T2V_PRESETS, CogVideoXBackbone, vae_factors
from .preset import ModelPreset, with_folder_defaults
from .source import read_config

_CARD = {"scheduler": "dpm", "dynamic_cfg": True}  # the pipeline's docstring example: use_dynamic_cfg=True, DPM in the folders
# Sizes and lengths are the model cards'; CFG 6 is the pipeline's default; guidance block 20 of 42 is the 5B
# text-to-video proportion, not measured with the I2V weights.
PRESETS: dict[str, ModelPreset] = {
    "cogvideox-5b-i2v": replace(T2V_PRESETS["5b"], source="THUDM/CogVideoX-5b-I2V", frames=49, cfg=6.0, family=_CARD),
    "cogvideox1.5-5b-i2v": replace(T2V_PRESETS["1.5-5b"], source="THUDM/CogVideoX1.5-5B-I2V", family=_CARD),
}
ALIASES = {"THUDM/CogVideoX-5b-I2V": "cogvideox-5b-i2v", "THUDM/CogVideoX1.5-5B-I2V": "cogvideox1.5-5b-i2v"}
# (layers, heads, temporal patches) of the released I2V transformers (in_channels 32) -> their preset
LAYOUTS = {(42, 48, False): "cogvideox-5b-i2v", (42, 48, True): "cogvideox1.5-5b-i2v"}
PIPELINE_FRAMES = 49  # CogVideoXImageToVideoPipeline's default num_frames
OFS = 2.0  # the pipeline's ofs value for a transformer with an ofs embedding (1.5-I2V)


def learned_shape(cfg: dict[str, Any]) -> tuple[int, int, int] | None:
    """(frames, latent height, latent width) the learned positional embedding of a transformer config exists for,
    or None when it has none."""
    if not cfg.get("use_learned_positional_embeddings"):
        return None
    return int(cfg.get("sample_frames", 49)), int(cfg.get("sample_height", 60)), int(cfg.get("sample_width", 90))


def check_learned_shape(cfg: dict[str, Any], geo: Geometry, temporal: int, spatial: int, model: str) -> None:
    """Refuse a geometry the learned positional embedding has no table for (one line, before any weights load).
    The patch embedding compares the latent's frames expanded back, (latent_frames - 1) x temporal + 1, with
    sample_frames."""
    shape = learned_shape(cfg)
    if shape is None:
        return
    frames, h, w = shape
    if ((geo.latent_frames - 1) * temporal + 1, geo.latent_height, geo.latent_width) != (frames, h, w):
        raise InputError(f"{model} has a learned positional embedding for {frames} frames at {h * spatial}x{w * spatial} "
                         f"only, not {geo.frames} frames at {geo.height}x{geo.width}; pass --frames {frames} --height "
                         f"{h * spatial} --width {w * spatial}")


class CogVideoXI2VBackbone(CogVideoXBackbone):
    pipeline_class = "CogVideoXImageToVideoPipeline"
    presets, aliases = PRESETS, ALIASES
    needs_image = True

    @classmethod
    def config_geometry(cls, folder, frames, height, width) -> Geometry:
        geo = super().config_geometry(folder, frames, height, width)
        spatial, temporal = vae_factors(Path(folder))
        check_learned_shape(read_config(folder, "transformer"), geo, temporal, spatial, str(folder))
        return geo

    @classmethod
    def folder_preset(cls, model, folder, defaults) -> ModelPreset:
        """A released I2V layout's preset (in_channels 32; layers, heads, temporal patches), else the pipeline's
        defaults: 49 frames, or the one count a learned positional embedding has; then the folder's ditflow.json."""
        cfg = {**CONFIG_DEFAULTS, **read_config(folder, "transformer")}
        layers, temporal = int(cfg["num_layers"]), bool(cfg.get("patch_size_t"))
        known = LAYOUTS.get((layers, cfg.get("num_attention_heads"), temporal))
        if known and int(cfg.get("in_channels", 16)) == 32:
            preset = replace(PRESETS[known], source=model)  # a local copy of a released I2V model
        else:
            # what CogVideoXImageToVideoPipeline.from_pretrained(folder) does by default, so an unguided run
            # equals it: float32, CFG 6 without the dynamic schedule, the folder's scheduler, its config's size
            shape, spatial = learned_shape(cfg), vae_factors(Path(folder))[0]
            preset = replace(T2V_PRESETS["1.5-5b" if temporal else "5b"], source=model, dtype="float32",
                             guidance_blocks=(layers // 2,), family={"scheduler": None, "dynamic_cfg": False},
                             cfg=PIPELINE_CFG, negative_prompt="", frames=shape[0] if shape else PIPELINE_FRAMES,
                             height=int(cfg["sample_height"]) * spatial, width=int(cfg["sample_width"]) * spatial)
        return with_folder_defaults(preset, defaults, model, cls.setting_names()) if defaults else preset

    @classmethod
    def pipeline_type(cls):
        from diffusers import CogVideoXImageToVideoPipeline

        return CogVideoXImageToVideoPipeline

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        geo = super().geometry(frames, height, width)
        check_learned_shape(dict(self.transformer.config), geo, self.pipe.vae_scale_factor_temporal,
                            self.pipe.vae_scale_factor_spatial, self.model.arg)
        return geo

    @property
    def latent_channels(self) -> int:
        """Channels of the noisy latent: half the transformer's input (the other half is the image's)."""
        return int(self.transformer.config.in_channels) // 2

    # -- the condition --------------------------------------------------------------------------------
    def condition(self, image: np.ndarray, geo: Geometry, generator):
        """uint8 [H, W, 3] -> the image latent [1, latent_frames, C, h, w] (frame 0 the image, zeros after), from
        the pipeline's own prepare_latents: the VAE sampled with `generator`, scaled (1.5: inversely) as it
        scales. It is given a latent, so it draws no noise: `initial_noise` draws it next from the same generator,
        as prepare_latents would."""
        import torch
        from PIL import Image

        pipe, c = self.pipe, self.latent_channels
        pixels = pipe.video_processor.preprocess(Image.fromarray(image), height=geo.height, width=geo.width)
        pixels = pixels.to(self.device, self.dtype)
        placeholder = torch.zeros(1, geo.latent_frames, c, geo.latent_height, geo.latent_width, device=self.device)
        frames = geo.frames + geo.pad_frames * pipe.vae_scale_factor_temporal  # as __call__ asks for 1.5's padding
        with torch.no_grad():
            _, latent = pipe.prepare_latents(pixels, 1, c, frames, geo.height, geo.width, self.dtype, self.device,
                                             generator, placeholder)
        if latent.shape[1] != geo.latent_frames:  # diffusers' padding rule changed under us
            raise ValueError(f"the image latent has {latent.shape[1]} frames, the geometry {geo.latent_frames}")
        return latent

    def initial_noise(self, geo: Geometry, generator):
        """[1, latent_frames, C, h, w] noise of the noisy latent's C channels, drawn after the condition's VAE
        sample (prepare_latents' randn_tensor, in the pipeline's dtype, times init_noise_sigma)."""
        from diffusers.utils.torch_utils import randn_tensor

        shape = (1, geo.latent_frames, self.latent_channels, geo.latent_height, geo.latent_width)
        noise = randn_tensor(shape, generator=generator, device=self.device, dtype=self.dtype)
        return noise * self.scheduler.init_noise_sigma

    # -- the transformer ------------------------------------------------------------------------------
    def forward(self, x, t, text, geo, positions=None, expert=None, cond=None):
        """v prediction [B, F, C, h, w] for the noisy latent x [B, F, C, h, w]: the transformer takes it with the
        condition on the channel axis (one copy per batch row: CFG's two) and, for 1.5, ofs."""
        import torch

        if cond is None:
            raise ValueError("an image-to-video forward needs its condition")
        latent = cond.to(x.device, x.dtype).expand(x.shape[0], -1, -1, -1, -1)
        return super().forward(torch.cat([x, latent], dim=2), t, text, geo, positions, expert)

    def transformer_inputs(self, x) -> dict[str, Any]:
        """1.5-I2V's ofs, [1] in the model's dtype as the pipeline makes it (it broadcasts over the batch)."""
        if self.transformer.config.ofs_embed_dim is None:
            return {}
        return {"ofs": x.new_full((1,), OFS, dtype=self.dtype)}
