"""docs/cli.md, made from the CLI itself (`make docs`; a test checks it is current): every command's help
and every option's flags, help and choices, as `--help` shows them, so the reference cannot drift."""
from __future__ import annotations

import sys

import typer

HEADER = """# Command-line reference

Made by `make docs` from the commands' own help (each setting's help is written once, in its config's
field: `ditflow/config.py`, `ditflow/eval/settings.py`); do not edit by hand. `ditflow COMMAND --help`
shows the same, grouped in panels.

Results go to stdout, everything else to stderr. `--json` is a flag wherever it appears: stdout is then the
command's result as one JSON document. A JSON file is written only by `--json-out FILE` (`eval`, `batch`),
which like every output refuses an existing file without `--overwrite` (exit 2) and is written atomically.
"""


def _commands(group, path: str):
    """(path, command) of every command under `group`, subgroups' commands included."""
    from typer.core import TyperGroup

    for name in group.list_commands(None):
        cmd = group.get_command(None, name)
        full = f"{path} {name}"
        yield full, cmd
        if isinstance(cmd, TyperGroup):
            yield from _commands(cmd, full)


def _cell(text: str) -> str:
    return " ".join(str(text).replace("\\[", "[").replace("|", "\\|").split())


def _param_row(p) -> str:
    if p.param_type_name == "option":
        flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts]) + (f" `{_cell(p.metavar)}`" if p.metavar else "")
    else:
        flags = f"`{p.metavar or p.name.upper()}`"
    help_text = _cell(getattr(p, "help", None) or "")
    if getattr(p, "required", False):
        help_text += " (required)"
    return f"| {flags} | {help_text} |"


def cli_markdown() -> str:
    from .app import app

    root = typer.main.get_command(app)
    lines = [HEADER]
    for path, cmd in _commands(root, "ditflow"):
        lines += [f"## `{path}`", "", _cell(cmd.help or ""), ""]
        params = [p for p in cmd.params if p.name not in ("help",)]
        if params:
            lines += ["| option | what it does |", "|---|---|", *(_param_row(p) for p in params), ""]
    return "\n".join(lines).rstrip() + "\n"


if __name__ == "__main__":
    sys.stdout.write(cli_markdown())
