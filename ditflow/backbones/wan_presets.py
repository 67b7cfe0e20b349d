"""The Wan family's presets, its own guide settings, and what a folder's files say about its layout.

Wan 2.1 (1.3B, 14B) and Wan 2.2 (T2V-A14B: two 14B experts; TI2V-5B: one 5B model on a 16x VAE) are all
`WanPipeline`. A folder is matched to a preset by its structure (how many experts, layers, heads, latent
channels), so a local copy of a released checkpoint gets that checkpoint's defaults and any other folder its
own pipeline's.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ..checks import rule
from ..config import MAX_CFG
from ..errors import InputError
from .preset import PAPER_NEGATIVE_PROMPT, ModelPreset, with_folder_defaults
from .source import read_config, read_json_object


@dataclass(frozen=True)
class WanSettings:
    """The guide settings only Wan understands. None: the model's default."""

    cfg_low_noise: float | None = field(default=None, metadata=rule(
        "CFG scale on the low-noise expert's steps (WanPipeline's guidance_scale_2; two-expert Wan 2.2 models "
        f"only), from 1 (off) to {MAX_CFG}. [default: 3 for wan2.2-a14b (its model card), --cfg for other folders]",
        ge=1, le=MAX_CFG))


# Guidance blocks and learning rates are the CogVideoX paper's proportions (about half the depth), not measured
# on Wan; sizes, CFG and frame counts are the model cards'. The scheduler (UniPC, its shift) is the folder's.
_WAN = dict(height=480, width=832, frames=25, steps=50, cfg=5.0, negative_prompt=PAPER_NEGATIVE_PROMPT, emb_param="angle")
PRESETS: dict[str, ModelPreset] = {
    "wan-1.3b": ModelPreset("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "bfloat16", guidance_blocks=(15,), **_WAN),
    "wan-14b": ModelPreset("Wan-AI/Wan2.1-T2V-14B-Diffusers", "bfloat16", guidance_blocks=(20,), **_WAN),
    # two experts: the high-noise one (`transformer`) runs every guided step; CFG 4 / 3 as its model card. Its AMF
    # is extracted from the reference noised to t = 500: the high-noise expert never saw t < 875 in training,
    # and on the toy model 500 is the largest timestep whose AMF still agrees with the true motion as well as the
    # clean reference's (docs/performance.md, "Extraction timestep"; not measured with real weights)
    "wan2.2-a14b": ModelPreset("Wan-AI/Wan2.2-T2V-A14B-Diffusers", "bfloat16", guidance_blocks=(20,),
                               **{**_WAN, "cfg": 4.0}, family={"cfg_low_noise": 3.0}, extract_timestep=500),
    # one 5B model, 48 latent channels at 16x: its card's 121 frames at 704x1280 (24 fps)
    "wan2.2-ti2v-5b": ModelPreset("Wan-AI/Wan2.2-TI2V-5B-Diffusers", "bfloat16", guidance_blocks=(15,),
                                  **{**_WAN, "height": 704, "width": 1280, "frames": 121}),
}
ALIASES = {p.source: name for name, p in PRESETS.items()}
# Image-to-video (WanImageToVideoPipeline): sizes from the model cards; blocks and lr as their text-to-video
# siblings', not measured. 2.2 I2V-A14B hands over at t = 900 (boundary 0.9), CFG 3.5 on both experts.
I2V_PRESETS: dict[str, ModelPreset] = {
    "wan-i2v-14b-480p": ModelPreset("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "bfloat16", guidance_blocks=(20,), **_WAN),
    "wan-i2v-14b-720p": ModelPreset("Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "bfloat16", guidance_blocks=(20,),
                                    **{**_WAN, "height": 720, "width": 1280}),
    "wan2.2-i2v-a14b": ModelPreset("Wan-AI/Wan2.2-I2V-A14B-Diffusers", "bfloat16", guidance_blocks=(20,),
                                   **{**_WAN, "cfg": 3.5}, family={"cfg_low_noise": 3.5}, extract_timestep=500),
}
I2V_ALIASES = {p.source: name for name, p in I2V_PRESETS.items()}
# a local copy of 480P or 720P has the same structure: it gets the 480P sizes (pass --height/--width for 720P)
I2V_LAYOUTS = {(1, 40, 40, 36): "wan-i2v-14b-480p", (2, 40, 40, 36): "wan2.2-i2v-a14b"}
# (experts, layers, heads, latent channels) of the released checkpoints
LAYOUTS = {(1, 30, 12, 16): "wan-1.3b", (1, 40, 40, 16): "wan-14b", (2, 40, 40, 16): "wan2.2-a14b",
           (1, 30, 24, 48): "wan2.2-ti2v-5b"}
PIPELINE_CFG = 5.0  # WanPipeline's default guidance_scale


def boundary_ratio(folder: Path) -> float | None:
    """Where a two-expert folder hands over from `transformer` to `transformer_2` (a fraction of the training
    timesteps; None: one transformer). A `transformer_2` the pipeline would never run is refused."""
    index = read_json_object(folder / "model_index.json") or {}
    second = index.get("transformer_2")
    has_second = isinstance(second, list) and None not in second[:2]
    ratio = index.get("boundary_ratio")
    first = index.get("transformer")
    if isinstance(first, list) and None in first[:2]:
        raise InputError(f"{folder} has no `transformer` (the high-noise expert): ditflow guides that one")
    if has_second and ratio is None:
        raise InputError(f"{folder} has a transformer_2 but no boundary_ratio in model_index.json: "
                         f"WanPipeline would never run it")
    if not has_second:
        return None
    if isinstance(ratio, bool) or not isinstance(ratio, (int, float)) or not 0 < ratio < 1:
        raise InputError(f"{folder}/model_index.json: boundary_ratio must be a number between 0 and 1, got {ratio!r}")
    return float(ratio)


def layout(folder: Path) -> tuple[int, int, Any, int]:
    """(experts, layers, heads, latent channels) of a folder, from its config files."""
    cfg = read_config(folder, "transformer")
    experts = 1 if boundary_ratio(folder) is None else 2
    return experts, int(cfg.get("num_layers", 30)), cfg.get("num_attention_heads"), int(cfg.get("in_channels", 16))


def folder_preset(model: str, folder: Path, defaults: dict[str, Any] | None, family_names,
                  presets: dict[str, ModelPreset] = PRESETS, layouts: dict[tuple, str] = LAYOUTS) -> ModelPreset:
    """A released layout's preset (a local copy of it; `presets`/`layouts`: text- or image-to-video ones), else what
    the pipeline's from_pretrained(folder) does by default (so an unguided run equals it: WanPipeline and
    WanImageToVideoPipeline share 480x832, 81 frames, CFG 5); then the folder's ditflow.json."""
    shape = layout(folder)
    known = layouts.get(shape)
    if known:
        preset = replace(presets[known], source=model)
    else:
        preset = replace(PRESETS["wan-1.3b"], source=model, dtype="float32", guidance_blocks=(shape[1] // 2,),
                         cfg=PIPELINE_CFG, negative_prompt="", frames=81, family={"cfg_low_noise": None})
    return with_folder_defaults(preset, defaults, model, family_names) if defaults else preset
