"""`ditflow inject`: zero-shot reuse of a guide run's embeddings (the command lives with guide in guide.py)."""
from __future__ import annotations

import typer

from .guide import inject
from .options import Command


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(inject)
