"""The released checkpoints' config files, per family, for planning memory without weights.

Each family module holds `CONFIGS`: preset name -> {"model_index": model_index.json, component: its config.json}
as the diffusers-format release ships them (where a value is recalled rather than read from the release, its
module says so). `ditflow plan` builds every component from these with the real classes on fake tensors: the
memory and time of a run depend on the architecture, never on the weights' values.
"""
from __future__ import annotations

import importlib
import pkgutil
from typing import Any


def released_configs() -> dict[str, dict[str, dict[str, Any]]]:
    """Every family module's CONFIGS, by preset name."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for info in pkgutil.iter_modules(__path__):
        out.update(getattr(importlib.import_module(f"{__name__}.{info.name}"), "CONFIGS", {}))
    return out
