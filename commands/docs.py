"""docs/cli.md, made from the CLI itself (`make docs`; a test checks it is current): every command's help
and every option's flags, help and choices, as `--help` shows them, so the reference cannot drift."""
from __future__ import annotations

import sys

import typer

HEADER = """# Command-line reference

Made by `make docs` from the commands' own help (each setting's help is written once, in
`ditflow/config.py`); do not edit by hand. `ditflow COMMAND --help` shows the same.
"""


def _commands(group, path: str):
    import click

    for name in group.list_commands(None):
        cmd = group.get_command(None, name)
        full = f"{path} {name}"
        if isinstance(cmd, click.Group):
            yield full, cmd
            yield from _commands(cmd, full)
        else:
            yield full, cmd


def _cell(text: str) -> str:
    return " ".join(str(text).replace("\\[", "[").replace("|", "\\|").split())


def _param_row(p) -> str:
    flags = ", ".join(f"`{o}`" for o in [*p.opts, *p.secondary_opts]) if p.param_type_name == "option" else f"`{p.name.upper()}`"
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
