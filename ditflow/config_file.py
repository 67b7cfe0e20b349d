"""Config files (TOML or YAML) and the layering of settings: file, then flags. Every key is checked
against the stage it belongs to, by name and type, before anything runs."""
from __future__ import annotations

from dataclasses import fields, replace
from pathlib import Path
from typing import Any, TypeVar

from .checks import check_value
from .config import ExtractConfig, GuideConfig, RuntimeOptions
from .errors import InputError
from .fileio import check_input_file

C = TypeVar("C")
SECTIONS: dict[str, type] = {"extract": ExtractConfig, "guide": GuideConfig, "runtime": RuntimeOptions}


def load_config_file(path: str | Path) -> dict[str, Any]:
    """Read and check a TOML or YAML file: flat keys, or sections [extract], [guide], [runtime]. Every key
    must be a setting of some stage (of its own section's stage, in a section) with the setting's type."""
    path = check_input_file(path, "config file")
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


def _check_file_settings(data: dict[str, Any], path: Path) -> None:
    sections = SECTIONS
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
        _check(cls, name, value, label)


def _family() -> dict[str, type]:
    """A family's own guide setting -> the settings class of its adapter (they are GuideConfig's too)."""
    from .backbones import family_settings

    return {name: adapter.settings for name, adapter in family_settings().items()}


def _method() -> dict[str, type]:
    """A method's own guide setting -> the settings class of its method (GuideConfig's too)."""
    from .methods import method_settings

    return {name: method.settings for name, method in method_settings().items()}


def _owned() -> dict[str, type]:
    return {**_family(), **_method()}


def setting_classes(cls: type) -> tuple[type, ...]:
    """The classes whose fields are `cls`'s settings by name: GuideConfig's include each family's and each
    method's own."""
    return (cls, *dict.fromkeys(_owned().values())) if cls is GuideConfig else (cls,)


def _names(cls: type) -> set[str]:
    names = {f.name for f in fields(cls)}
    return names - {"family", "method_settings"} | set(_owned()) if cls is GuideConfig else names


def _check(cls: type, name: str, value: Any, label: str | None = None) -> Any:
    owned = _owned() if cls is GuideConfig else {}
    return check_value(owned[name] if name in owned else cls, name, value, label)


def apply_overrides(cfg: C, *layers: dict[str, Any] | None) -> C:
    """Later layers win; keys are field names (dashes allowed); None values are ignored. Values are
    checked against the field's type (lists become tuples); ranges are checked by the config's validate(). A
    model family's own setting (GuideConfig) goes into `family`, a method's own into `method_settings`, checked
    against its model and method before anything loads."""
    names = _names(type(cfg))
    guide = type(cfg) is GuideConfig
    family_names, method_names = (set(_family()), set(_method())) if guide else (set(), set())
    updates: dict[str, Any] = {}
    family: dict[str, Any] = {}
    method: dict[str, Any] = {}
    for layer in layers:
        for key, value in (layer or {}).items():
            name = key.replace("-", "_")
            if name not in names:
                raise InputError(f"unknown setting '{key}' for {type(cfg).__name__} (known: {', '.join(sorted(names))})")
            if value is None:
                continue
            into = family if name in family_names else method if name in method_names else updates
            into[name] = _check(type(cfg), name, value)
    if family:
        updates["family"] = {**cfg.family, **family}
    if method:
        updates["method_settings"] = {**cfg.method_settings, **method}
    return replace(cfg, **updates)


def section(cfg: C, data: dict[str, Any], name: str) -> dict[str, Any]:
    """Settings for one stage from a config file: the flat top-level keys this stage knows, then its own
    section ([extract], [guide], ...), whose keys must all be known (load_config_file checked them)."""
    known = _names(type(cfg))
    flat = {k: v for k, v in data.items() if not isinstance(v, dict) and k.replace("-", "_") in known}
    return {**flat, **data.get(name, {})}
