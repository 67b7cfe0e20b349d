"""Kept for imports from before the adapters: the loading helpers and the loader, now in ditflow.backbones."""
from __future__ import annotations

from .backbones import ALIASES, PRESETS, Geometry, config_geometry, geometry_of, load_backbone, preset  # noqa: F401
from .backbones.source import (MODEL_DEFAULTS, check_toy_prompt, download_command, looks_like_path,  # noqa: F401
                               model_identity, model_source, resolve_folder, toy_vocabulary, transformer_config)

Backbone = load_backbone  # the old name: `Backbone(model, dtype, runtime)` loads the model's adapter
