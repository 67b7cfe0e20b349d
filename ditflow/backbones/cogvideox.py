"""CogVideoX 1.0 (2B, 5B), 1.5 (1.5-5B) and local folders through diffusers' `CogVideoXPipeline`.

Text and video tokens share one joint self-attention per block (`attn1`, text first); RoPE (5B, 1.5) is a
(cos, sin) [N, head_dim] table pair passed to every block, the 2B adds a 3D sincos embedding in its patch
embedding instead. Latents are [B, F, C, h, w]. DDIM or DPM (which also needs the previous x0).
CogVideoX 1.5 patches 2 latent frames into a token (`patch_size_t`): its latents are padded in front to an
even count (noise: more frames, as its pipeline; a reference: its first latent frame repeated, as the
image-to-video pipeline pads the image) and the padding is dropped before decoding.
"""
from __future__ import annotations

import math
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from ..checks import rule
from ..errors import InputError
from ..finite import to_uint8
from .base import Backbone, Geometry, geometry_of
from .preset import ModelPreset, with_folder_defaults
from .source import read_config

SCHEDULERS = ("dpm", "ddim")


@dataclass(frozen=True)
class CogVideoXSettings:
    """The guide settings only CogVideoX understands. None: the model's default."""

    scheduler: str | None = field(default=None, metadata=rule(
        "dpm or ddim. [default: dpm for 5b, 1.5-5b and the I2V presets, ddim for 2b, the folder's own otherwise]", choices=SCHEDULERS))
    dynamic_cfg: bool | None = field(default=None, metadata=rule(
        "Dynamic CFG schedule (the 5b paper runs'; needs --cfg above 1). [default: on for 5b, 1.5-5b and the I2V presets, off otherwise]"))


PRESETS: dict[str, ModelPreset] = {
    "5b": ModelPreset("THUDM/CogVideoX-5b", "bfloat16", (20,), family={"scheduler": "dpm", "dynamic_cfg": True}),
    "2b": ModelPreset("THUDM/CogVideoX-2b", "float16", (15,), family={"scheduler": "ddim", "dynamic_cfg": False}),
    # The model card's T2V size and length (81 frames: 21 latent, padded to 22, 11 token frames), its CFG 6 with
    # dynamic CFG and DPM as 5b; guidance block 20 of 42 is the 5B proportion, not measured on 1.5's weights.
    "1.5-5b": ModelPreset("THUDM/CogVideoX1.5-5B", "bfloat16", (20,), height=768, width=1360, frames=81, cfg=6.0,
                          family={"scheduler": "dpm", "dynamic_cfg": True}),
}
ALIASES = {"THUDM/CogVideoX-5b": "5b", "THUDM/CogVideoX-2b": "2b", "cogvideox-5b": "5b", "cogvideox-2b": "2b",
           "THUDM/CogVideoX1.5-5B": "1.5-5b", "cogvideox1.5-5b": "1.5-5b"}
# (layers, RoPE, heads, temporal patches) of the released transformers -> their preset
LAYOUTS = {(42, True, 48, False): "5b", (30, False, 30, False): "2b", (42, True, 48, True): "1.5-5b"}
# CogVideoXTransformer3DModel's defaults for sizes a config may leave out
CONFIG_DEFAULTS = {"num_layers": 30, "sample_height": 60, "sample_width": 90}
PIPELINE_CFG = 6.0  # CogVideoXPipeline's default guidance_scale


def preset_for(model: str, transformer_config: dict[str, Any] | None = None, spatial_factor: int = 8,
               folder_defaults: dict[str, Any] | None = None) -> ModelPreset:
    """Defaults for `model`: a named preset; for a folder, the 5B/2B/1.5-5B preset when its transformer has
    their layout (1.5: temporal patches), else its own pipeline's defaults at the sizes of its config; then
    any `ditflow.json` the folder ships (a model can carry the settings that were measured for it, as the toy
    model does)."""
    name = ALIASES.get(model, model)
    if name in PRESETS:
        return PRESETS[name]
    cfg = {**CONFIG_DEFAULTS, **(transformer_config or {})}
    layers = int(cfg["num_layers"])
    rope, temporal = bool(cfg.get("use_rotary_positional_embeddings", True)), bool(cfg.get("patch_size_t"))
    layout = LAYOUTS.get((layers, rope, cfg.get("num_attention_heads"), temporal))
    if layout is not None:
        preset = replace(PRESETS[layout], source=model)  # a local copy of CogVideoX-5b, -2b or 1.5-5B
    else:
        base = PRESETS["1.5-5b" if temporal else "5b" if rope else "2b"]
        # what CogVideoXPipeline.from_pretrained(folder) does by default, so an unguided run equals it;
        # sample_height/width are latent sizes: pixels are the VAE's spatial factor larger
        preset = replace(base, source=model, dtype="float32", guidance_blocks=(layers // 2,),
                         family={"scheduler": None, "dynamic_cfg": False}, cfg=PIPELINE_CFG, negative_prompt="",
                         height=int(cfg["sample_height"]) * spatial_factor, width=int(cfg["sample_width"]) * spatial_factor)
    if folder_defaults:
        preset = with_folder_defaults(preset, folder_defaults, model, CogVideoXBackbone.setting_names())
    return preset


def vae_factors(folder: Path) -> tuple[int, int]:
    """(spatial, temporal) compression of the folder's VAE, read from its config (as the pipeline derives them)."""
    vae = read_config(folder, "vae")
    if not vae:
        return 8, 4
    return 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1), int(vae.get("temporal_compression_ratio", 4))


class CogVideoXBackbone(Backbone):
    pipeline_class, family = "CogVideoXPipeline", "CogVideoX"
    presets, aliases, settings = PRESETS, ALIASES, CogVideoXSettings

    @classmethod
    def config_geometry(cls, folder, frames, height, width) -> Geometry:
        cfg = read_config(folder, "transformer")
        return geometry_of(int(cfg.get("patch_size", 2)), *vae_factors(folder), frames, height, width,
                           patch_t=int(cfg.get("patch_size_t") or 1))

    @classmethod
    def folder_preset(cls, model, folder, defaults) -> ModelPreset:
        return preset_for(model, read_config(folder, "transformer"), vae_factors(folder)[0], defaults)

    @classmethod
    def config_uses_rope(cls, transformer_config: dict) -> bool:
        return bool(transformer_config.get("use_rotary_positional_embeddings", False))

    @classmethod
    def check_guide(cls, cfg) -> None:
        super().check_guide(cfg)
        if cfg.family.get("dynamic_cfg") and cfg.cfg is not None and cfg.cfg == 1:
            raise InputError("--dynamic-cfg schedules the CFG scale, and --cfg 1 turns CFG off; drop one of them")

    @classmethod
    def pipeline_type(cls):
        from diffusers import CogVideoXPipeline

        return CogVideoXPipeline

    def scheduler_for(self, own, keeps_latent: bool):
        """DPM or DDIM (trailing spacing, as the paper's runs) unless the folder's own is already that kind.
        keeps_latent needs nothing here: both step from the latent they are given."""
        from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

        wanted = {"dpm": CogVideoXDPMScheduler, "ddim": CogVideoXDDIMScheduler}.get(self.run.get("scheduler"))
        if wanted is not None and not isinstance(own, wanted):
            return wanted.from_config(own.config, timestep_spacing="trailing")
        return type(own).from_config(own.config)

    def check_pipeline(self, pipe) -> None:
        cfg = pipe.transformer.config
        if cfg.patch_size_t and not cfg.use_rotary_positional_embeddings:  # diffusers' sincos counts 1 frame a token
            raise InputError(f"{self.model.arg}: a CogVideoX transformer with temporal patches (patch_size_t) and "
                             f"no RoPE is not supported (its pipeline cannot run it either)")

    # -- shapes ---------------------------------------------------------------------------------------
    @property
    def patch_t(self) -> int:
        """Latent frames a token spans (CogVideoX 1.5: 2; 1.0: 1)."""
        return int(self.transformer.config.patch_size_t or 1)

    @property
    def uses_rope(self) -> bool:
        return bool(self.transformer.config.use_rotary_positional_embeddings)

    def blocks_of(self, expert):
        return expert.transformer_blocks

    def after_blocks_of(self, expert):
        return expert.norm_final

    def block_video(self, out):
        return out[0][-1]  # a block returns (video, text) hidden states

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        return geometry_of(int(self.transformer.config.patch_size), self.pipe.vae_scale_factor_spatial,
                           self.pipe.vae_scale_factor_temporal, frames, height, width, patch_t=self.patch_t)

    # -- text, pixels, latents ------------------------------------------------------------------------
    @property
    def text_length(self) -> int:
        """T5 tokens, padded to the transformer's text length."""
        return int(self.transformer.config.max_text_seq_length)

    def encode_video(self, frames: np.ndarray):
        """uint8 [F, H, W, 3] -> scaled latent [1, F_latent, C, h, w] (the VAE's mean, deterministic), padded
        in front to a multiple of the temporal patch."""
        import torch

        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [F, 3, H, W] in [-1, 1]
        video = video.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)  # [1, 3, F, H, W]
        with torch.no_grad():
            dist = self.pipe.vae.encode(video).latent_dist
            latent = dist.mode() * self.pipe.vae_scaling_factor_image
        return pad_front(latent.permute(0, 2, 1, 3, 4), self.patch_t).contiguous()

    def decode(self, latents, geo=None) -> np.ndarray:
        """Latent [1, F, C, h, w] -> uint8 frames [F', H, W, 3], the padding frames of `geo` dropped first
        (as CogVideoXPipeline)."""
        import torch

        if geo is not None:
            latents = latents[:, geo.pad_frames:]
        with torch.no_grad():
            video = self.pipe.decode_latents(latents.to(self.dtype))
            frames = self.pipe.video_processor.postprocess_video(video=video, output_type="np")[0]
        return to_uint8(frames)  # NaN pixels refused: they would be black frames

    # -- sampling -------------------------------------------------------------------------------------
    def timesteps(self, steps: int):
        self.scheduler.set_timesteps(steps, device=self.device)
        return self.scheduler.timesteps

    def initial_noise(self, geo: Geometry, generator):
        """[1, latent_frames, C, h, w]: padded as CogVideoXPipeline pads, by asking for more pixel frames."""
        frames = geo.frames + geo.pad_frames * self.pipe.vae_scale_factor_temporal
        return self.pipe.prepare_latents(1, self.transformer.config.in_channels, frames, geo.height, geo.width,
                                         self.dtype, self.device, generator)

    def add_noise(self, x0, noise, t):
        noisy = self.scheduler.add_noise(x0, noise, t.reshape(1))
        return self.scheduler.scale_model_input(noisy, t)

    def sampler_state(self, generator=None):
        extra = self.pipe.prepare_extra_step_kwargs(generator, 0.0) if generator is not None else {}
        return {"extra": extra, "x0": None, "t_prev": None}

    def step(self, v, t, x, state):
        """DPM also takes the previous step's x0 and timestep: kept in `state`."""
        from diffusers import CogVideoXDPMScheduler

        state = state or self.sampler_state()
        if isinstance(self.scheduler, CogVideoXDPMScheduler):
            x_next, x0 = self.scheduler.step(v, state["x0"], t, state["t_prev"], x, **state["extra"], return_dict=False)
        else:
            out = self.scheduler.step(v, t, x, **state["extra"], return_dict=True)
            x_next, x0 = out.prev_sample, out.pred_original_sample
        return x_next, x0, {**state, "x0": x0, "t_prev": t}

    def x0_coefficients(self, t) -> tuple[float, float]:
        """v-prediction (DDIM and DPM alike): x̂₀ = √ᾱ_t·x_t − √(1−ᾱ_t)·v."""
        alpha = float(self.scheduler.alphas_cumprod[int(t)])
        return math.sqrt(alpha), math.sqrt(1 - alpha)

    def cfg_scale(self, cfg: float, steps: int, t) -> float:
        if not self.run.get("dynamic_cfg"):
            return cfg
        # CogVideoX's dynamic CFG (the diffusers pipeline's use_dynamic_cfg), as the paper's 5B runs use
        return 1 + cfg * ((1 - math.cos(math.pi * ((steps - t.item()) / steps) ** 5.0)) / 2)

    # -- the transformer ------------------------------------------------------------------------------
    def default_rope(self, geo: Geometry):
        """(cos, sin) [N, head_dim] for RoPE models, else None (computed once per grid)."""
        if not self.uses_rope:
            return None
        if geo.grid not in self._rope:
            from .cogvideox_attn import rope_tables

            self._rope[geo.grid] = rope_tables(self.transformer.config, geo.grid, self.device)
        return self._rope[geo.grid]

    def sincos_embedding(self, geo: Geometry):
        """The 3D sincos positional embedding of the video tokens [N, dim] (non-RoPE models), as the patch
        embedding adds it: its buffer only when the size matches the config, else recomputed."""
        import torch

        pe = self.transformer.patch_embed
        pre_frames = (geo.latent_frames - 1) * pe.temporal_compression_ratio + 1
        with torch.no_grad():
            if (pe.sample_height, pe.sample_width, pe.sample_frames) == (geo.latent_height, geo.latent_width, pre_frames):
                full = pe.pos_embedding
            else:
                full = pe._get_positional_embeddings(geo.latent_height, geo.latent_width, pre_frames, device=self.device)
        return full[0, pe.max_text_seq_length:].to(self.device, torch.float32)

    def forward(self, x, t, text, geo, positions=None, expert=None, cond=None):
        """v prediction [B, F, C, h, w]; positions: RoPE tables ([2, 2, N, D] q/k tables) or a sincos
        embedding [N, dim], by the model's kind."""
        from contextlib import ExitStack

        rope = self.default_rope(geo)
        with ExitStack() as stack:
            if positions is not None:
                if rope is not None:
                    rope = positions
                else:
                    stack.enter_context(_sincos_replaced(self.transformer, positions, self.sincos_embedding(geo)))
            ts = t.expand(x.shape[0]).to(x.device)
            return self.transformer(hidden_states=x.to(self.dtype), encoder_hidden_states=text, timestep=ts,
                                    image_rotary_emb=rope, return_dict=False, **self.transformer_inputs(x))[0]

    def transformer_inputs(self, x) -> dict[str, Any]:
        """Further keyword inputs of the transformer for latents x (image-to-video 1.5: ofs)."""
        return {}

    def predict(self, x, t, text, scale, geo, positions=None, cond=None):
        """CFG in one batch of two (negative, positive), as CogVideoXPipeline."""
        import torch

        if scale is None:
            return self.forward(x, t, text[-1:], geo, positions, cond=cond).float()
        neg, pos = self.forward(torch.cat([x, x]), t, text, geo, positions, cond=cond).float().chunk(2)
        return neg + scale * (pos - neg)

    def install(self, taps):
        """Our processor at every block's joint attention (the text and video tokens attend together)."""
        from .attn_swap import processors_at
        from .cogvideox_attn import CogVideoXAttention

        return processors_at((self.transformer,), taps, self.num_blocks, "transformer_blocks.{b}.attn1.processor",
                             CogVideoXAttention)

    # -- what emb mode optimises ----------------------------------------------------------------------
    def emb_variable(self, geo, angles):
        """q and k RoPE tables [2, 2, N, D] (q/k, cos/sin), their rotation angles [2, N, D] with `angles`
        (they stay rotations), or the sincos embedding [N, dim]."""
        import torch

        rope = self.default_rope(geo)
        if rope is None:
            return self.sincos_embedding(geo).float().clone()
        cos, sin = rope
        if angles:
            angle = torch.atan2(sin.float(), cos.float())
            return torch.stack([angle, angle])
        pair = torch.stack([cos, sin]).float()
        return torch.stack([pair, pair])  # separate q and k tables, as the paper

    def emb_value(self, var, angles):
        import torch

        if angles and self.uses_rope:
            return torch.stack([var.cos(), var.sin()], dim=1)  # [q/k, cos/sin, N, D]
        return var


def pad_front(latent, patch_t: int):
    """[B, F, C, h, w] -> [B, F', C, h, w] with F' the next multiple of `patch_t`: the first frame repeated in
    front (as CogVideoXImageToVideoPipeline pads its image latent for CogVideoX 1.5)."""
    import torch

    pad = -latent.shape[1] % patch_t
    return torch.cat([latent[:, :1].expand(-1, pad, -1, -1, -1), latent], dim=1) if pad else latent


@contextmanager
def _sincos_replaced(transformer, embedding, base) -> Iterator[None]:
    """Make the patch embedding add `embedding` instead of `base` to the video tokens (a forward hook)."""
    import torch

    delta = embedding - base

    def hook(_module, _inputs, out):
        n = delta.shape[0]
        return torch.cat([out[:, :-n], out[:, -n:] + delta.to(out.dtype)], dim=1)

    handle = transformer.patch_embed.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
