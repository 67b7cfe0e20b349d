"""LTX-2 text-to-video through diffusers' `LTX2Pipeline`: an audio-video transformer with 3D RoPE.

Each block runs video self-attention (`attn1`, the taps' place: every token a video token), audio
self-attention, text cross-attention per modality and audio<->video cross-attention. Motion transfer concerns
the video tokens only: the audio latent is denoised beside the video as the pipeline does (its own noise, drawn
after the video's, its own CFG and Euler step), its tokens never reach an AMF or a loss, and it is dropped at
the end. The guides' forwards see the run's audio at that step as a constant; a pass outside a run (extraction)
sees pure audio noise at timestep 1000 (nothing known about the sound).

Latents are [B, C, F, h, w] normalised by the VAE's latents_mean/std, packed to tokens [B, F*h*w, C] (patch 1)
inside `forward`. Text is Gemma-3's stacked hidden states through the connectors; `encode_prompt` returns
[1, L, Dv + Da + 1]: the video text, the audio text and the connectors' mask, split again in `forward`.
Scheduler: flow-match Euler with the pipeline's sigmas (linspace(1, 1/N) shifted by the token count); it keeps
a guided latent, so every mode steps with it. CFG is the pipeline's, in x0 space: CFG, modality isolation
(a pass without the cross-modal attention), STG where the model has perturbed attention, then the rescale.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..errors import InputError
from ..finite import to_uint8
from .base import Geometry, geometry_of
from .flow_match import FlowMatchBackbone
from .ltx2_presets import ALIASES, FRAME_RATE, PIPELINE_DEFAULTS, PRESETS, LTX2Settings, folder_preset
from .preset import ModelPreset
from .source import read_config

if TYPE_CHECKING:
    import torch

MAX_TEXT = 1024  # LTX2Pipeline's default max_sequence_length (8 x its connectors' 128 registers)
STG_BLOCKS = (28,)  # the pipeline's default spatio_temporal_guidance_blocks


def ltx2_geometry(patch: int, patch_t: int, spatial: int, temporal: int, frames: int, height: int, width: int) -> Geometry:
    """The pipeline's rules: sides multiples of 32 (and of the VAE's factor), 8k+1 frames (its temporal factor),
    and at least 2 latent rows and columns (the VAE decoder's smallest input)."""
    if patch_t != 1:
        raise InputError(f"LTX-2 models with temporal patches ({patch_t}) are not supported")
    if height % 32 or width % 32:
        raise InputError(f"LTX-2 takes sizes that are multiples of 32, not {height}x{width}")
    if (frames - 1) % temporal:
        lo = (frames - 1) // temporal * temporal + 1
        raise InputError(f"LTX-2 takes {temporal}k+1 frames (its VAE keeps frame 0 and compresses {temporal} to 1), "
                         f"not {frames}; pick --frames {lo} or {lo + temporal}")
    if min(height, width) < 2 * spatial:
        raise InputError(f"LTX-2's VAE decodes at least {2 * spatial}x{2 * spatial} pixels; {height}x{width} is smaller")
    return geometry_of(patch, spatial, temporal, frames, height, width)


def vae_factors(vae_config: dict) -> tuple[int, int]:
    """(spatial, temporal) compression of an LTX-2 video VAE config, as AutoencoderKLLTX2Video computes them."""
    scaling = vae_config.get("spatio_temporal_scaling", (True, True, True, True))
    ups = sum(scaling) if isinstance(scaling, (list, tuple)) else 4 * bool(scaling)
    spatial = vae_config.get("spatial_compression_ratio") or int(vae_config.get("patch_size", 4)) * 2 ** ups
    temporal = vae_config.get("temporal_compression_ratio") or int(vae_config.get("patch_size_t", 1)) * 2 ** ups
    return int(spatial), int(temporal)


def rescaled(guided: torch.Tensor, plain: torch.Tensor, factor: float) -> torch.Tensor:
    """The pipeline's guidance rescale: `guided` brought to `plain`'s std (per batch row) by `factor`."""
    dims = list(range(1, plain.dim()))
    ratio = plain.std(dim=dims, keepdim=True) / guided.std(dim=dims, keepdim=True)
    return factor * guided * ratio + (1 - factor) * guided


class LTX2Backbone(FlowMatchBackbone):
    pipeline_class, family = "LTX2Pipeline", "LTX-2"
    presets, aliases, settings = PRESETS, ALIASES, LTX2Settings
    frame_axis = 2  # latents are [B, C, F, h, w]
    text_parts = ("text_encoder", "connectors")  # Gemma 3 and the connectors that turn its states into the model's

    @classmethod
    def config_geometry(cls, folder, frames, height, width) -> Geometry:
        cfg = read_config(folder, "transformer")
        spatial, temporal = vae_factors(read_config(folder, "vae"))
        return ltx2_geometry(int(cfg.get("patch_size", 1)), int(cfg.get("patch_size_t", 1)), spatial, temporal,
                             frames, height, width)

    @classmethod
    def folder_preset(cls, model, folder, defaults) -> ModelPreset:
        return folder_preset(model, folder, defaults, cls.setting_names(), cls.presets)

    @classmethod
    def image_pipeline(cls, folder) -> str | None:
        """LTX-2's weights animate an image too, through LTX2ImageToVideoPipeline."""
        return "LTX2ImageToVideoPipeline"

    @classmethod
    def pipeline_type(cls):
        from diffusers import LTX2Pipeline

        return LTX2Pipeline

    def scheduler_for(self, own, keeps_latent: bool):
        return type(own).from_config(own.config)  # flow-match Euler keeps the latent it is given

    # -- shapes ----------------------------------------------------------------------------------------
    def blocks_of(self, expert):
        return expert.transformer_blocks

    def after_blocks_of(self, expert):
        return expert.norm_out

    def block_video(self, out):
        return out[0][-1]  # a block returns (video [B, S, C], audio): the video tokens of the last row

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        cfg = self.transformer.config
        geo = ltx2_geometry(cfg.patch_size, cfg.patch_size_t, self.pipe.vae_spatial_compression_ratio,
                            self.pipe.vae_temporal_compression_ratio, frames, height, width)
        self._geo = geo  # the run's token count sets the scheduler's shift (`timesteps`)
        return geo

    def setting(self, name: str) -> float:
        """A family setting of this run, else the model's default, else the pipeline's."""
        value = self.run.get(name)
        if value is None:
            value = self.model.preset.family.get(name)
        return PIPELINE_DEFAULTS[name] if value is None else value

    # -- text, pixels, latents -------------------------------------------------------------------------
    @property
    def text_length(self) -> int:
        """The pipeline's 1024 tokens, or a tokenizer's shorter model_max_length (left-padded, as Gemma)."""
        return int(min(MAX_TEXT, self.pipe.tokenizer.model_max_length))

    def encode_prompt(self, prompt: str):
        """[1, L, Dv + Da + 1]: the connectors' video and audio text embeddings and their mask, packed."""
        import torch

        self._text_encoder_ready()
        pipe = self.pipe
        with torch.no_grad():
            emb, mask, _, _ = pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device=self.text_device,
                                                 max_sequence_length=self.text_length)
            video, audio, keep = pipe.connectors(emb, mask, padding_side=getattr(pipe.tokenizer, "padding_side", "left"))
        self._text_dims = (video.shape[-1], audio.shape[-1])
        return torch.cat([video, audio, keep.unsqueeze(-1).to(video.dtype)], dim=-1).to(self.device, self.dtype)

    def _split_text(self, text):
        dv, da = self._text_dims
        return text[..., :dv], text[..., dv:dv + da], text[..., -1]

    def _latent_stats(self, like):
        vae = self.pipe.vae
        return (vae.latents_mean.view(1, -1, 1, 1, 1).to(like.device, like.dtype),
                vae.latents_std.view(1, -1, 1, 1, 1).to(like.device, like.dtype), vae.config.scaling_factor)

    def encode_video(self, frames: np.ndarray):
        """uint8 [F, H, W, 3] -> normalised latent [1, C, F_latent, h, w] (the VAE's mode)."""
        import torch

        video = torch.from_numpy(frames).permute(3, 0, 1, 2).float() / 127.5 - 1.0
        video = video.unsqueeze(0).to(self.device, self.pipe.vae.dtype)
        with torch.no_grad():
            z = self.pipe.vae.encode(video).latent_dist.mode()
        mean, std, scale = self._latent_stats(z)
        return ((z - mean) * scale / std).to(self.dtype)

    def decode(self, latents, geo=None) -> np.ndarray:
        """Normalised latent [1, C, F, h, w] -> uint8 frames [F, H, W, 3], as the pipeline decodes (decode_timestep 0,
        so a timestep-conditioned VAE gets its latent unchanged)."""
        import torch

        vae = self.pipe.vae
        with torch.no_grad():
            z = latents.to(self.device, self.dtype)
            mean, std, scale = self._latent_stats(z)
            z = (z * std / scale + mean).to(vae.dtype)
            timestep = torch.zeros(1, device=z.device, dtype=z.dtype) if vae.config.timestep_conditioning else None
            video = vae.decode(z, timestep, return_dict=False)[0]
            frames = self.pipe.video_processor.postprocess_video(video, output_type="np")[0]
        return to_uint8(frames)

    # -- the audio beside the video --------------------------------------------------------------------
    def _audio_shape(self, geo: Geometry) -> tuple[int, int, int, int]:
        """[1, C, L, M] of the audio latent of a `geo.frames`-frame video at the pipeline's frame rate."""
        pipe = self.pipe
        per_second = pipe.audio_sampling_rate / pipe.audio_hop_length / float(pipe.audio_vae_temporal_compression_ratio)
        length = round(geo.frames / FRAME_RATE * per_second)
        mel = pipe.audio_vae.config.mel_bins // pipe.audio_vae_mel_compression_ratio
        return (1, pipe.audio_vae.config.latent_channels, length, mel)

    def _context_audio(self, geo: Geometry, t):
        """(packed audio latent [1, L, C*M], its timestep) for a forward: the run's, or pure noise at 1000."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        if self._audio is not None:
            return self._audio, t
        noise = randn_tensor(self._audio_shape(geo), generator=torch.Generator().manual_seed(0), device=self.device,
                             dtype=torch.float32)
        return self.pipe._pack_audio_latents(noise), torch.tensor(1000.0, device=self.device)

    # -- sampling -------------------------------------------------------------------------------------
    _audio = None
    _audio_v = None

    def start_run(self, family, keeps_latent: bool = False) -> None:
        super().start_run(family, keeps_latent)
        self._audio, self._audio_v = None, None

    def timesteps(self, steps: int):
        """The pipeline's sigmas, linspace(1, 1/steps) shifted for this geometry's token count; the audio steps on
        its own copy of the scheduler."""
        from diffusers.pipelines.ltx2.pipeline_ltx2 import calculate_shift

        cfg = self.scheduler.config
        mu = calculate_shift(int(np.prod(self._geo.grid)), cfg.get("base_image_seq_len", 1024),
                             cfg.get("max_image_seq_len", 4096), cfg.get("base_shift", 0.95), cfg.get("max_shift", 2.05))
        # the audio's scheduler: the same one set the same way (not a deep copy of its tensors, which the planner's
        # fake tensors do not survive)
        self._audio_scheduler = type(self.scheduler).from_config(self.scheduler.config)
        for scheduler in (self.scheduler, self._audio_scheduler):
            scheduler.set_timesteps(sigmas=np.linspace(1.0, 1 / steps, steps), device=self.device, mu=mu)
            scheduler.set_begin_index(0)
        self.schedule_set()
        return self.scheduler.timesteps

    def initial_noise(self, geo: Geometry, generator):
        """float32 video noise [1, C, F, h, w], then the audio's, drawn from the same generator as the pipeline."""
        import torch
        from diffusers.utils.torch_utils import randn_tensor

        shape = (1, self.transformer.config.in_channels, geo.latent_frames, geo.latent_height, geo.latent_width)
        x = randn_tensor(shape, generator=generator, device=self.device, dtype=torch.float32)
        audio = randn_tensor(self._audio_shape(geo), generator=generator, device=self.device, dtype=torch.float32)
        self._audio = self.pipe._pack_audio_latents(audio)
        return x

    def step(self, v, t, x, state):
        """Euler on the video, and on the audio with the velocity of the last `predict`."""
        if self._audio is not None and self._audio_v is not None:
            self._audio = self._audio_scheduler.step(self._audio_v, t, self._audio, return_dict=False)[0]
        return self.scheduler.step(v, t, x, return_dict=False)[0], None, state

    # -- the transformer ------------------------------------------------------------------------------
    def video_input(self, x, cond):
        """What the video tokens carry for latent x (an image-to-video model pastes its picture in)."""
        return x

    def video_timestep(self, t, batch: int, geo: Geometry, cond):
        """[B] (or [B, S] per token on an image-to-video model)."""
        return t.expand(batch)

    def forward(self, x, t, text, geo, positions=None, expert=None, cond=None, *, isolate: bool = False,
                stg: tuple[int, ...] = ()):
        """Video velocity [B, C, F, h, w]; the audio's [B, La, Ca] is kept in `self._audio_out`. positions: canonical
        RoPE angles or tables (ltx2_attn), given to every block through a hook on the transformer's `rope`."""

        tr, pipe = self.transformer, self.pipe
        b = x.shape[0]
        video, audio_text, mask = self._split_text(text.to(self.device))
        audio, audio_t = self._context_audio(geo, t)
        f, h, w = geo.grid
        hidden = pipe._pack_latents(self.video_input(x, cond), tr.config.patch_size, tr.config.patch_size_t)
        coords = tr.rope.prepare_video_coords(b, f, h, w, x.device, fps=FRAME_RATE)
        hook = _rope_replaced(tr, positions, tr.config.rope_type == "split") if positions is not None else _nothing()
        with hook:
            out, audio_out = tr(hidden_states=hidden.to(self.dtype), audio_hidden_states=audio.expand(b, -1, -1).to(self.dtype),
                                encoder_hidden_states=video, audio_encoder_hidden_states=audio_text,
                                timestep=self.video_timestep(t, b, geo, cond), audio_timestep=audio_t.expand(b),
                                sigma=t.expand(b), audio_sigma=audio_t.expand(b), encoder_attention_mask=mask,
                                audio_encoder_attention_mask=mask, num_frames=f, height=h, width=w, fps=FRAME_RATE,
                                audio_num_frames=audio.shape[1], video_coords=coords, isolate_modalities=isolate,
                                spatio_temporal_guidance_blocks=list(stg) or None, use_cross_timestep=True,
                                return_dict=False)
        self._audio_out = audio_out.float()
        return pipe._unpack_latents(out, f, h, w, tr.config.patch_size, tr.config.patch_size_t)

    def predict(self, x, t, text, scale, geo, positions=None, cond=None):
        """The pipeline's guidance in x0 space: CFG (video --cfg, audio --audio-cfg), modality isolation, STG, the
        rescale; returned as a velocity. scale None: the positive prediction alone (no term for either modality)."""

        pos = self.forward(x, t, text[-1:], geo, positions, cond=cond).float()
        pos_a = self._audio_out
        if scale is None:
            self._audio_v = pos_a
            return pos
        s = self._sigma(t)
        xv = self.video_input(x, cond).float()
        xa = self._context_audio(geo, t)[0].float()
        x0, a0 = xv - s * pos, xa - s * pos_a
        neg = self.forward(x, t, text[:1], geo, positions, cond=cond).float()
        dv, da = (scale - 1) * (pos - neg) * -s, (self.setting("audio_cfg") - 1) * (pos_a - self._audio_out) * -s
        terms = []
        if self.setting("modality_cfg") != 1:
            terms.append((self.setting("modality_cfg") - 1, dict(isolate=True)))
        stg = tuple(b for b in STG_BLOCKS if b < self.num_blocks)
        if self.setting("stg_scale") > 0 and stg and self.transformer.config.get("perturbed_attn"):
            terms.append((self.setting("stg_scale"), dict(stg=stg)))
        for weight, kind in terms:
            other = self.forward(x, t, text[-1:], geo, positions, cond=cond, **kind).float()
            dv = dv + weight * (pos - other) * -s
            da = da + weight * (pos_a - self._audio_out) * -s
        g, ga = x0 + dv, a0 + da
        r = self.setting("cfg_rescale")
        if r > 0:
            g, ga = rescaled(g, x0, r), rescaled(ga, a0, r)
        self._audio_v = (xa - ga) / s
        return (xv - g) / s

    def install(self, taps):
        """Our processor at every block's video self-attention (audio, text and cross-modal attention keep theirs)."""
        from .attn_swap import processors_at
        from .ltx2_attn import LTX2VideoSelfAttention

        return processors_at((self.transformer,), taps, self.num_blocks, "transformer_blocks.{b}.attn1.processor", LTX2VideoSelfAttention)

    # -- what emb mode optimises ----------------------------------------------------------------------
    def default_rope(self, geo: Geometry):
        """The model's own (cos, sin) for this grid in `rope`'s layout (computed once)."""
        import torch

        if geo.grid not in self._rope:
            tr = self.transformer
            coords = tr.rope.prepare_video_coords(1, *geo.grid, self.device, fps=FRAME_RATE)
            with torch.no_grad():
                self._rope[geo.grid] = tr.rope(coords, device=self.device)
        return self._rope[geo.grid]

    def emb_variable(self, geo, angles):
        """Canonical angles [1, S, H, D/2] (split) / [1, S, C/2] (interleaved), or (cos, sin) stacked: [2, 1, S, ...]."""
        import torch

        from .ltx2_attn import native_to_canonical

        split = self.transformer.config.rope_type == "split"
        cos, sin = (native_to_canonical(c.float(), split) for c in self.default_rope(geo))
        return torch.atan2(sin, cos) if angles else torch.stack([cos, sin])


@contextmanager
def _nothing() -> Iterator[None]:
    yield


@contextmanager
def _rope_replaced(transformer, positions, split: bool) -> Iterator[None]:
    """Make `transformer.rope` (the video self-attention's; the cross-modal ropes are other modules) return these
    positions, expanded over the batch."""
    from .ltx2_attn import positions_to_rope

    cos, sin = positions_to_rope(positions, 4 if split else 3, split)

    def hook(_module, args, _out):
        b = args[0].shape[0]
        return cos.expand(b, *cos.shape[1:]), sin.expand(b, *sin.shape[1:])

    handle = transformer.rope.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()
