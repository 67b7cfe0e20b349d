"""The `ditflow` command: one Typer app, one module per stage. Results go to stdout, everything else to
stderr. Library errors (DitflowError) become one `error: ...` line and an exit code per kind; a traceback
only with DITFLOW_DEBUG=1. torch and diffusers are imported lazily inside commands, so --help is instant."""
from __future__ import annotations

import os
import sys

import typer

app = typer.Typer(
    name="ditflow",
    help="Transfer the motion of a reference video to a new generation with video diffusion transformers (DiTFlow).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def _register() -> None:
    import importlib

    for name in ("extract", "guide", "inject", "cache", "eval", "viz"):
        try:
            module = importlib.import_module(f"commands.{name}")
        except ModuleNotFoundError as e:
            if e.name == f"commands.{name}":
                continue  # a stage not built yet
            raise
        module.register(app)


_register()


def main() -> None:
    from ditflow.errors import DitflowError

    try:
        rc = app(standalone_mode=False)  # click returns (not raises) the code of typer.Exit here
    except DitflowError as e:
        _fail(str(e), e.exit_code)
    except KeyboardInterrupt:
        _fail("interrupted; nothing was written to the cache", 130)
    except Exception as e:  # click's usage errors and anything unexpected
        import click

        if isinstance(e, click.exceptions.Exit):
            sys.exit(e.exit_code)
        if isinstance(e, click.ClickException):
            e.show()
            sys.exit(e.exit_code)
        if isinstance(e, click.exceptions.Abort):
            _fail("aborted", 130)
        if os.environ.get("DITFLOW_DEBUG"):
            raise
        _fail(f"{type(e).__name__}: {e} (set DITFLOW_DEBUG=1 for a traceback)", 70)
    sys.exit(rc if isinstance(rc, int) else 0)


def _fail(message: str, code: int) -> None:
    if os.environ.get("DITFLOW_DEBUG") and sys.exc_info()[0] is not None:
        import traceback

        traceback.print_exc()
    print(f"error: {message}", file=sys.stderr)
    sys.exit(code)


if __name__ == "__main__":
    main()
