"""The `ditflow` command: one Typer app, one module per stage. Results go to stdout, everything else to
stderr. Library errors (DitflowError) become one `error: ...` line and an exit code per kind; usage errors
one `error: ...` line and exit 2; a traceback only with DITFLOW_DEBUG=1. torch and diffusers are imported
lazily inside commands, so --help is instant.

Exit codes: 0 ok, 1 a stage failed (e.g. a batch row, a result that turned NaN), 2 usage or bad input, 3
artifact not found or ambiguous, 4 incompatible artifact, 5 corrupt artifact, 6 model weights missing, 7 output not written,
70 an internal error (a bug: please report it), 130 interrupted (Ctrl-C), 141 stdout closed by its reader
(`| head`), silently, as a process killed by SIGPIPE.
"""
from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from ._common import StdoutClosed, help_when_bare, stdout_closed, usage_message
from .options import Group, option

INTERRUPTED = 130
INTERNAL = 70
PIPE_CLOSED = 128 + 13  # 141, what a shell reports for a process killed by SIGPIPE

app = typer.Typer(
    name="ditflow",
    help="Transfer the motion of a reference video to a new generation with video diffusion transformers (DiTFlow).",
    invoke_without_command=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    cls=Group,
)


def _version(value: bool) -> None:
    if value:
        from ditflow import __version__

        typer.echo(f"ditflow {__version__}")
        raise typer.Exit(0)


@app.callback()
def _root(ctx: typer.Context,
          version: Annotated[bool, option("--version", help="Print the version and exit.", is_eager=True,
                                          callback=_version)] = False) -> None:
    help_when_bare(ctx)


def _register() -> None:
    from . import batch, cache, eval, extract, guide, inject, plan, report, ui, viz

    for module in (extract, guide, inject, plan, cache, eval, viz, batch, report, ui):
        module.register(app)


_register()


def main() -> None:
    from ditflow.errors import DitflowError

    try:
        # Not standalone: Typer returns exit codes instead of calling sys.exit, and raises its usage errors
        # (from its vendored Click, subclasses of typer.TyperException) for us to print as one line.
        rc = app(standalone_mode=False, prog_name="ditflow")
        sys.stdout.flush()  # what print() still buffers: a closed pipe shows here, not in the interpreter's exit
    except StdoutClosed:
        _pipe_closed()
    except DitflowError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail(_interrupted(), INTERRUPTED)
    except typer.Abort:
        _fail(_interrupted(), INTERRUPTED)
    except typer.TyperException as e:  # bad option, missing argument, unknown command
        _fail(usage_message(e), getattr(e, "exit_code", 2) or 2)
    except Exception as e:  # anything unexpected is a bug
        if isinstance(e, BrokenPipeError) and stdout_closed():  # from the flush above
            _pipe_closed()
        if os.environ.get("DITFLOW_DEBUG"):
            raise
        _fail(f"internal error: {type(e).__name__}: {_first_line(e)} (set DITFLOW_DEBUG=1 for a traceback)", INTERNAL)
    if rc == INTERRUPTED:  # Typer turns Ctrl-C into Exit(130) before it reaches us
        _fail(_interrupted(), INTERRUPTED)
    sys.exit(rc if isinstance(rc, int) else 0)


def _pipe_closed() -> None:
    """Exit as a process killed by SIGPIPE, saying nothing: stdout points at /dev/null first, so the
    interpreter's last flush of it cannot raise again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    sys.exit(PIPE_CLOSED)


def _interrupted() -> str:
    return "interrupted; nothing was written (a stage publishes its artifact and --out only when it completes)"


def _first_line(e: Exception) -> str:
    text = str(e).strip()
    return text.splitlines()[0] if text else ""


def _fail(message: str, code: int) -> None:
    if os.environ.get("DITFLOW_DEBUG") and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
