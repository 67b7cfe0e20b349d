"""Wan text-to-video (2.1: 1.3B, 14B; 2.2: T2V-A14B, TI2V-5B; local folders) through diffusers' `WanPipeline`.

Text enters only through each block's cross-attention (`attn2`), so every token of the self-attention
(`attn1`) is a video token. RoPE is real-valued: `transformer.rope(latent)` returns (cos, sin), each
[1, S, 1, D] over interleaved pairs, once per forward, shared by every block's attn1 (and by q and k).
Latents are [B, C, F, h, w], normalised by the VAE's per-channel latents_mean/std; patch (1, 2, 2).

Wan 2.2 A14B has two experts: `transformer` (high noise) predicts at t >= boundary_ratio x 1000,
`transformer_2` below, as WanPipeline; taps, processors, the RoPE hook and checkpointing go on both, and the
guidance runs on the high-noise one (a guidance range reaching the other is refused). TI2V-5B takes one
timestep per token (`expand_timesteps`), all equal in text-to-video, and a 48-channel latent at 16x.

Schedulers: the checkpoints ship UniPC (flow prediction, flow sigmas, a shift). Unguided and emb-mode runs
use the folder's own, so they reproduce WanPipeline. UniPC's corrector rebuilds x_t from the previous
sample and model outputs, discarding a latent the guide optimised; latent-mode runs therefore step with
flow-match Euler at the same shift (x_next = x + (sigma_next - sigma) v: it keeps the latent it is given).
"""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..config import guidance_steps
from ..errors import InputError
from ..finite import to_uint8
from .base import Geometry, geometry_of
from .flow_match import FlowMatchBackbone
from .preset import ModelPreset
from .source import read_config, read_json_object
from .wan_presets import ALIASES, PRESETS, WanSettings, boundary_ratio, folder_preset

if TYPE_CHECKING:
    import torch

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


def run_scheduler(own, keeps_latent: bool):
    """The scheduler a run steps with: the folder's own (UniPC), or flow-match Euler at its shift when the
    latent is optimised (see the module doc). Never `own` itself: it is kept."""
    from diffusers import FlowMatchEulerDiscreteScheduler

    if keeps_latent:
        shift = float(own.config.get("flow_shift", None) or 3.0)
        return FlowMatchEulerDiscreteScheduler(num_train_timesteps=own.config.num_train_timesteps, shift=shift)
    return type(own).from_config(own.config)


def _folder_scheduler(folder):
    """The folder's scheduler from its config file alone (no weights)."""
    import diffusers

    cfg = read_json_object(folder / "scheduler" / "scheduler_config.json") or {}
    cls = getattr(diffusers, str(cfg.get("_class_name", "")), None)
    if cls is None:
        raise InputError(f"{folder}/scheduler/scheduler_config.json names no diffusers scheduler")
    return cls.from_config(cfg)


class WanBackbone(FlowMatchBackbone):
    pipeline_class, family = "WanPipeline", "Wan"
    presets, aliases, settings = PRESETS, ALIASES, WanSettings
    frame_axis = 2  # latents are [B, C, F, h, w]

    @classmethod
    def config_geometry(cls, folder, frames, height, width) -> Geometry:
        vae = read_config(folder, "vae")
        return _geometry(read_config(folder, "transformer").get("patch_size", (1, 2, 2)), int(vae.get("scale_factor_spatial", 8)),
                         int(vae.get("scale_factor_temporal", 4)), frames, height, width)

    @classmethod
    def folder_preset(cls, model, folder, defaults) -> ModelPreset:
        return folder_preset(model, folder, defaults, cls.setting_names())

    @classmethod
    def check_resolved(cls, cfg, model) -> None:
        """A two-expert model: every guided step on the high-noise expert (the AMF is its own), and
        --cfg-low-noise only where there is a low-noise expert. From config files: before any weights load."""
        ratio = boundary_ratio(model.folder)
        if ratio is None:
            if cfg.family.get("cfg_low_noise") is not None:
                raise InputError(f"--cfg-low-noise is for two-expert Wan 2.2 models; {model.arg} has one transformer")
            return
        if not cfg.guidance:
            return  # KV injection alone records each step's K/V from the expert that runs it
        scheduler = run_scheduler(_folder_scheduler(model.folder), cfg.opt_mode == "latent")
        scheduler.set_timesteps(cfg.steps)
        boundary = ratio * scheduler.config.num_train_timesteps
        high = sum(1 for t in scheduler.timesteps if t >= boundary)
        late = [i for i in guidance_steps(cfg.steps, cfg.guidance_range) if i >= high]
        if late:
            hi, lo = cfg.guidance_range
            raise InputError(f"--guidance-range {hi},{lo} guides step {late[0]}, where the low-noise expert runs "
                             f"({model.arg} hands over at timestep {boundary:g}, after step {high - 1} of "
                             f"{cfg.steps}); the AMF is the high-noise expert's: keep LO >= {cfg.steps - high}")

    @classmethod
    def image_pipeline(cls, folder) -> str | None:
        """TI2V-5B (`expand_timesteps`) animates an image too, through WanImageToVideoPipeline; other
        text-to-video folders do not."""
        index = read_json_object(folder / "model_index.json") or {}
        return "WanImageToVideoPipeline" if index.get("expand_timesteps") else None

    @classmethod
    def pipeline_type(cls):
        from diffusers import WanPipeline

        return WanPipeline

    def check_pipeline(self, pipe) -> None:
        """Where a two-expert pipeline hands over (self.boundary, a timestep; None: one transformer)."""
        ratio = pipe.config.get("boundary_ratio")
        self.boundary = None if ratio is None or pipe.transformer_2 is None else ratio * pipe.scheduler.config.num_train_timesteps

    def scheduler_for(self, own, keeps_latent: bool):
        return run_scheduler(own, keeps_latent)

    # -- shapes, experts ------------------------------------------------------------------------------
    @property
    def experts(self) -> tuple:
        """(transformer,) or, for Wan 2.2 A14B, (high-noise, low-noise)."""
        return (self.pipe.transformer,) if self.boundary is None else (self.pipe.transformer, self.pipe.transformer_2)

    def expert_for(self, t) -> int:
        """WanPipeline's rule: `transformer` at t >= boundary, `transformer_2` below it."""
        return 0 if self.boundary is None or float(t) >= self.boundary else 1

    def blocks_of(self, expert):
        return expert.blocks

    def after_blocks_of(self, expert):
        return expert.norm_out

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
        return to_uint8(frames)  # NaN pixels refused: they would be black frames

    # -- sampling -------------------------------------------------------------------------------------
    def timesteps(self, steps: int):
        self.schedule_set()
        self.scheduler.set_timesteps(steps, device=self.device)
        self.scheduler.set_begin_index(0)
        return self.scheduler.timesteps

    def initial_noise(self, geo: Geometry, generator):
        """float32, as WanPipeline (the transformer gets it cast to its dtype)."""
        import torch

        return self.pipe.prepare_latents(1, self.transformer.config.in_channels, geo.height, geo.width, geo.frames,
                                         torch.float32, self.device, generator)

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

    def _expert_on_device(self, index: int):
        """The expert `index`, with model CPU offload keeping only it on the accelerator: diffusers' offload
        chain (text_encoder->transformer->transformer_2->vae) moves the previous model off when the next runs,
        never the later one when an earlier runs again, so the other expert is sent back here."""
        experts = self.experts
        if self.offloaded and len(experts) > 1:
            for other in experts[:index] + experts[index + 1:]:
                if next(other.parameters()).device.type != "cpu":
                    other.to("cpu")  # what the offload hook's own offload() does
        return experts[index]

    def _timestep(self, t, batch: int, geo: Geometry):
        """[B], or [B, S] (one per video token) for a model that expands timesteps, as WanPipeline."""
        if self.pipe.config.get("expand_timesteps"):
            return t.float().reshape(1, 1).expand(batch, int(np.prod(geo.grid)))
        return t.expand(batch)

    def forward(self, x, t, text, geo, positions=None, expert=None, cond=None):
        """Flow prediction [B, C, F, h, w] of the timestep's expert (or `expert`); positions: rotation angles
        [1, S, 1, D/2] or (cos, sin) tables [2, 1, S, 1, D], given to every block through a forward hook on the
        expert's `rope`."""
        transformer = self._expert_on_device(self.expert_for(t) if expert is None else expert)
        hidden, ts, extra = self.model_inputs(x, t, geo, cond)
        with ExitStack() as stack:
            if positions is not None:
                stack.enter_context(_rope_replaced(transformer, positions))
            return transformer(hidden_states=hidden.to(self.dtype), timestep=ts.to(x.device),
                               encoder_hidden_states=text.to(self.dtype), return_dict=False, **extra)[0]

    def model_inputs(self, x, t, geo: Geometry, cond):
        """(hidden_states, timestep, other transformer kwargs) for latent x: text-to-video takes x as it is."""
        return x, self._timestep(t, x.shape[0], geo), {}

    def predict(self, x, t, text, scale, geo, positions=None, cond=None):
        """CFG in two passes, positive then negative, as WanPipeline."""
        pos = self.forward(x, t, text[-1:], geo, positions, cond=cond).float()
        if scale is None:
            return pos
        neg = self.forward(x, t, text[:1], geo, positions, cond=cond).float()
        return neg + scale * (pos - neg)

    def cfg_scale(self, cfg: float, steps: int, t) -> float:
        """--cfg, or --cfg-low-noise on the low-noise expert's steps (WanPipeline's guidance_scale_2)."""
        low = self.run.get("cfg_low_noise")
        return low if low is not None and self.expert_for(t) == 1 else cfg

    def install(self, taps):
        """Our processor at every block's attn1 of every expert (attn2, the text cross-attention, keeps its own)."""
        from .attn_swap import processors_at
        from .wan_attn import WanSelfAttention

        return processors_at(self.experts, taps, self.num_blocks, "blocks.{b}.attn1.processor", WanSelfAttention)

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
