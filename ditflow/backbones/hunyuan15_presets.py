"""HunyuanVideo 1.5's presets and what a folder's config files say about it (before any weights load).

The released diffusers-format checkpoints (hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-{480p,720p}_{t2v,i2v})
share one 8.3B transformer layout (54 double-stream blocks, 16 heads of 128) and differ in `target_size` (640:
480p, 960: 720p), `task_type` and the scheduler's shift; a folder is matched to a preset by (layers, target_size,
task_type), so a local copy gets its release's defaults, with the CFG scale its own guider saves (a
CFG-distilled copy saves 1). Any other folder gets its own pipeline's defaults.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import InputError
from .preset import PAPER_NEGATIVE_PROMPT, ModelPreset, with_folder_defaults
from .source import read_config, read_json_object

HUB = "hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-"
# The model cards' (and the release's own pipeline configs'): 121 frames, 50 steps, CFG 6; 480p is 480x848 and
# 720p 720x1280 (the pipeline's 16:9 bucket at target_size 640 / 960); flow shift 5 (480p), 9 (720p T2V), 7 (720p
# I2V), saved in each folder's scheduler config. Guidance block 26 of 54 is CogVideoX-5B's measured 20 of 42 at
# this depth, lr and guidance range are the measured families' defaults: not measured with real weights.
_HY = dict(frames=121, steps=50, cfg=6.0, negative_prompt=PAPER_NEGATIVE_PROMPT, emb_param="angle",
           guidance_blocks=(26,))
_480, _720 = dict(height=480, width=848), dict(height=720, width=1280)
PRESETS: dict[str, ModelPreset] = {
    "hunyuan1.5-480p": ModelPreset(HUB + "480p_t2v", "bfloat16", **_HY, **_480),
    "hunyuan1.5-720p": ModelPreset(HUB + "720p_t2v", "bfloat16", **_HY, **_720),
}
I2V_PRESETS: dict[str, ModelPreset] = {
    "hunyuan1.5-i2v-480p": ModelPreset(HUB + "480p_i2v", "bfloat16", **_HY, **_480),
    "hunyuan1.5-i2v-720p": ModelPreset(HUB + "720p_i2v", "bfloat16", **_HY, **_720),
}
ALIASES = {p.source: name for name, p in PRESETS.items()}
I2V_ALIASES = {p.source: name for name, p in I2V_PRESETS.items()}
# (double-stream blocks, target_size, task_type) of the released checkpoints
LAYOUTS = {(54, 640, "t2v"): "hunyuan1.5-480p", (54, 960, "t2v"): "hunyuan1.5-720p",
           (54, 640, "i2v"): "hunyuan1.5-i2v-480p", (54, 960, "i2v"): "hunyuan1.5-i2v-720p"}
FRAMES, STEPS = 121, 50  # the pipelines' own defaults (num_frames, num_inference_steps)
ASPECT = (9, 16)  # (height, width) of the text-to-video pipeline's default size, at its target_size


def buckets(target_size: int, unit: int) -> list[tuple[int, int]]:
    """(height, width) sizes the pipelines pick from at `target_size` (about target_size² pixels, multiples of the
    VAE's `unit`, at most 4:1): HunyuanVideo's own bucket list."""
    patches, out = round((target_size / unit) ** 2), []
    rows, cols = patches, 1  # from the tallest: rows shrink as columns grow, rows x cols <= patches
    while rows > 0:
        if max(rows, cols) / min(rows, cols) <= 4:
            out.append((rows * unit, cols * unit))
        if (cols + 1) * rows <= patches:
            cols += 1
        else:
            rows -= 1
    return out


def bucket_for(height: float, width: float, target_size: int, unit: int) -> tuple[int, int]:
    """The bucket the pipelines pick for an aspect: the nearest ratio on the same side of square (as theirs)."""
    aspect = height / width
    sizes = buckets(target_size, unit)
    ratios = [round(h / w, 5) for h, w in sizes]
    side = [(i, r - aspect) for i, r in enumerate(ratios) if (r - aspect <= 0 if aspect >= 1 else r - aspect >= 0)]
    return sizes[min(side, key=lambda p: abs(p[1]))[0]]


def default_size(folder: Path) -> tuple[int, int]:
    """The text-to-video pipeline's size when given none: the 16:9 bucket at its transformer's target_size."""
    target = int(read_config(folder, "transformer").get("target_size", 640))
    return bucket_for(*ASPECT, target, int(read_config(folder, "vae").get("spatial_compression_ratio", 16)))


def guider_scale(folder: Path) -> float | None:
    """The CFG scale the folder's guider saves (the pipeline call takes none), or None without a guider config."""
    cfg = read_json_object(folder / "guider" / "guider_config.json")
    if cfg is None:
        return None
    scale = cfg.get("guidance_scale", 7.5)  # ClassifierFreeGuidance's default
    if isinstance(scale, bool) or not isinstance(scale, (int, float)):
        raise InputError(f"{folder}/guider/guider_config.json: guidance_scale must be a number, got {scale!r}")
    return float(scale)


def check_folder(folder: Path) -> None:
    """What the adapter cannot drive, refused from the config files before any weights load: a guider other than
    ClassifierFreeGuidance (ditflow runs CFG's two passes), a MeanFlow (step-distilled) transformer, which takes a
    second timestep."""
    spec = (read_json_object(folder / "model_index.json") or {}).get("guider")
    name = spec[-1] if isinstance(spec, list) and spec else None
    if name not in (None, "ClassifierFreeGuidance"):
        raise InputError(f"{folder} guides with {name}; ditflow's HunyuanVideo 1.5 adapter runs ClassifierFreeGuidance only")
    if read_config(folder, "transformer").get("use_meanflow"):
        raise InputError(f"{folder} holds a step-distilled (MeanFlow) HunyuanVideo 1.5 transformer, which ditflow does "
                         f"not drive; use a 50-step checkpoint (hunyuan1.5-480p, hunyuan1.5-i2v-480p, ...)")


def layout(folder: Path) -> tuple[int, int, str]:
    cfg = read_config(folder, "transformer")
    return int(cfg.get("num_layers", 54)), int(cfg.get("target_size", 640)), str(cfg.get("task_type", "t2v"))


def folder_preset(model: str, folder: Path, defaults: dict[str, Any] | None, family_names,
                  presets: dict[str, ModelPreset]) -> ModelPreset:
    """A released layout's preset with the folder's own CFG scale, else the pipeline's defaults (its default size,
    121 frames, 50 steps, its guider's scale, no negative prompt, float32, the middle block); then ditflow.json."""
    check_folder(folder)
    shape = layout(folder)
    scale = guider_scale(folder)
    known = LAYOUTS.get(shape)
    if known in presets:
        preset = replace(presets[known], source=model, **({} if scale is None else {"cfg": scale}))
    else:
        height, width = default_size(folder)
        preset = replace(next(iter(presets.values())), source=model, dtype="float32", guidance_blocks=(shape[0] // 2,),
                         cfg=7.5 if scale is None else scale, negative_prompt="", frames=FRAMES, steps=STEPS,
                         height=height, width=width)
    return with_folder_defaults(preset, defaults, model, family_names) if defaults else preset
