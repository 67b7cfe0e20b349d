from __future__ import annotations

import typer

from .guide import inject


def register(app: typer.Typer) -> None:
    app.command()(inject)
