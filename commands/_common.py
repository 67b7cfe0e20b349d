"""Small helpers shared by the command modules: config layering, runtime options, output."""
from __future__ import annotations

import json
import os
import sys
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import typer


class StdoutClosed(Exception):
    """Whoever read stdout has gone (`ditflow ... | head -1`): no error of ours, so `app.main` exits quietly.
    Not an OSError: Typer turns a broken pipe it sees into a silent exit 1, which reads as failed rows."""


def stdout_closed() -> bool:
    """stdout is a pipe whose reader has exited (poll reports an error on its write end)."""
    import select

    try:
        poller = select.poll()
        poller.register(sys.stdout.fileno(), select.POLLOUT)
        return any(events & select.POLLERR for _, events in poller.poll(0))
    except (AttributeError, OSError, ValueError):  # no real file descriptor (a test's capture)
        return False


def stdout_is_devnull() -> bool:
    try:
        a, b = os.fstat(sys.stdout.fileno()), os.stat(os.devnull)
        return (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
    except (AttributeError, OSError, ValueError):  # no real file descriptor (a test's capture)
        return False


@contextmanager
def stdout_guard() -> Iterator[None]:
    """A closed stdout becomes StdoutClosed: a BrokenPipeError from writing to it, or rich's own answer to one
    (printing --help, it points stdout at /dev/null and exits 1). Any other broken pipe (to a subprocess that
    died) stays what it is."""
    was_devnull = stdout_is_devnull()
    try:
        yield
    except BrokenPipeError as e:
        if stdout_closed():
            raise StdoutClosed() from e
        raise
    except SystemExit as e:
        if e.code == 1 and not was_devnull and stdout_is_devnull():
            raise StdoutClosed() from e
        raise


def usage_message(e: Exception) -> str:
    """A usage error (Typer's vendored Click) as one line, with where to read more: what `ditflow` prints."""
    message = e.format_message() if hasattr(e, "format_message") else str(e)
    message = message.replace(": Value error, ", ": ")  # pydantic's prefix on Typer's choice errors says nothing
    ctx = getattr(e, "ctx", None)
    hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
    return " ".join(message.split()) + hint


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
    value, else the model's default, applies. A `bool | None` field has an on/off pair of flags: its False stays.
    A model family's own settings count as GuideConfig's (`apply_overrides` puts them in its `family`)."""
    import typing
    from dataclasses import fields

    from ditflow.checks import flag
    from ditflow.config_file import setting_classes

    out: dict[str, Any] = {}
    for owner in setting_classes(cls):
        hints = typing.get_type_hints(owner)
        for f in fields(owner):
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


def check_out(out: Path | None, fmt: str | None, overwrite: bool, *, inputs: list[tuple[str, Path | None]] = (),
              cache: Path | None = None) -> tuple[Path, str] | None:
    """The --out preflight, run before the stage: a taken or unwritable --out, or one that is an input of the
    run or inside the cache, fails at once, not after minutes of denoising. Without a suffix or --format,
    --out is an mp4 file."""
    if out is None:
        return None
    from ditflow.fileio import check_not_inputs
    from ditflow.video import check_output

    target = check_output(out, fmt or (None if out.suffix else "mp4"), overwrite)
    check_not_inputs({"--out": out}, inputs, cache=cache)
    return target


def write_output(artifact, target: tuple[Path, str] | None, overwrite: bool, quiet: bool) -> str | None:
    """Write the artifact's frames to the `check_out` target (checked again: it may have appeared since)."""
    if target is None:
        return None
    from ditflow.video import write_video

    path = write_video(artifact.frames, target[0], fmt=target[1], overwrite=overwrite)
    if not quiet:
        print(f"wrote {path}", file=sys.stderr)
    return str(path)
