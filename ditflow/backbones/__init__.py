"""Backbone adapters, one per model family, chosen by the pipeline class a folder's model_index.json names.

    model = resolve_model("5b")                            # once: folder, adapter, defaults, identity
    backbone = load_backbone(model, "bfloat16", runtime)   # -> CogVideoXBackbone

Adding a family is one module with a `Backbone` subclass, listed in `registry.ADAPTERS`.
"""
from __future__ import annotations

from typing import Any, Mapping

from ..config import RuntimeOptions
from .base import Backbone, Geometry, geometry_of
from .preset import ModelPreset
from .registry import ADAPTERS, ALIASES, PRESETS, ResolvedModel, adapter_for, family_settings, model_help, resolve_model


def load_backbone(model: str | ResolvedModel, dtype: str, runtime: RuntimeOptions = RuntimeOptions(),
                  family: Mapping[str, Any] | None = None, keeps_latent: bool = False, image: bool | None = None) -> Backbone:
    """The model's pipeline on its device, readied for a run with the family settings `family` (a resolved
    `GuideConfig.family`). image: the run animates an image (None: as the model must). keeps_latent: the run optimises the latent (latent-mode guidance), so the scheduler
    must step from the latent it is given (see the adapters). Inside `keep_loaded()` the process's loaded model
    is reused (see `backbones.loaded`)."""
    from . import loaded

    model = resolve_model(model)
    adapter = model.run_adapter(model.adapter.needs_image if image is None else image)
    key = (*loaded.key_of(str(model.folder.resolve()), dtype, runtime), adapter.__name__)
    return loaded.backbone(key, dict(family or {}), keeps_latent, lambda: adapter(model, dtype, runtime))


__all__ = ["ADAPTERS", "ALIASES", "PRESETS", "Backbone", "Geometry", "ModelPreset", "ResolvedModel", "adapter_for",
           "family_settings", "geometry_of", "load_backbone", "model_help", "resolve_model"]
