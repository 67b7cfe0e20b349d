"""The paper's setups (Table 1) as guide settings, and a user's own setups from TOML tables.

A setup fixes what a run computes beyond the shared flags: the method (DiTFlow's, or a peer's with its
published defaults), the loss, the optimised variable, whether it guides or injects. `inject` is the zero-shot row: no optimisation, the embeddings of a `ditflow-emb` run
replayed on this row's prompt (which run: `manifest.inject_sources`).
"""
from __future__ import annotations

from typing import Any

from ..config import GuideConfig
from ..config_file import apply_overrides
from ..errors import InputError
from ..methods import check_method

SETUPS: dict[str, dict[str, Any]] = {
    "ditflow-latent": {"loss": "flow", "opt_mode": "latent"},
    "ditflow-emb": {"loss": "flow", "opt_mode": "emb"},
    "smm": {"loss": "smm", "opt_mode": "latent"},
    "moft": {"loss": "moft", "opt_mode": "latent"},
    "injection": {"guidance": False, "injection": True},  # KV injection only, no optimisation
    "backbone": {"guidance": False, "injection": False},  # the model alone
    # the methods that followed DiTFlow, each with its published defaults (ditflow/methods/)
    "flowmotion": {"method": "flowmotion"},
    "ropecraft": {"method": "ropecraft"},
    "fastvmt": {"method": "fastvmt"},
}
INJECT = "inject"
INJECT_SOURCE = "ditflow-emb"  # the setup whose embeddings an inject row replays
ROW_KEYS = ("prompt", "seed")  # a row's own: a setup table may not set them


def builtin_names() -> tuple[str, ...]:
    return (*SETUPS, INJECT)


def check_custom(tables: dict[str, Any], where: str) -> dict[str, dict[str, Any]]:
    """A user's setups: {name: {guide setting: value}}, each key a `GuideConfig` setting of the right type and
    range, checked now (before anything runs). Built-in names cannot be redefined."""
    out: dict[str, dict[str, Any]] = {}
    for name, table in tables.items():
        if not isinstance(table, dict):
            raise InputError(f"{where}: setup '{name}' must be a table of guide settings, e.g. [setups.{name}] loss = \"flow\"")
        if name in builtin_names():
            raise InputError(f"{where}: setup '{name}' is built in ({', '.join(builtin_names())}); give yours another name")
        if fixed := [k for k in table if k.replace("-", "_") in ROW_KEYS]:
            raise InputError(f"{where}: setup '{name}' sets '{fixed[0]}', which each row gives (its prompt and seed columns)")
        nested = [k for k, v in table.items() if isinstance(v, dict)]
        if nested:
            raise InputError(f"{where}: setup '{name}' holds a table '{nested[0]}': quote a name with dots, "
                             f'e.g. ["{name}.{nested[0]}"]')
        try:
            cfg = apply_overrides(GuideConfig(), table)
            cfg.validate()
            check_method(cfg)  # the method's own settings: theirs, in range
        except InputError as e:
            raise InputError(f"{where}: setup '{name}': {e}")
        out[str(name)] = dict(table)
    return out


def all_setups(custom: dict[str, dict[str, Any]] | None = None) -> dict[str, dict[str, Any]]:
    """Built-in and custom setups by name (inject is handled apart: it is not a guide run)."""
    return {**SETUPS, **(custom or {})}


def guide_config(base: GuideConfig, setup: dict[str, Any], prompt: str, seed: int) -> GuideConfig:
    """The row's guide settings: the shared flags, then the setup's (it decides what is computed), then the
    row's prompt and seed."""
    return apply_overrides(base, setup, {"prompt": prompt, "seed": seed})
