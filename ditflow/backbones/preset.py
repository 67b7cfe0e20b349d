"""A model's defaults (`ModelPreset`): the paper's for the named presets, a folder's own pipeline's, then what a
folder's ditflow.json says was measured for it. Each family's own settings (e.g. CogVideoX's scheduler) are in
`family`, keyed by the names its adapter declares."""
from __future__ import annotations

from dataclasses import dataclass, field, fields, replace
from typing import Any, Iterable

from ..config import FAST_DEFAULTS, FAST_SETTINGS, MODES
from ..errors import InputError

PAPER_NEGATIVE_PROMPT = "bad quality, distortions, unrealistic, distorted image, watermark, signature"
MODEL_DEFAULTS = "ditflow.json"  # optional, beside model_index.json: ModelPreset fields measured for this model


@dataclass(frozen=True)
class ModelPreset:
    """Per-model defaults of the shared settings (`GuideConfig`, `ExtractConfig`) and of the family's own."""

    source: str  # Hugging Face id or local diffusers folder
    dtype: str = "bfloat16"
    guidance_blocks: tuple[int, ...] = (20,)
    height: int = 480
    width: int = 720
    frames: int = 24  # the paper's reference length: 24 frames -> 6 latent frames
    steps: int = 50
    cfg: float = 7.0
    lr: dict[str, tuple[float, float]] = field(default_factory=lambda: {m: (0.002, 0.001) for m in MODES})  # per mode
    guidance_range: tuple[int, int] = (50, 40)
    negative_prompt: str = PAPER_NEGATIVE_PROMPT
    opt_mode: str = "latent"
    opt_steps: int = 5
    injection: bool = True
    loss_weighting: str = "none"
    reference_flow: str = "argmax"
    emb_param: str = "table"
    fast: dict[str, int] = field(default_factory=lambda: dict(FAST_DEFAULTS))  # what --fast sets
    extract_timestep: int = 0  # the reference's noise level in the extraction forward (the paper: clean, 0)
    family: dict[str, Any] = field(default_factory=dict)  # the family's own settings' defaults


def with_folder_defaults(preset: ModelPreset, defaults: dict[str, Any], model: str,
                         family_names: Iterable[str] = ()) -> ModelPreset:
    """`preset` with a folder's ditflow.json on top: shared settings by their field names, the family's own
    (`family_names`, declared by its adapter) at the top level too."""
    family_names = set(family_names)
    known = ({f.name for f in fields(ModelPreset)} - {"source", "family"}) | family_names
    unknown = set(defaults) - known
    if unknown:
        raise InputError(f"ditflow.json of {model} has unknown settings: {', '.join(sorted(unknown))} "
                         f"(known: {', '.join(sorted(known))})")
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in defaults.items() if k not in family_names}
    if "fast" in values:
        fast = values["fast"]
        if not isinstance(fast, dict) or set(fast) - set(FAST_SETTINGS):
            raise InputError(f"ditflow.json of {model}: fast takes a table of {', '.join(FAST_SETTINGS)}")
        values["fast"] = {**preset.fast, **fast}
    if "lr" in values:  # {"latent": [a, b], "emb": [c, d]}, or one pair for both modes
        lr = values["lr"]
        if isinstance(lr, dict):
            if set(lr) - set(MODES):
                raise InputError(f"ditflow.json of {model}: lr takes the modes {', '.join(MODES)}, not {', '.join(sorted(set(lr) - set(MODES)))}")
            values["lr"] = {**preset.lr, **{m: tuple(v) for m, v in lr.items()}}
        else:
            values["lr"] = {m: lr for m in MODES}
    family = {**preset.family, **{k: v for k, v in defaults.items() if k in family_names}}
    return replace(preset, **values, family=family)
