"""Type and range checks of settings, whichever way they arrive (flags, config files, ditflow.json, Python).

A config dataclass states its rules once, in each field's metadata (`rule(...)`); `check_value` enforces the
field's annotated type (no bool for an int, no string for a bool, finite floats only) and `check_rules` its
range and choices. NaN fails every comparison, so every range is written as "must hold", never "x <= 0".
"""
from __future__ import annotations

import math
import types
import typing
from dataclasses import fields
from functools import lru_cache
from typing import Any

from .errors import InputError

MAX_SEED = 2**63 - 1  # torch.Generator.manual_seed takes a 64-bit integer


def rule(help: str = "", *, gt: float | None = None, ge: float | None = None, le: float | None = None,
         choices: tuple[str, ...] | None = None) -> dict[str, Any]:
    """Field metadata: the setting's help (what the CLI and docs/cli.md show) and its range (applied to each
    element of a tuple) or choices (which the help lists)."""
    checks = {k: v for k, v in (("gt", gt), ("ge", ge), ("le", le), ("choices", choices)) if v is not None}
    return {"rule": checks, "help": help}


def help_of(cls: type, name: str) -> str:
    """The help written once in a config field's metadata."""
    return next(f.metadata.get("help", "") for f in fields(cls) if f.name == name)


def flag(name: str) -> str:
    return "--" + name.replace("_", "-")


@lru_cache(maxsize=None)
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _describe(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        return " or ".join(_describe(a) for a in args if a is not type(None))
    if origin is tuple:
        if len(args) == 2 and args[1] is Ellipsis:
            return f"a list of {_plural(args[0])}"
        return f"a list of {len(args)} {_plural(args[0])}"
    return {int: "an integer", float: "a finite number", bool: "true or false", str: "a string"}.get(tp, str(tp))


def _plural(tp: Any) -> str:
    return {int: "integers", float: "finite numbers", bool: "booleans", str: "strings"}.get(tp, f"{tp}s")


def _coerce(value: Any, tp: Any) -> tuple[bool, Any]:
    """(ok, value) for `value` as type `tp`; lists become tuples and integers floats where asked."""
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return True, None
        for a in args:
            if a is not type(None):
                ok, v = _coerce(value, a)
                if ok:
                    return True, v
        return False, value
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            return False, value
        elems = [args[0]] * len(value) if len(args) == 2 and args[1] is Ellipsis else list(args)
        if len(elems) != len(value):
            return False, value
        out = []
        for v, a in zip(value, elems):
            ok, c = _coerce(v, a)
            if not ok:
                return False, value
            out.append(c)
        return True, tuple(out)
    if tp is bool:
        return isinstance(value, bool), value
    if tp is int:
        return isinstance(value, int) and not isinstance(value, bool), value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, value
        return math.isfinite(value), float(value)
    if tp is str:
        return isinstance(value, str), value
    return True, value


def check_value(cls: type, name: str, value: Any, label: str | None = None) -> Any:
    """`value` for field `name` of config class `cls`, coerced to the field's type, or a one-line error
    naming the setting as `label` (default: its flag)."""
    tp = _hints(cls)[name]
    ok, coerced = _coerce(value, tp)
    if not ok:
        shown = str(value).lower() if isinstance(value, bool) else repr(value)
        raise InputError(f"{label or flag(name)} must be {_describe(tp)}, got {shown}")
    return coerced


def check_rules(cfg: Any) -> None:
    """Every field's type and rule (see `rule`); None means "the model's default" and passes."""
    for f in fields(cfg):
        value = getattr(cfg, f.name)
        if value is None:
            continue
        check_value(type(cfg), f.name, value)
        r = f.metadata.get("rule")
        if not r:
            continue
        if "choices" in r and value not in r["choices"]:
            raise InputError(f"{flag(f.name)} must be one of {', '.join(map(repr, r['choices']))}, not {value!r}")
        for v in value if isinstance(value, tuple) else (value,):
            bad = ("gt" in r and not v > r["gt"]) or ("ge" in r and not v >= r["ge"]) or ("le" in r and not v <= r["le"])
            if bad:
                bounds = [f"> {r['gt']}" if "gt" in r else None, f">= {r['ge']}" if "ge" in r else None,
                          f"<= {r['le']}" if "le" in r else None]
                raise InputError(f"{flag(f.name)} must be {' and '.join(b for b in bounds if b)}, got {value}")


def check_device(device: str | None) -> None:
    """A device torch can use on this machine, checked before any model loads (None: cuda if available)."""
    if device is None:
        return
    import torch

    try:
        dev = torch.device(device)
    except (RuntimeError, TypeError, ValueError):
        raise InputError(f"--device {device!r} is not a device: use cpu, cuda, cuda:N or mps")
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise InputError(f"--device {device}: no CUDA GPU is visible to torch on this machine; use --device cpu")
        if dev.index is not None and dev.index >= torch.cuda.device_count():
            raise InputError(f"--device {device}: this machine has {torch.cuda.device_count()} CUDA device(s) "
                             f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    elif dev.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise InputError(f"--device {device}: Apple's MPS is not available on this machine; use --device cpu")
    elif dev.type != "cpu":
        raise InputError(f"--device {device}: only cpu, cuda, cuda:N and mps are supported")
