"""Motion-transfer methods: what a guided run optimises, against which loss, on which schedule; one module a
method (base.py says what a method is). `--method NAME` picks one; DiTFlow is the default."""
from __future__ import annotations

from ..errors import InputError
from .base import DITFLOW_ONLY, BuildContext, Method
from .ditflow import DITFLOW
from .fastvmt import FASTVMT
from .flowmotion import FLOWMOTION
from .ropecraft import ROPECRAFT

METHODS: dict[str, Method] = {m.name: m for m in (DITFLOW, FLOWMOTION, ROPECRAFT, FASTVMT)}


def get_method(name: str) -> Method:
    if name not in METHODS:
        raise InputError(f"--method must be one of {', '.join(METHODS)}, not {name!r}")
    return METHODS[name]


def method_settings() -> dict[str, Method]:
    """Each method's own settings by name -> the method that declares it."""
    return {n: m for m in METHODS.values() for n in m.setting_names()}


def check_method(cfg) -> Method:
    """A `GuideConfig`'s method, its own settings checked (names and ranges) before anything loads: a setting
    of another method is an error, never ignored."""
    from ..checks import check_rules, flag

    method = get_method(cfg.method)
    owners = method_settings()
    for name in cfg.method_settings:
        if name not in owners or owners[name] is not method:
            whose = f"a setting of --method {owners[name].name}" if name in owners else "not a setting of any method"
            raise InputError(f"{flag(name)} is {whose}; this run's method is {method.name}")
    if method.settings is not None:
        check_rules(method.settings(**{k: v for k, v in cfg.method_settings.items() if v is not None}))
    return method


def method_panel(method: Method) -> str:
    """The --help panel of a method's own settings."""
    return f"{method.title} method only"


__all__ = ["BuildContext", "DITFLOW_ONLY", "METHODS", "Method", "check_method", "get_method", "method_panel",
           "method_settings"]
