"""Backbone adapters, one per model family, chosen by the pipeline class a folder's model_index.json names.

    backbone = load_backbone("5b", "bfloat16", runtime)     # -> CogVideoXBackbone
    preset("wan-1.3b")                                      # a named preset, or a folder's own defaults

Adding a family is one module with a `Backbone` subclass, listed in `ADAPTERS`.
"""
from __future__ import annotations

import json
from pathlib import Path

from ..config import ModelPreset, RuntimeOptions
from ..errors import InputError
from .base import Backbone, Geometry, geometry_of
from .cogvideox import CogVideoXBackbone
from .source import MODEL_DEFAULTS, model_identity, pipeline_class, resolve_folder, transformer_config
from .wan import WanBackbone

ADAPTERS: tuple[type[Backbone], ...] = (CogVideoXBackbone, WanBackbone)
PRESETS: dict[str, ModelPreset] = {k: v for a in ADAPTERS for k, v in a.presets.items()}
ALIASES: dict[str, str] = {k: v for a in ADAPTERS for k, v in a.aliases.items()}


def adapter_for(folder: Path) -> type[Backbone]:
    """The adapter of a diffusers folder, by the pipeline class its model_index.json names."""
    name = pipeline_class(folder)
    for adapter in ADAPTERS:
        if adapter.pipeline_class == name:
            return adapter
    raise InputError(f"{folder} holds a {name}, which ditflow does not support; supported pipelines: "
                     f"{', '.join(a.pipeline_class for a in ADAPTERS)}")


def load_backbone(model: str, dtype: str, runtime: RuntimeOptions = RuntimeOptions(), scheduler: str | None = None,
                  keeps_latent: bool = False) -> Backbone:
    """The model's pipeline on its device. keeps_latent: the run optimises the latent (latent-mode guidance),
    so the scheduler must step from the latent it is given (see the adapters). Inside `keep_loaded()` the
    process's loaded model is reused (see `backbones.loaded`)."""
    from . import loaded

    folder = resolve_folder(model)
    key = loaded.key_of(str(folder.resolve()), dtype, runtime)
    return loaded.backbone(key, scheduler, keeps_latent,
                           lambda: adapter_for(folder)(model, dtype, runtime, scheduler=scheduler, keeps_latent=keeps_latent))


def preset(model: str) -> ModelPreset:
    """A named preset, or a folder's own defaults (its adapter's), then its ditflow.json."""
    name = ALIASES.get(model, model)
    if name in PRESETS:
        return PRESETS[name]
    folder = resolve_folder(model)
    defaults_file = folder / MODEL_DEFAULTS
    try:
        defaults = json.loads(defaults_file.read_text()) if defaults_file.is_file() else None
    except json.JSONDecodeError as e:
        raise InputError(f"{defaults_file} is not valid JSON: {e}")
    return adapter_for(folder).folder_preset(name, folder, defaults)


def config_geometry(model: str, frames: int, height: int, width: int) -> Geometry:
    """The geometry of a run from the model's config files alone: checks sizes before any weights load."""
    folder = resolve_folder(model)
    return adapter_for(folder).config_geometry(folder, frames, height, width)


def num_blocks(model: str) -> int:
    """The transformer's block count, from its config."""
    return int(transformer_config(model).get("num_layers", 30))


__all__ = ["ADAPTERS", "ALIASES", "PRESETS", "Backbone", "Geometry", "adapter_for", "config_geometry", "geometry_of",
           "load_backbone", "model_identity", "num_blocks", "preset", "resolve_folder"]
