"""Wan 2.1 text-to-video (1.3B, 14B and local folders) through diffusers' `WanPipeline`.

Text enters only through each block's cross-attention (`attn2`), so every token of the self-attention
(`attn1`) is a video token. RoPE is real-valued: `transformer.rope(latent)` returns (cos, sin), each
[1, S, 1, D] over interleaved pairs, once per forward, shared by every block's attn1 (and by q and k).
Latents are [B, C, F, h, w], normalised by the VAE's per-channel latents_mean/std; patch (1, 2, 2).

Schedulers: the checkpoints ship UniPC (flow prediction, flow sigmas, shift 3). Unguided and emb-mode runs
use the folder's own, so they reproduce WanPipeline. UniPC's corrector rebuilds x_t from the previous
sample and model outputs, discarding a latent the guide optimised; latent-mode runs therefore step with
flow-match Euler at the same shift (x_next = x + (sigma_next - sigma) v: it keeps the latent it is given).
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import replace
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..errors import InputError
from .base import Backbone, Geometry, geometry_of
from .preset import PAPER_NEGATIVE_PROMPT, ModelPreset, with_folder_defaults
from .source import read_config

if TYPE_CHECKING:
    import torch

# Guidance blocks and learning rates are the CogVideoX paper's proportions, not yet measured on Wan.
_WAN = dict(height=480, width=832, frames=25, steps=50, cfg=5.0, negative_prompt=PAPER_NEGATIVE_PROMPT, emb_param="angle")
PRESETS: dict[str, ModelPreset] = {
    "wan-1.3b": ModelPreset("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "bfloat16", guidance_blocks=(15,), **_WAN),
    "wan-14b": ModelPreset("Wan-AI/Wan2.1-T2V-14B-Diffusers", "bfloat16", guidance_blocks=(20,), **_WAN),
}
ALIASES = {"Wan-AI/Wan2.1-T2V-1.3B-Diffusers": "wan-1.3b", "Wan-AI/Wan2.1-T2V-14B-Diffusers": "wan-14b"}
LAYOUTS = {(30, 12): "wan-1.3b", (40, 40): "wan-14b"}  # (layers, heads) of the released checkpoints
PIPELINE_CFG = 5.0  # WanPipeline's default guidance_scale
TEXT_LEN = 512  # WanPipeline's default max_sequence_length


def _check_frames(frames: int, temporal: int) -> None:
    if (frames - 1) % temporal:
        lo = (frames - 1) // temporal * temporal + 1
        raise InputError(f"Wan takes {temporal}k+1 frames (its VAE keeps frame 0 and compresses {temporal} to 1), "
                         f"not {frames}; pick --frames {lo} or {lo + temporal}")


def _geometry(patch, spatial: int, temporal: int, frames: int, height: int, width: int) -> Geometry:
    if int(patch[0]) != 1:
        raise InputError(f"Wan models with temporal patches ({list(patch)}) are not supported")
    _check_frames(frames, temporal)
    return geometry_of(int(patch[1]), spatial, temporal, frames, height, width)


def flow_noised(x0: torch.Tensor, noise: torch.Tensor, sigma: float) -> torch.Tensor:
    """Rectified flow's x_sigma = (1 - sigma) x0 + sigma noise (what both schedulers' add_noise compute)."""
    return (1 - sigma) * x0 + sigma * noise


class WanBackbone(Backbone):
    pipeline_class, family = "WanPipeline", "Wan"
    presets, aliases = PRESETS, ALIASES

    @classmethod
    def config_geometry(cls, folder, frames, height, width) -> Geometry:
        vae = read_config(folder, "vae")
        return _geometry(read_config(folder, "transformer").get("patch_size", (1, 2, 2)), int(vae.get("scale_factor_spatial", 8)),
                         int(vae.get("scale_factor_temporal", 4)), frames, height, width)

    @classmethod
    def folder_preset(cls, model, folder, defaults) -> ModelPreset:
        cfg = read_config(folder, "transformer")
        layers = int(cfg.get("num_layers", 30))
        known = LAYOUTS.get((layers, cfg.get("num_attention_heads")))
        if known:
            preset = replace(PRESETS[known], source=model)  # a local copy of a released checkpoint
        else:  # what WanPipeline.from_pretrained(folder) does by default, so an unguided run equals it
            preset = replace(PRESETS["wan-1.3b"], source=model, dtype="float32", guidance_blocks=(layers // 2,),
                             cfg=PIPELINE_CFG, negative_prompt="", frames=81)
        return with_folder_defaults(preset, defaults, model) if defaults else preset

    @classmethod
    def pipeline_type(cls):
        from diffusers import WanPipeline

        return WanPipeline

    def check_pipeline(self, pipe) -> None:
        if getattr(pipe, "transformer_2", None) is not None:
            raise InputError(f"{self.model.folder} is a two-expert Wan 2.2 model; only Wan 2.1 (one transformer) is supported")

    def scheduler_for(self, own, keeps_latent: bool):
        """The folder's own (UniPC), or flow-match Euler when the latent is optimised (see the module doc)."""
        from diffusers import FlowMatchEulerDiscreteScheduler

        if keeps_latent:
            shift = float(own.config.get("flow_shift", None) or 3.0)
            return FlowMatchEulerDiscreteScheduler(num_train_timesteps=own.config.num_train_timesteps, shift=shift)
        return type(own).from_config(own.config)

    # -- shapes ---------------------------------------------------------------------------------------
    @property
    def blocks(self):
        return self.transformer.blocks

    @property
    def after_blocks(self):
        return self.transformer.norm_out

    def block_video(self, out):
        return out[-1]  # a block returns the hidden states [B, S, C]: all video tokens

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        return _geometry(self.transformer.config.patch_size, self.pipe.vae_scale_factor_spatial,
                         self.pipe.vae_scale_factor_temporal, frames, height, width)

    # -- text, pixels, latents ------------------------------------------------------------------------
    @property
    def text_length(self) -> int:
        """UMT5 tokens, zero after the prompt's (as WanPipeline)."""
        return TEXT_LEN

    def _latent_stats(self):
        import torch

        cfg = self.pipe.vae.config
        mean = torch.tensor(cfg.latents_mean).view(1, cfg.z_dim, 1, 1, 1)
        std = torch.tensor(cfg.latents_std).view(1, cfg.z_dim, 1, 1, 1)
        return mean, std

    def encode_video(self, frames: np.ndarray):
        """uint8 [F, H, W, 3] -> normalised latent [1, C, F_latent, h, w] (the VAE's mode)."""
        import torch

        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0  # [3, F, H, W] in [-1, 1]
        video = video.unsqueeze(0).to(self.device, self.pipe.vae.dtype)
        mean, std = self._latent_stats()
        with torch.no_grad():
            z = self.pipe.vae.encode(video).latent_dist.mode()
        return ((z - mean.to(z)) / std.to(z)).to(self.dtype)

    def latent_frames(self, latent) -> int:
        return int(latent.shape[2])

    def decode(self, latents, geo=None) -> np.ndarray:  # geo: Wan pads no frames
        """Normalised latent [1, C, F, h, w] -> uint8 frames [F, H, W, 3] (as WanPipeline's decoding)."""
        import torch

        vae = self.pipe.vae
        mean, std = self._latent_stats()
        with torch.no_grad():
            z = latents.to(self.device, vae.dtype)
            z = z / (1.0 / std.to(z)) + mean.to(z)  # the pipeline's own arithmetic, for identical pixels
            video = vae.decode(z, return_dict=False)[0]
            frames = self.pipe.video_processor.postprocess_video(video, output_type="np")[0]
        return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)

    # -- sampling -------------------------------------------------------------------------------------
    def timesteps(self, steps: int):
        self.scheduler.set_timesteps(steps, device=self.device)
        self.scheduler.set_begin_index(0)
        return self.scheduler.timesteps

    def initial_noise(self, geo: Geometry, generator):
        """float32, as WanPipeline (the transformer gets it cast to its dtype)."""
        import torch

        return self.pipe.prepare_latents(1, self.transformer.config.in_channels, geo.height, geo.width, geo.frames,
                                         torch.float32, self.device, generator)

    def _sigma(self, t) -> float:
        """The scheduler's sigma at timestep t (flow time t / 1000 off its schedule)."""
        hits = (self.scheduler.timesteps.to(t.device) == t).nonzero()
        if len(hits) == 0:
            return float(t) / self.scheduler.config.num_train_timesteps
        return float(self.scheduler.sigmas[int(hits[0, 0])])

    def add_noise(self, x0, noise, t):
        return flow_noised(x0.float(), noise.float(), self._sigma(t)).to(noise.dtype)

    def step(self, v, t, x, state):
        """Both schedulers keep their own history; x0 is not reported."""
        return self.scheduler.step(v, t, x, return_dict=False)[0], None, state

    # -- the transformer ------------------------------------------------------------------------------
    def default_rope(self, geo: Geometry):
        """The model's own (cos, sin), each [1, S, 1, D], for this grid (computed once)."""
        import torch

        if geo.grid not in self._rope:
            shape = (1, self.transformer.config.in_channels, geo.latent_frames, geo.latent_height, geo.latent_width)
            with torch.no_grad():
                self._rope[geo.grid] = self.transformer.rope(torch.zeros(shape, device=self.device))
        return self._rope[geo.grid]

    def forward(self, x, t, text, geo, positions=None):
        """Flow prediction [B, C, F, h, w]; positions: rotation angles [1, S, 1, D/2] or (cos, sin) tables
        [2, 1, S, 1, D], given to every block through a forward hook on `transformer.rope`."""
        with ExitStack() as stack:
            if positions is not None:
                stack.enter_context(_rope_replaced(self.transformer, positions))
            ts = t.expand(x.shape[0]).to(x.device)
            return self.transformer(hidden_states=x.to(self.dtype), timestep=ts, encoder_hidden_states=text.to(self.dtype),
                                    return_dict=False)[0]

    def predict(self, x, t, text, scale, geo, positions=None):
        """CFG in two passes, positive then negative, as WanPipeline."""
        cond = self.forward(x, t, text[-1:], geo, positions).float()
        if scale is None:
            return cond
        uncond = self.forward(x, t, text[:1], geo, positions).float()
        return uncond + scale * (cond - uncond)

    @contextmanager
    def install(self, taps) -> Iterator[None]:
        """Our processor at every block's attn1 (attn2, the text cross-attention, keeps its own)."""
        from ..processors import Tap
        from .wan_attn import WanSelfAttention

        bad = [b for b in taps if not 0 <= b < self.num_blocks]
        if bad:
            raise ValueError(f"the transformer has no block {bad[0]} ({self.num_blocks} blocks)")
        old = dict(self.transformer.attn_processors)
        new = dict(old)
        for b in range(self.num_blocks):
            new[f"blocks.{b}.attn1.processor"] = WanSelfAttention(taps.get(b, Tap()))
        self.transformer.set_attn_processor(new)
        try:
            yield
        finally:
            self.transformer.set_attn_processor(dict(old))

    # -- what emb mode optimises ----------------------------------------------------------------------
    def emb_variable(self, geo, angles):
        """Rotation angles [1, S, 1, D/2] (`angles`: they stay rotations) or (cos, sin) [2, 1, S, 1, D]."""
        import torch

        cos, sin = self.default_rope(geo)
        if angles:
            return torch.atan2(sin[..., 0::2].float(), cos[..., 0::2].float())
        return torch.stack([cos, sin]).float()


@contextmanager
def _rope_replaced(transformer, positions: torch.Tensor) -> Iterator[None]:
    """Make `transformer.rope` return these positions (a forward hook: every block's attn1 gets them)."""
    from .wan_attn import angles_to_rope

    rope = angles_to_rope(positions) if positions.dim() == 4 else (positions[0], positions[1])

    def hook(_module, _inputs, _out):
        return rope

    handle = transformer.rope.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
