"""Small helpers shared by the command modules: config layering, runtime options, output."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer


def help_when_bare(ctx: typer.Context) -> None:
    """A bare group (`ditflow`, `ditflow cache`) prints its help and succeeds, as git and hf do."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())
        raise typer.Exit(0)


def parse_pair(text: str | None, name: str, cast=float) -> tuple | None:
    """'0.002,0.001' -> (0.002, 0.001); a one-line error otherwise."""
    if text is None:
        return None
    from ditflow.errors import InputError

    parts = [p.strip() for p in text.split(",")]
    try:
        values = tuple(cast(p) for p in parts)
    except ValueError:
        raise InputError(f"{name} expects two comma-separated numbers, got '{text}'")
    if len(values) != 2:
        raise InputError(f"{name} expects two comma-separated numbers, got '{text}'")
    return values


def parse_ints(text: str | None, name: str) -> tuple[int, ...] | None:
    if text is None:
        return None
    from ditflow.errors import InputError

    try:
        return tuple(int(p) for p in text.split(",") if p.strip())
    except ValueError:
        raise InputError(f"{name} expects comma-separated block indices, got '{text}'")


def parse_range(text: str | None, name: str = "--frame-range") -> tuple[int, int, int] | None:
    """'0,48,2' -> (0, 48, 2); a one-line error otherwise (the ranges are ExtractConfig.validate's)."""
    if text is None:
        return None
    from ditflow.errors import InputError

    try:
        values = tuple(int(p) for p in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 3:
        raise InputError(f"{name} expects START,END,STEP (three integers, END exclusive), got '{text}'")
    return values


def flag_settings(cls: type, params: dict[str, Any]) -> dict[str, Any]:
    """The settings of config class `cls` among a command's parameters (its `locals()`), where each is
    declared once, under its field's name (or no_NAME for a --no-NAME flag). Comma lists become the field's
    tuple; an option not given (None) and a plain flag left off (False) become None, so the config file's
    value, else the model's default, applies. A `bool | None` field has an on/off pair of flags: its False stays."""
    import typing
    from dataclasses import fields

    from ditflow.checks import flag

    hints = typing.get_type_hints(cls)
    out: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in params:
            value = params[f.name]
            out[f.name] = None if value is False and hints[f.name] is bool else _parse_list(value, hints[f.name], flag(f.name))
        elif f"no_{f.name}" in params:
            out[f.name] = False if params[f"no_{f.name}"] else None
    return out


def _parse_list(value: Any, tp: Any, name: str) -> Any:
    """A comma-separated flag value as the tuple field type `tp` asks for; anything else as it is."""
    import typing

    if not isinstance(value, str):
        return value
    tuples = [a for a in (tp, *typing.get_args(tp)) if typing.get_origin(a) is tuple]
    if not tuples:
        return value
    args = typing.get_args(tuples[0])
    if len(args) == 2 and args[1] is Ellipsis:
        return parse_ints(value, name)
    if len(args) == 3:
        return parse_range(value, name)
    return parse_pair(value, name, args[0])


def file_settings(config: Path | None) -> dict[str, Any]:
    if config is None:
        return {}
    from ditflow.config_file import load_config_file

    return load_config_file(config)


def runtime(data: dict[str, Any], **flags):
    from ditflow.config import RuntimeOptions
    from ditflow.config_file import apply_overrides, section

    return apply_overrides(RuntimeOptions(), section(RuntimeOptions(), data, "runtime"), flags)


def emit(artifact, as_json: bool, **extra) -> None:
    """The result on stdout: the bare hash (so `H=$(ditflow ...)` works), or a JSON object."""
    if as_json:
        print(json.dumps({"hash": artifact.hash, "kind": artifact.kind, "path": str(artifact.path), **extra}))
    else:
        print(artifact.hash)
    sys.stdout.flush()


def emit_result(document: str, plain: list[str], written: list[str], as_json: bool, quiet: bool) -> None:
    """stdout for a command with result files: with --json only its one JSON `document` (the files written
    are noted on stderr); else the written files' paths, or when none was asked for the `plain` lines."""
    if as_json:
        print(document)
        for path in [] if quiet else written:
            print(f"wrote {path}", file=sys.stderr)
    else:
        for line in written or plain:
            print(line)
    sys.stdout.flush()


def check_out(out: Path | None, fmt: str | None, overwrite: bool) -> tuple[Path, str] | None:
    """The --out preflight, run before the stage: a taken or unwritable --out fails at once, not after
    minutes of denoising. Without a suffix or --format, --out is an mp4 file."""
    if out is None:
        return None
    from ditflow.video import check_output

    return check_output(out, fmt or (None if out.suffix else "mp4"), overwrite)


def write_output(artifact, target: tuple[Path, str] | None, overwrite: bool, quiet: bool) -> str | None:
    """Write the artifact's frames to the `check_out` target (checked again: it may have appeared since)."""
    if target is None:
        return None
    from ditflow.video import write_video

    path = write_video(artifact.frames, target[0], fmt=target[1], overwrite=overwrite)
    if not quiet:
        print(f"wrote {path}", file=sys.stderr)
    return str(path)
