"""The LTX-2 family's presets and its own guide settings (the pipeline's multi-term guidance).

LTX-2 (Lightricks/LTX-2, diffusers format) is one checkpoint for both text- and image-to-video: `ltx2` loads it
as `LTX2Pipeline`, `ltx2-i2v` as `LTX2ImageToVideoPipeline`. Sizes, frames, steps and guidance are diffusers'
documented stage-1 settings for it; blocks, lr and the guidance range are scaled from the measured families
(about 40% of the depth, as CogVideoX-5B's 20 of 42) and are *not measured with real weights*.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..checks import rule
from ..config import MAX_CFG
from .preset import ModelPreset, with_folder_defaults
from .source import read_config

FRAME_RATE = 24.0  # the pipeline's default frame_rate: RoPE's time axis is in seconds (frame / fps)
# diffusers' LTX-2 docs (docs/source/en/api/pipelines/ltx2.md, stage 1 of its two-stage example)
NEGATIVE_PROMPT = ("shaky, glitchy, low quality, worst quality, deformed, distorted, disfigured, motion smear, motion "
                   "artifacts, fused fingers, bad anatomy, weird hand, ugly, transition, static.")
PIPELINE_DEFAULTS = dict(audio_cfg=7.0, modality_cfg=3.0, cfg_rescale=0.7, stg_scale=1.0)  # LTX2Pipeline.__call__'s


@dataclass(frozen=True)
class LTX2Settings:
    """The guide settings only LTX-2 understands: the pipeline's guidance terms besides --cfg. None: the model's
    default."""

    audio_cfg: float | None = field(default=None, metadata=rule(
        "CFG scale of the audio branch (the pipeline's audio_guidance_scale; the audio is generated beside the "
        f"video and dropped), from 1 (off) to {MAX_CFG}. [default: 7]", ge=1, le=MAX_CFG))
    modality_cfg: float | None = field(default=None, metadata=rule(
        "Modality-isolation guidance (the pipeline's modality_scale: one more pass without the audio-video "
        f"cross-attention), from 1 (off) to {MAX_CFG}. [default: 3]", ge=1, le=MAX_CFG))
    cfg_rescale: float | None = field(default=None, metadata=rule(
        "Guidance rescale of the combined prediction (the pipeline's guidance_rescale), from 0 (off) to 1. "
        "[default: 0.7]", ge=0, le=1))
    stg_scale: float | None = field(default=None, metadata=rule(
        "Spatio-temporal guidance scale (the pipeline's stg_scale; a pass with block 28's self-attention skipped, "
        "only on models with perturbed attention), from 0 (off) to 10. [default: 1]", ge=0, le=10))


# Stage 1 of diffusers' LTX-2 example (read from its docs): 512x768, 121 frames at 24 fps, 30 steps, CFG 3, the
# pipeline's audio CFG 7, modality 3, rescale 0.7 and scheduler (shifted by token count, terminal sigma 0.1);
# the 2x latent upsampler and distilled stage 2 are not used. ltx-pipelines' own LTX-2 defaults were, as recalled,
# 40 steps and CFG 4. Guidance: block 20 of 48, steps 0..5 of 30 (the paper's first fifth), lr as CogVideoX's.
_LTX2 = dict(height=512, width=768, frames=121, steps=30, cfg=3.0, negative_prompt=NEGATIVE_PROMPT, emb_param="angle",
             guidance_blocks=(20,), guidance_range=(30, 24), family=dict(PIPELINE_DEFAULTS))
SOURCE = "Lightricks/LTX-2"
PRESETS: dict[str, ModelPreset] = {"ltx2": ModelPreset(SOURCE, "bfloat16", **_LTX2)}
I2V_PRESETS: dict[str, ModelPreset] = {"ltx2-i2v": ModelPreset(SOURCE, "bfloat16", **_LTX2)}
ALIASES = {SOURCE: "ltx2"}
I2V_ALIASES: dict[str, str] = {}  # the same hub id: a folder of it is `ltx2`, `--image` runs it as image-to-video
LAYOUT = (48, 32, 128)  # (layers, heads, latent channels) of the released transformer


def folder_preset(model: str, folder: Path, defaults: dict[str, Any] | None, family_names,
                  presets: dict[str, ModelPreset]) -> ModelPreset:
    """A local copy of the release gets its preset; any other folder what LTX2Pipeline does by default (512x768,
    121 frames, 30 steps, CFG 3, float32, no negative prompt), half its depth guided; then its ditflow.json."""
    cfg = read_config(folder, "transformer")
    shape = (int(cfg.get("num_layers", 48)), cfg.get("num_attention_heads"), int(cfg.get("in_channels", 128)))
    base = next(iter(presets.values()))
    if shape == LAYOUT:
        preset = replace(base, source=model)
    else:
        preset = replace(base, source=model, dtype="float32", guidance_blocks=(shape[0] // 2,), negative_prompt="")
    return with_folder_defaults(preset, defaults, model, family_names) if defaults else preset
