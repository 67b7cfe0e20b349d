"""HunyuanVideo 1.5 text-to-video (480p, 720p; local folders) through diffusers' `HunyuanVideo15Pipeline`.

Latents are [B, C, F, h, w] (32 channels for the release) of a causal VAE with 16x spatial and 4x temporal
compression, scaled by its `scaling_factor` (no mean); the transformer takes patch 1 x 1 x 1 and 65 input channels:
the noisy latent, a condition latent and a 1-channel mask (both zero in text-to-video; image-to-video puts the
picture on frame 0, hunyuan15_i2v.py). Text is two encoders': a Qwen2.5-VL's hidden state third from last (the
first 108 tokens, the system prompt's template, cropped; 1000 tokens) and a ByT5 glyph encoder's (256 tokens, zero
unless the prompt quotes text); ditflow packs both, with their masks, into one tensor (`pack_text`). Every block
is double-stream joint attention, video tokens first (hunyuan15_attn.py): the taps see them as S's first N.

RoPE is real-valued 3D (axes 16, 56, 56 of 128): `transformer.rope(latent)` returns (cos, sin), each [S, D], once
per forward; emb mode optimises their angles [1, S, 1, D/2] (or the (cos, sin) pair [2, 1, S, 1, D]), returned
by a forward hook on `rope`. The scheduler is flow-match Euler at the folder's shift on sigmas 1 -> 0 (the
pipeline's linspace): it keeps the latent it is given, so latent-mode guidance uses it too. CFG is the folder's
`guider` (ClassifierFreeGuidance: the pipeline call takes no guidance_scale), two passes, at --cfg.
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterator

import numpy as np

from ..errors import InputError
from ..finite import to_uint8
from .base import Geometry, geometry_of
from .flow_match import FlowMatchBackbone
from .hunyuan15_presets import ALIASES, PRESETS, check_folder, folder_preset
from .preset import ModelPreset
from .source import read_config

if TYPE_CHECKING:
    import torch


def _geometry(patch: int, patch_t: int, spatial: int, temporal: int, frames: int, height: int, width: int) -> Geometry:
    if patch_t != 1:
        raise InputError(f"HunyuanVideo 1.5 models with temporal patches ({patch_t}) are not supported")
    if (frames - 1) % temporal:
        lo = (frames - 1) // temporal * temporal + 1
        raise InputError(f"HunyuanVideo 1.5 takes {temporal}k+1 frames (its VAE keeps frame 0 and compresses {temporal} "
                         f"to 1), not {frames}; pick --frames {lo} or {lo + temporal}")
    return geometry_of(patch, spatial, temporal, frames, height, width)


@dataclass(frozen=True)
class HunyuanCondition:
    """What the transformer takes besides the noisy latent: latent [1, C, F, h, w] (the picture's latent on frame 0,
    zeros after; all zeros in text-to-video), mask [1, 1, F, h, w] (1 on the picture's frame) and image_embeds
    [1, T, D] (SigLIP states; zeros in text-to-video, which the transformer reads as "no image")."""

    latent: Any
    mask: Any
    image_embeds: Any


def pack_text(parts, widths: tuple[int, int]) -> "torch.Tensor":
    """(mllm [1, L1, D1], mask [1, L1], glyph [1, L2, D2], mask [1, L2]) -> [1, L1 + L2, max(D1, D2) + 1]: each
    encoder's states in the first D channels of its rows, its mask in the last channel."""
    emb, mask, emb2, mask2 = parts
    l1, l2 = emb.shape[1], emb2.shape[1]
    out = emb.new_zeros(emb.shape[0], l1 + l2, max(widths) + 1)
    out[:, :l1, :widths[0]], out[:, :l1, -1] = emb, mask.to(emb.dtype)
    out[:, l1:, :widths[1]], out[:, l1:, -1] = emb2.to(emb.dtype), mask2.to(emb.dtype)
    return out


def unpack_text(text: "torch.Tensor", first: int, widths: tuple[int, int]) -> dict[str, "torch.Tensor"]:
    """`pack_text`'s inverse, as the transformer's keyword arguments (`first`: the MLLM's token count)."""
    return {"encoder_hidden_states": text[:, :first, :widths[0]], "encoder_attention_mask": text[:, :first, -1],
            "encoder_hidden_states_2": text[:, first:, :widths[1]], "encoder_attention_mask_2": text[:, first:, -1]}


class HunyuanVideo15Backbone(FlowMatchBackbone):
    pipeline_class, family = "HunyuanVideo15Pipeline", "HunyuanVideo 1.5"
    presets, aliases, settings = PRESETS, ALIASES, None
    frame_axis = 2  # latents are [B, C, F, h, w]
    text_parts = ("text_encoder", "text_encoder_2")  # the Qwen2.5-VL and the ByT5 glyph encoder

    @classmethod
    def config_geometry(cls, folder, frames, height, width) -> Geometry:
        check_folder(folder)
        vae, cfg = read_config(folder, "vae"), read_config(folder, "transformer")
        return _geometry(int(cfg.get("patch_size", 1)), int(cfg.get("patch_size_t", 1)),
                         int(vae.get("spatial_compression_ratio", 16)), int(vae.get("temporal_compression_ratio", 4)),
                         frames, height, width)

    @classmethod
    def folder_preset(cls, model, folder, defaults) -> ModelPreset:
        return folder_preset(model, folder, defaults, cls.setting_names(), cls.presets)

    @classmethod
    def pipeline_type(cls):
        from diffusers import HunyuanVideo15Pipeline

        return HunyuanVideo15Pipeline

    def check_pipeline(self, pipe) -> None:
        from diffusers import ClassifierFreeGuidance

        if not isinstance(pipe.guider, ClassifierFreeGuidance):
            raise InputError(f"{self.model.arg} guides with {type(pipe.guider).__name__}; ditflow runs "
                             f"ClassifierFreeGuidance only")
        cfg = pipe.transformer.config
        self._widths = (int(cfg.text_embed_dim), int(cfg.text_embed_2_dim))
        self._guiders: dict[float, Any] = {}

    def scheduler_for(self, own, keeps_latent: bool):
        """Flow-match Euler (the folder's, at its shift) for every run: x + (sigma_next - sigma) v keeps the latent
        a guide optimised."""
        return type(own).from_config(own.config)

    # -- shapes ---------------------------------------------------------------------------------------
    def blocks_of(self, expert):
        return expert.transformer_blocks

    def after_blocks_of(self, expert):
        return expert.norm_out

    def block_video(self, out):
        return out[0][-1]  # a block returns (video [B, N, C], text): the last row's video tokens

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        cfg = self.transformer.config
        return _geometry(int(cfg.patch_size), int(cfg.patch_size_t), self.pipe.vae_scale_factor_spatial,
                         self.pipe.vae_scale_factor_temporal, frames, height, width)

    # -- text, pixels, latents ------------------------------------------------------------------------
    @property
    def text_length(self) -> int:
        """MLLM tokens after the template's crop, then the glyph encoder's (both padded to their lengths)."""
        return self.pipe.tokenizer_max_length + self.pipe.tokenizer_2_max_length

    def encode_prompt(self, prompt: str):
        """[1, 1256, 3585] for the release: `pack_text` of the pipeline's own encode_prompt (the MLLM's states with
        the template cropped, the glyph encoder's), in the transformer's dtype."""
        import torch

        self._text_encoder_ready()
        with torch.no_grad():
            parts = self.pipe.encode_prompt(prompt, device=self.text_device, dtype=self.dtype)
        return pack_text(parts, self._widths).to(self.device)

    def _scale(self) -> float:
        return float(self.pipe.vae.config.scaling_factor)

    def encode_video(self, frames: np.ndarray):
        """uint8 [F, H, W, 3] -> scaled latent [1, C, F_latent, h, w] (the VAE's mode, as the I2V pipeline's image)."""
        import torch

        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # [3, F, H, W] in [-1, 1]
        vae = self.pipe.vae
        with torch.no_grad():
            z = vae.encode(video.unsqueeze(0).to(self.device, vae.dtype)).latent_dist.mode()
        return (z * self._scale()).to(self.dtype)

    def decode(self, latents, geo=None) -> np.ndarray:  # geo: no padding frames
        """Scaled latent [1, C, F, h, w] -> uint8 frames [F, H, W, 3] (as the pipeline's decoding)."""
        import torch

        vae = self.pipe.vae
        with torch.no_grad():
            video = vae.decode(latents.to(self.device, vae.dtype) / self._scale(), return_dict=False)[0]
            frames = self.pipe.video_processor.postprocess_video(video, output_type="np")[0]
        return to_uint8(frames)  # NaN pixels refused: they would be black frames

    # -- sampling -------------------------------------------------------------------------------------
    def timesteps(self, steps: int):
        """The pipeline's: sigmas linspace(1, 0, steps + 1) without the last, shifted by the scheduler."""
        self.schedule_set()
        self.scheduler.set_timesteps(sigmas=np.linspace(1.0, 0.0, steps + 1)[:-1], device=self.device)
        self.scheduler.set_begin_index(0)
        return self.scheduler.timesteps

    def initial_noise(self, geo: Geometry, generator):
        """The pipeline's noise (drawn in the transformer's dtype, as its prepare_latents), as float32."""
        import torch

        x = self.pipe.prepare_latents(1, self.pipe.num_channels_latents, geo.height, geo.width, geo.frames, self.dtype,
                                      self.device, generator)
        return x.to(torch.float32)

    def step(self, v, t, x, state):
        return self.scheduler.step(v, t, x, return_dict=False)[0], None, state

    # -- the transformer ------------------------------------------------------------------------------
    def empty_condition(self, geo: Geometry) -> HunyuanCondition:
        """Text-to-video's: a zero condition latent and mask, zero image states (HunyuanVideo15Pipeline's)."""
        import torch

        z, pipe = self.pipe.num_channels_latents, self.pipe
        shape = (1, z, geo.latent_frames, geo.latent_height, geo.latent_width)
        zeros = torch.zeros(shape, dtype=self.dtype, device=self.device)
        mask = torch.zeros((1, 1, *shape[2:]), dtype=self.dtype, device=self.device)
        embeds = torch.zeros(1, pipe.vision_num_semantic_tokens, pipe.vision_states_dim, dtype=self.dtype, device=self.device)
        return HunyuanCondition(zeros, mask, embeds)

    def default_rope(self, geo: Geometry):
        """The model's own (cos, sin), each [S, D], for this grid (computed once)."""
        import torch

        if geo.grid not in self._rope:
            shape = (1, 1, geo.latent_frames, geo.latent_height, geo.latent_width)
            with torch.no_grad():
                self._rope[geo.grid] = self.transformer.rope(torch.zeros(shape, device=self.device))
        return self._rope[geo.grid]

    def forward(self, x, t, text, geo, positions=None, expert=None, cond=None):
        """Flow prediction [B, C, F, h, w]; `cond` a `HunyuanCondition` (None: text-to-video's); positions: rotation
        angles [1, S, 1, D/2] or (cos, sin) tables [2, 1, S, 1, D], given to every block through a hook on `rope`."""
        import torch

        cond = self.empty_condition(geo) if cond is None else cond
        b = x.shape[0]
        hidden = torch.cat([x.to(self.dtype), cond.latent.to(x.device, self.dtype).expand(b, -1, -1, -1, -1),
                            cond.mask.to(x.device, self.dtype).expand(b, -1, -1, -1, -1)], dim=1)
        words = unpack_text(text.to(self.dtype), self.pipe.tokenizer_max_length, self._widths)
        with ExitStack() as stack:
            if positions is not None:
                stack.enter_context(_rope_replaced(self.transformer, positions))
            return self.transformer(hidden_states=hidden, timestep=t.expand(b).to(self.dtype),
                                    image_embeds=cond.image_embeds.to(x.device, self.dtype).expand(b, -1, -1),
                                    return_dict=False, **words)[0]

    def _guider(self, scale: float):
        """The folder's guider at CFG `scale` (its other settings kept: rescale, formulation, start/stop)."""
        if scale not in self._guiders:
            own = self.pipe.guider
            self._guiders[scale] = type(own).from_config({**own.config, "guidance_scale": scale})
        return self._guiders[scale]

    def predict(self, x, t, text, scale, geo, positions=None, cond=None):
        """CFG in two passes, conditional then unconditional, combined by the folder's guider at `scale`."""
        pos = self.forward(x, t, text[-1:], geo, positions, cond=cond).float()
        if scale is None:
            return pos
        guider = self._guider(scale)
        i = self._index(t)
        guider.set_state(step=0 if i is None else i, num_inference_steps=None if i is None else len(self.scheduler.timesteps),
                         timestep=t)
        if guider.num_conditions == 1:  # outside the guider's start/stop, or a scale of 1: no second pass
            return pos
        neg = self.forward(x, t, text[:1], geo, positions, cond=cond).float()
        return guider.forward(pos, neg).pred

    def install(self, taps):
        """Our processor at every double-stream block's joint attention (the token refiner keeps its own)."""
        from .attn_swap import processors_at
        from .hunyuan15_attn import HunyuanJointAttention

        return processors_at((self.transformer,), taps, self.num_blocks, "transformer_blocks.{b}.attn.processor", HunyuanJointAttention)

    # -- what emb mode optimises ----------------------------------------------------------------------
    def emb_variable(self, geo, angles):
        """Rotation angles [1, S, 1, D/2] (`angles`: they stay rotations) or (cos, sin) [2, 1, S, 1, D]."""
        import torch

        from .hunyuan15_attn import rope_angles

        cos, sin = self.default_rope(geo)
        if angles:
            return rope_angles(cos, sin)
        return torch.stack([cos, sin])[:, None, :, None, :].float()


@contextmanager
def _rope_replaced(transformer, positions: "torch.Tensor") -> Iterator[None]:
    """Make `transformer.rope` return these positions as its (cos, sin) [S, D] (a forward hook: every block gets them)."""
    from .hunyuan15_attn import angles_to_rope

    rope = angles_to_rope(positions) if positions.dim() == 4 else (positions[0, 0, :, 0], positions[1, 0, :, 0])

    def hook(_module, _inputs, _out):
        return rope

    handle = transformer.rope.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
