"""One frozen config per stage, the paper's defaults per model, and config-file loading.

A field left at None means "the model's default" (see `ModelPreset`); `resolve()` fills it in once the
model is known, so the resolved config is what gets hashed and recorded.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any, TypeVar

from .checks import MAX_SEED, check_rules, check_value, rule
from .errors import InputError

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}
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

    def validate(self) -> None:
        from .checks import check_device

        check_rules(self)
        check_device(self.device)


@dataclass(frozen=True)
class ExtractConfig:
    model: str = "5b"
    frames: int | None = field(default=None, metadata=rule(ge=1))
    height: int | None = field(default=None, metadata=rule(ge=1))
    width: int | None = field(default=None, metadata=rule(ge=1))
    blocks: tuple[int, ...] | None = field(default=None, metadata=rule(ge=0))
    temperature: float = field(default=2.0, metadata=rule(gt=0))
    source_prompt: str = ""
    moft_fraction: float = field(default=0.04, metadata=rule(gt=0, le=1))
    dtype: str | None = field(default=None, metadata=rule(choices=tuple(DTYPES)))

    def resolve(self, preset: ModelPreset) -> "ExtractConfig":
        def pick(name):
            value = getattr(self, name)
            return getattr(preset, name) if value is None else value

        return replace(
            self,
            frames=pick("frames"),
            height=pick("height"),
            width=pick("width"),
            blocks=tuple(self.blocks) if self.blocks else preset.guidance_blocks,
            dtype=self.dtype or preset.dtype,
        )

    def validate(self) -> None:
        if not self.model:
            raise InputError("--model must not be empty")
        if self.blocks is not None and not self.blocks:
            raise InputError("--blocks needs at least one block index")
        check_rules(self)


@dataclass(frozen=True)
class GuideConfig:
    """Settings of one guided generation. None: the model's default (`ModelPreset`: the paper's for 5B/2B,
    the measured ones a model folder's ditflow.json gives)."""

    prompt: str = ""
    negative_prompt: str | None = None
    opt_mode: str | None = field(default=None, metadata=rule(choices=("latent", "emb")))  # "latent" or "emb" (RoPE tables with RoPE models, sincos embedding otherwise)
    loss: str = field(default="flow", metadata=rule(choices=("flow", "moft", "smm")))  # "flow" (AMF), "moft", "smm"
    opt_steps: int | None = field(default=None, metadata=rule(ge=1))
    lr: tuple[float, float] | None = field(default=None, metadata=rule(gt=0))
    guidance_range: tuple[int, int] | None = field(default=None, metadata=rule(ge=0))
    guidance: bool = True
    injection: bool | None = None
    injection_blocks: tuple[int, ...] = field(default=(0,), metadata=rule(ge=0))
    steps: int | None = field(default=None, metadata=rule(ge=1))
    cfg: float | None = field(default=None, metadata=rule(ge=1))  # 1 is no CFG; below 1 would silently be the same
    dynamic_cfg: bool | None = None
    scheduler: str | None = field(default=None, metadata=rule(choices=("dpm", "ddim")))
    seed: int = field(default=1, metadata=rule(ge=0, le=MAX_SEED))
    threshold_loss: bool = True
    temperature: float = field(default=2.0, metadata=rule(gt=0))
    loss_weighting: str | None = field(default=None, metadata=rule(choices=("none", "confidence", "salient", "mutual")))  # AMF loss: "none" (the paper), "confidence" (the reference's attention) or
    # "salient" (confidence times how distinct the reference patch looks from its frame: the object over the scene)
    # or "mutual" (confidence times the generated video's own attention confidence at each step)
    reference_flow: str | None = field(default=None, metadata=rule(choices=("argmax", "soft")))  # the AMF loss's target: the reference's "argmax" AMF (the paper) or its
    # "soft" AMF (expected key position, as the generated side is scored), on the entries the argmax marks moving
    emb_param: str | None = field(default=None, metadata=rule(choices=("table", "angle")))  # emb mode on RoPE models: "table" (the paper) or "angle" (tables stay rotations)
    emb_after: str | None = field(default=None, metadata=rule(choices=("restore", "carry")))  # emb mode after the guidance range: "restore" the model's (the paper) or "carry"
    optimizer: str | None = field(default=None, metadata=rule(choices=("adam", "normalized")))  # "adam" (the paper) or "normalized": gradient steps scaled by the gradient's RMS,
    # so the step is as large on average as Adam's first, but entries with small gradients move little
    grad_blur: float | None = field(default=None, metadata=rule(ge=0))  # latent mode: Gaussian blur (sigma, latent pixels) of the gradient before each
    # step, so the update holds no texture finer than that (0: off, the paper)
    latent_stride: int | None = field(default=None, metadata=rule(ge=1))  # latent mode: optimise one offset per stride x stride latent pixels, spread
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
            steps=preset.steps if self.steps is None else self.steps,
            cfg=self.cfg if self.cfg is not None else preset.cfg,
            dynamic_cfg=preset.dynamic_cfg if self.dynamic_cfg is None else self.dynamic_cfg,
            scheduler=self.scheduler or preset.scheduler,
            injection_blocks=tuple(self.injection_blocks),
            **{name: pick(name) for name in ("negative_prompt", "opt_mode", "opt_steps", "injection",
                                             "loss_weighting", "reference_flow", "emb_param", "emb_after", "optimizer", "grad_blur",
                                             "latent_stride")},
        )

    def validate(self) -> None:
        check_rules(self)
        if self.guidance_range is not None:
            hi, lo = self.guidance_range
            if not hi > lo:
                raise InputError(f"--guidance-range HI,LO needs HI > LO >= 0, got {hi},{lo}")


def settings(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


# Settings added after artifacts were made without them, each with the value that reproduces what ran before
# it existed: at that value a setting stays out of artifact hashes, so a ditflow upgrade keeps caches valid.
LATER_SETTINGS: dict[str, Any] = {"latent_stride": 1}


def hashed_settings(cfg: Any) -> dict[str, Any]:
    """`settings(cfg)` as artifact hashes take it: LATER_SETTINGS at their old behaviour left out."""
    return {k: v for k, v in settings(cfg).items() if k not in LATER_SETTINGS or v != LATER_SETTINGS[k]}


C = TypeVar("C")


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and check a TOML or YAML file: flat keys, or sections [extract], [guide], [runtime]. Every key
    must be a setting of some stage (of its own section's stage, in a section) with the setting's type."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"config file {path} is not UTF-8 text (byte {e.start}); save it as UTF-8")
    except OSError as e:
        raise InputError(f"cannot read config file {path}: {e.strerror}")
    suffix = path.suffix.lower()
    if suffix not in (".toml", ".yaml", ".yml"):
        raise InputError(f"config file must end in .toml, .yaml or .yml: {path}")
    try:
        if suffix == ".toml":
            import tomllib

            data = tomllib.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text) or {}
    except Exception as e:  # parse errors of either format
        raise InputError(f"cannot parse config file {path}: {str(e).splitlines()[0]}")
    if not isinstance(data, dict):
        raise InputError(f"config file {path} must hold a table of settings")
    _check_file_settings(data, path)
    return data


def _config_sections() -> dict[str, type]:
    return {"extract": ExtractConfig, "guide": GuideConfig, "runtime": RuntimeOptions}


def _check_file_settings(data: dict[str, Any], path: Path) -> None:
    sections = _config_sections()
    for key, value in data.items():
        if isinstance(value, dict):
            cls = sections.get(str(key))
            if cls is None:
                raise InputError(f"config file {path}: unknown section [{key}] (known: {', '.join(sections)})")
            for k, v in value.items():
                _check_file_value(cls, str(k), v, f"setting '{k}' in [{key}] of {path}")
        else:
            owners = [c for c in sections.values() if str(key).replace("-", "_") in _names(c)]
            if not owners:
                known = sorted(set().union(*(_names(c) for c in sections.values())))
                raise InputError(f"config file {path}: unknown setting '{key}' (known: {', '.join(known)})")
            for cls in owners:
                _check_file_value(cls, str(key), value, f"setting '{key}' of {path}")


def _check_file_value(cls: type, key: str, value: Any, label: str) -> None:
    name = key.replace("-", "_")
    if name not in _names(cls):
        raise InputError(f"{label}: unknown setting (known: {', '.join(sorted(_names(cls)))})")
    if value is not None:
        check_value(cls, name, value, label)


def _names(cls: type) -> set[str]:
    return {f.name for f in fields(cls)}


def apply_overrides(cfg: C, *layers: dict[str, Any] | None) -> C:
    """Later layers win; keys are field names (dashes allowed); None values are ignored. Values are
    checked against the field's type (lists become tuples); ranges are checked by the config's validate()."""
    names = _names(type(cfg))
    updates: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            name = key.replace("-", "_")
            if name not in names:
                raise InputError(f"unknown setting '{key}' for {type(cfg).__name__} (known: {', '.join(sorted(names))})")
            if value is None:
                continue
            updates[name] = check_value(type(cfg), name, value)
    return replace(cfg, **updates)


def section(cfg: C, data: dict[str, Any], name: str) -> dict[str, Any]:
    """Settings for one stage from a config file: the flat top-level keys this stage knows, then its own
    section ([extract], [guide], ...), whose keys must all be known (load_config_file checked them)."""
    known = _names(type(cfg))
    flat = {k: v for k, v in data.items() if not isinstance(v, dict) and k.replace("-", "_") in known}
    return {**flat, **data.get(name, {})}


__all__ = [
    "ModelPreset", "PRESETS", "preset_for", "RuntimeOptions", "ExtractConfig", "GuideConfig",
    "settings", "load_config_file", "apply_overrides", "section", "PAPER_NEGATIVE_PROMPT",
]
