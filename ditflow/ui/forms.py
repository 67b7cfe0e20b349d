"""The page's forms as the CLI's flags: each field is a config setting whose help, range and choices come from
its field's `rule(...)` (what `--help` shows) and whose placeholder is the model's default; a submitted form
becomes the command line it stands for and is parsed by the CLI's own command, so the page's settings, its
error messages and the hashes of its runs are the CLI's. No gradio here: the page (page.py) draws these."""
from __future__ import annotations

import typing
from dataclasses import dataclass, fields, replace
from typing import Any

from ..checks import flag, help_of
from ..config import ExtractConfig, GuideConfig, InjectConfig
from ..errors import InputError


@dataclass(frozen=True)
class Field:
    """One setting of a form: `name` is the command's parameter (and its config field), `flag` its option."""

    name: str
    flag: str
    label: str
    help: str
    kind: str  # "text", "choice", "flag" (on or absent) or "switch" (on, off or the model's default)
    choices: tuple[str, ...] = ()
    default: str = ""  # the model's default, shown as the placeholder (a blank field is that default, as on the CLI)


def _rule_text(cls: type, name: str) -> str:
    """The field's help with its range, as the CLI's checks word it."""
    f = next(f for f in fields(cls) if f.name == name)
    r = f.metadata.get("rule", {})
    bounds = [f"> {r['gt']}" if "gt" in r else "", f">= {r['ge']}" if "ge" in r else "",
              f"<= {r['le']}" if "le" in r else ""]
    text = " and ".join(b for b in bounds if b)
    return help_of(cls, name) + (f" Must be {text}." if text else "")


def _field(cls: type, name: str, label: str, default: Any = None, flag_name: str | None = None) -> Field:
    f = next(f for f in fields(cls) if f.name == name)
    choices = tuple(f.metadata.get("rule", {}).get("choices") or ())
    tp = typing.get_type_hints(cls)[name]
    kind = "choice" if choices else "flag" if tp is bool else "switch" if tp == bool | None else "text"
    shown = "" if default is None else ",".join(map(_plain, default)) if isinstance(default, (tuple, list)) else _plain(default)
    return Field(name, flag_name or flag(name), label, _rule_text(cls, name), kind, choices, shown)


def _plain(v: Any) -> str:
    return f"{v:g}" if isinstance(v, float) else str(v).lower() if isinstance(v, bool) else str(v)


def extract_fields(preset: Any) -> list[Field]:
    """The reference step's settings, with `preset`'s (a `ModelPreset`) defaults."""
    c = ExtractConfig
    return [_field(c, "frames", "frames", preset.frames), _field(c, "height", "height", preset.height),
            _field(c, "width", "width", preset.width), _field(c, "blocks", "guidance blocks", preset.guidance_blocks),
            _field(c, "crop", "crop", c.crop), _field(c, "frame_range", "frame range (START,END,STEP)"),
            _field(c, "timestep", "extraction timestep", preset.extract_timestep),
            _field(c, "temperature", "AMF temperature", c.temperature)]


def guide_fields(preset: Any) -> list[Field]:
    """The generate step's settings beyond the prompt and setup (which decide loss, mode and guidance)."""
    g = GuideConfig
    lr = " / ".join(f"{m} {','.join(map(_plain, v))}" for m, v in preset.lr.items())
    return [_field(g, "negative_prompt", "negative prompt", preset.negative_prompt or None),
            _field(g, "seed", "seed", g.seed),
            _field(g, "steps", "denoising steps", preset.steps), _field(g, "cfg", "CFG scale", preset.cfg),
            _field(g, "opt_steps", "Adam steps per guidance step", preset.opt_steps),
            Field("lr", "--lr", "learning rate (START,END)", _rule_text(g, "lr"), "text", (), lr),
            _field(g, "guidance_range", "guidance range (HI,LO)", preset.guidance_range),
            _field(g, "loss_weighting", "loss weighting", preset.loss_weighting),
            _field(g, "reference_flow", "reference flow", preset.reference_flow),
            _field(g, "emb_param", "emb parameters", preset.emb_param),
            _field(g, "injection_blocks", "injection blocks", g.injection_blocks),
            _field(g, "fast", "fast mode (--fast)"),
            _fast(_field(g, "amf_window", "AMF window"), "the whole frame", preset),
            _fast(_field(g, "amf_frame_distance", "AMF frame distance"), "all pairs", preset),
            _fast(_field(g, "grad_reuse", "gradient reuse"), "1", preset)]


def _fast(f: Field, off: str, preset: Any) -> Field:
    """A fast-mode setting's placeholder: its value without --fast, and the model's with it."""
    return replace(f, default=f"{off}; with --fast {preset.fast.get(f.name, off)}")


def family_fields(adapter: Any, preset: Any) -> list[Field]:
    """The model family's own settings (the CLI's "<family> models only" panel), defaults from `preset`."""
    if adapter.settings is None:
        return []
    def shown(value: Any) -> Any:
        return ("on" if value else "off") if isinstance(value, bool) else value

    return [_field(adapter.settings, f.name, f.name.replace("_", " "), shown(preset.family.get(f.name)))
            for f in fields(adapter.settings)]


def method_fields() -> list[Field]:
    """Each peer method's own settings (the CLI's "<method> method only" panels), their published defaults as
    placeholders; a run sends only the filled ones, and a setting of another method than the setup's is the
    CLI's error."""
    from ..methods import METHODS

    out = []
    for m in METHODS.values():
        if m.settings is not None:
            default = m.settings()
            out += [_field(m.settings, f.name, f"{m.title}: {f.name.replace('_', ' ')}", getattr(default, f.name))
                    for f in fields(m.settings)]
    return out


def image_fit_field() -> Field:
    from ..image import IMAGE_FIT_HELP, IMAGE_FITS

    return Field("image_fit", "--image-fit", "image fit", IMAGE_FIT_HELP, "choice", IMAGE_FITS, "crop")


def inject_fields() -> list[Field]:
    c = InjectConfig
    return [_field(c, "negative_prompt", "negative prompt"), _field(c, "seed", "seed"), _field(c, "cfg", "CFG scale")]


def setup_flags(setup: str) -> list[str]:
    """The flags of one of the paper's setups (the batch's `SETUPS`, so a page run is that batch row's run)."""
    from ..batch.setups import SETUPS

    if setup not in SETUPS:
        raise InputError(f"unknown setup '{setup}': use one of {', '.join(SETUPS)}")
    out = []
    for name, value in SETUPS[setup].items():
        if name in ("guidance", "injection"):
            out += [] if value else [flag(f"no_{name}")]  # on is the default: only the off flag exists
        else:
            out += [flag(name), str(value)]
    return out


def to_args(form: list[Field], values: list[Any]) -> list[str]:
    """The command line a form's values stand for: blank fields are left out (the model's default)."""
    args: list[str] = []
    for f, v in zip(form, values):
        if f.kind == "flag":
            args += [f.flag] if v else []
        elif f.kind == "switch":
            args += [f.flag] if v == "on" else ["--no-" + f.flag[2:]] if v == "off" else []
        elif v is not None and str(v).strip() != "":
            args += [f.flag, str(v).strip()]
    return args


def parse(command: str, args: list[str]) -> dict[str, Any]:
    """The parameters `ditflow COMMAND ARGS...` would run with (extract, guide or inject), parsed by the CLI's
    own command (its types, its usage errors worded as the CLI prints them, as an InputError); nothing runs."""
    import importlib

    import typer

    from ..cli._common import usage_message
    from ..cli.options import Command

    module = {"extract": "extract", "guide": "guide", "inject": "guide"}[command]
    one = typer.Typer(add_completion=False)  # the command alone: the whole app would import this package back
    one.command(cls=Command)(getattr(importlib.import_module(f"ditflow.cli.{module}"), command))
    try:
        ctx = typer.main.get_command(one).make_context(f"ditflow {command}", list(args))
    except typer.TyperException as e:  # Typer's vendored Click: bad number, missing option
        raise InputError(usage_message(e)) from None
    return dict(ctx.params)


__all__ = ["Field", "extract_fields", "family_fields", "guide_fields", "image_fit_field", "inject_fields",
           "method_fields", "parse", "setup_flags", "to_args"]
