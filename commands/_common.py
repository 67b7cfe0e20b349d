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
