"""One frozen config per stage, the paper's defaults per model, and config-file loading.

A field left at None means "the model's default" (see `ModelPreset`); `resolve()` fills it in once the
model is known, so the resolved config is what gets hashed and recorded.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from .errors import InputError

PAPER_NEGATIVE_PROMPT = "bad quality, distortions, unrealistic, distorted image, watermark, signature"
TOY_MODEL_DIR = Path(__file__).resolve().parent.parent / "assets" / "toy-cogvideox"


@dataclass(frozen=True)
class ModelPreset:
    """Per-model defaults (the paper's, for 2B and 5B)."""

    source: str  # Hugging Face id or local diffusers folder
    dtype: str = "bfloat16"
    scheduler: str = "dpm"  # "dpm" (with dynamic CFG, as the paper's 5B runs) or "ddim"
    guidance_blocks: tuple[int, ...] = (20,)
    height: int = 480
    width: int = 720
    frames: int = 24  # the paper's reference length: 24 frames -> 6 latent frames
    steps: int = 50
    cfg: float = 7.0
    lr: tuple[float, float] = (0.002, 0.001)
    emb_lr: tuple[float, float] | None = None  # emb mode's lr when it differs from latent mode's (None: `lr`)
    guidance_range: tuple[int, int] = (50, 40)
    dynamic_cfg: bool = True
    negative_prompt: str = PAPER_NEGATIVE_PROMPT
    opt_mode: str = "latent"
    opt_steps: int = 5
    injection: bool = True
    loss_weighting: str = "none"
    reference_flow: str = "argmax"
    emb_param: str = "table"
    emb_after: str = "restore"
    optimizer: str = "adam"
    grad_blur: float = 0.0
    latent_stride: int = 1


PRESETS: dict[str, ModelPreset] = {
    "5b": ModelPreset("THUDM/CogVideoX-5b", "bfloat16", "dpm", (20,), dynamic_cfg=True),
    "2b": ModelPreset("THUDM/CogVideoX-2b", "float16", "ddim", (15,), dynamic_cfg=False),
}
ALIASES = {"THUDM/CogVideoX-5b": "5b", "THUDM/CogVideoX-2b": "2b", "cogvideox-5b": "5b", "cogvideox-2b": "2b"}


def preset_for(model: str, transformer_config: dict[str, Any] | None = None, spatial_factor: int = 8,
               folder_defaults: dict[str, Any] | None = None) -> ModelPreset:
    """Defaults for `model`: a named preset; for a folder, the 5B/2B preset when its transformer has their
    layout, else defaults derived from its config; then any `ditflow.json` the folder ships (a model can
    carry the settings that were measured for it, as the toy model does)."""
    name = ALIASES.get(model, model)
    if name in PRESETS:
        return PRESETS[name]
    cfg = transformer_config or {}
    layers = int(cfg.get("num_layers", 30))
    rope = bool(cfg.get("use_rotary_positional_embeddings", True))
    base = PRESETS["5b" if rope else "2b"]
    if (layers, rope, cfg.get("num_attention_heads")) in ((42, True, 48), (30, False, 30)):
        preset = replace(base, source=model)  # a local copy of CogVideoX-5b / -2b
    else:
        # sample_height/width are latent sizes; pixels are the VAE's spatial factor larger
        preset = replace(base, source=model, dtype="float32", guidance_blocks=(layers // 2,),
                         height=int(cfg.get("sample_height", base.height // 8)) * spatial_factor,
                         width=int(cfg.get("sample_width", base.width // 8)) * spatial_factor)
    if folder_defaults:
        known = {f.name for f in fields(ModelPreset)}
        unknown = set(folder_defaults) - known
        if unknown:
            raise InputError(f"ditflow.json of {model} has unknown settings: {', '.join(sorted(unknown))}")
        preset = replace(preset, **{k: tuple(v) if isinstance(v, list) else v for k, v in folder_defaults.items()})
    return preset


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run, not what to compute: never part of an artifact's hash."""

    device: str | None = None  # None: cuda if available, else cpu
    cpu_offload: bool = False
    vae_slicing: bool = True
    vae_tiling: bool = False
    gradient_checkpointing: bool = True
    quiet: bool = False


@dataclass(frozen=True)
class ExtractConfig:
    model: str = "5b"
    frames: int | None = None
    height: int | None = None
    width: int | None = None
    blocks: tuple[int, ...] | None = None
    temperature: float = 2.0
    source_prompt: str = ""
    moft_fraction: float = 0.04
    dtype: str | None = None
    crop: str = "none"  # "none": squash the video to the model's size; "center": crop its largest centred region of that aspect first

    def resolve(self, preset: ModelPreset) -> "ExtractConfig":
        return replace(
            self,
            frames=self.frames or preset.frames,
            height=self.height or preset.height,
            width=self.width or preset.width,
            blocks=tuple(self.blocks) if self.blocks else preset.guidance_blocks,
            dtype=self.dtype or preset.dtype,
        )


@dataclass(frozen=True)
class GuideConfig:
    """Settings of one guided generation. None: the model's default (`ModelPreset`: the paper's for 5B/2B,
    the measured ones a model folder's ditflow.json gives)."""

    prompt: str = ""
    negative_prompt: str | None = None
    opt_mode: str | None = None  # "latent" or "emb" (RoPE tables with RoPE models, sincos embedding otherwise)
    loss: str = "flow"  # "flow" (AMF), "moft", "smm"
    opt_steps: int | None = None
    lr: tuple[float, float] | None = None
    guidance_range: tuple[int, int] | None = None
    guidance: bool = True
    injection: bool | None = None
    injection_blocks: tuple[int, ...] = (0,)
    steps: int | None = None
    cfg: float | None = None
    dynamic_cfg: bool | None = None
    scheduler: str | None = None
    seed: int = 1
    threshold_loss: bool = True
    temperature: float = 2.0
    loss_weighting: str | None = None  # AMF loss: "none" (the paper), "confidence" (the reference's attention) or
    # "salient" (confidence times how distinct the reference patch looks from its frame: the object over the scene)
    # or "mutual" (confidence times the generated video's own attention confidence at each step)
    reference_flow: str | None = None  # the AMF loss's target: the reference's "argmax" AMF (the paper) or its
    # "soft" AMF (expected key position, as the generated side is scored), on the entries the argmax marks moving
    emb_param: str | None = None  # emb mode on RoPE models: "table" (the paper) or "angle" (tables stay rotations)
    emb_after: str | None = None  # emb mode after the guidance range: "restore" the model's (the paper) or "carry"
    optimizer: str | None = None  # "adam" (the paper) or "normalized": gradient steps scaled by the gradient's RMS,
    # so the step is as large on average as Adam's first, but entries with small gradients move little
    grad_blur: float | None = None  # latent mode: Gaussian blur (sigma, latent pixels) of the gradient before each
    # step, so the update holds no texture finer than that (0: off, the paper)
    latent_stride: int | None = None  # latent mode: optimise one offset per stride x stride latent pixels, spread
    # bilinearly, so each step is smooth at that scale (1: every latent pixel, the paper)

    def resolve(self, preset: ModelPreset) -> "GuideConfig":
        def pick(name):
            value = getattr(self, name)
            return getattr(preset, name) if value is None else value

        opt_mode = pick("opt_mode")
        default_lr = preset.emb_lr if opt_mode == "emb" and preset.emb_lr else preset.lr
        return replace(
            self,
            lr=tuple(self.lr) if self.lr else tuple(default_lr),
            guidance_range=tuple(self.guidance_range) if self.guidance_range else preset.guidance_range,
            steps=self.steps or preset.steps,
            cfg=self.cfg if self.cfg is not None else preset.cfg,
            dynamic_cfg=preset.dynamic_cfg if self.dynamic_cfg is None else self.dynamic_cfg,
            scheduler=self.scheduler or preset.scheduler,
            injection_blocks=tuple(self.injection_blocks),
            **{name: pick(name) for name in ("negative_prompt", "opt_mode", "opt_steps", "injection",
                                             "loss_weighting", "reference_flow", "emb_param", "emb_after", "optimizer", "grad_blur",
                                             "latent_stride")},
        )

    def validate(self) -> None:
        if self.opt_mode not in (None, "latent", "emb"):
            raise InputError(f"--opt-mode must be 'latent' or 'emb', not {self.opt_mode!r}")
        if self.loss not in ("flow", "moft", "smm"):
            raise InputError(f"--loss must be 'flow', 'moft' or 'smm', not {self.loss!r}")
        if self.loss_weighting not in (None, "none", "confidence", "salient", "mutual"):
            raise InputError(f"--loss-weighting must be 'none', 'confidence', 'salient' or 'mutual', not {self.loss_weighting!r}")
        if self.emb_param not in (None, "table", "angle"):
            raise InputError(f"--emb-param must be 'table' or 'angle', not {self.emb_param!r}")
        if self.emb_after not in (None, "restore", "carry"):
            raise InputError(f"--emb-after must be 'restore' or 'carry', not {self.emb_after!r}")
        if self.reference_flow not in (None, "argmax", "soft"):
            raise InputError(f"--reference-flow must be 'argmax' or 'soft', not {self.reference_flow!r}")
        if self.optimizer not in (None, "adam", "normalized"):
            raise InputError(f"--optimizer must be 'adam' or 'normalized', not {self.optimizer!r}")
        if self.grad_blur is not None and not self.grad_blur >= 0:
            raise InputError(f"--grad-blur must be 0 (off) or a positive sigma, not {self.grad_blur}")
        if self.latent_stride is not None and self.latent_stride < 1:
            raise InputError(f"--latent-stride must be at least 1, not {self.latent_stride}")
        if self.opt_steps is not None and self.opt_steps < 1:
            raise InputError("--opt-steps must be at least 1")
        if self.steps is not None and self.steps < 1:
            raise InputError("--steps must be at least 1")
        if self.guidance_range is not None:
            hi, lo = self.guidance_range
            if not (hi > lo >= 0):
                raise InputError(f"--guidance-range HI,LO needs HI > LO >= 0, got {hi},{lo}")
        if self.scheduler not in (None, "dpm", "ddim"):
            raise InputError(f"--scheduler must be 'dpm' or 'ddim', not {self.scheduler!r}")


def settings(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


# Settings added after artifacts were made without them, each with the value that reproduces what ran before
# it existed: at that value a setting stays out of artifact hashes, so a ditflow upgrade keeps caches valid.
LATER_SETTINGS: dict[str, Any] = {"latent_stride": 1, "crop": "none"}


def hashed_settings(cfg: Any) -> dict[str, Any]:
    """`settings(cfg)` as artifact hashes take it: LATER_SETTINGS at their old behaviour left out."""
    return {k: v for k, v in settings(cfg).items() if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}


C = TypeVar("C")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read a TOML or YAML file: either flat keys, or sections [extract], [guide], [inject], [runtime]."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    text = path.read_text()
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data = tomllib.loads(text)
        elif path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            data = yaml.safe_load(text) or {}
        else:
            raise InputError(f"config file must end in .toml, .yaml or .yml: {path}")
    except InputError:
        raise
    except Exception as e:  # parse errors of either format
        raise InputError(f"cannot parse config file {path}: {str(e).splitlines()[0]}")
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a table of settings")
    return data


def apply_overrides(cfg: C, *layers: dict[str, Any] | None) -> C:
    """Later layers win; keys are field names (dashes allowed); None values are ignored."""
    names = {f.name: f for f in fields(cfg)}
    updates: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            name = key.replace("-", "_")
            if value is None or isinstance(value, dict):
                continue
            if name not in names:
                raise InputError(f"unknown setting '{key}' for {type(cfg).__name__} (known: {', '.join(sorted(names))})")
            updates[name] = tuple(value) if isinstance(value, list) else value
    return replace(cfg, **updates)


def section(cfg: C, data: dict[str, Any], name: str) -> dict[str, Any]:
    """Settings for one stage from a config file: the flat top-level keys this stage knows, then its own
    section ([extract], [guide], ...), whose keys must all be known."""
    known = {f.name for f in fields(cfg)}
    flat = {k: v for k, v in data.items() if not isinstance(v, dict) and k.replace("-", "_") in known}
    return {**flat, **data.get(name, {})}


__all__ = [
    "ModelPreset", "PRESETS", "preset_for", "RuntimeOptions", "ExtractConfig", "GuideConfig",
    "settings", "load_config_file", "apply_overrides", "section", "PAPER_NEGATIVE_PROMPT",
]
