"""Progress on stderr (rich), silenced by `quiet`. The library reports; it never prints results.

Every line and note goes through `printable` and is never read as rich markup: messages carry user strings
(file names, prompts, errors), and a `[` or an ESC in one must print as itself."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from .fileio import printable


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._bar = None

    def log(self, message: str) -> None:
        message = printable(message)
        if self._bar is not None:  # through the live bar's console, which keeps the bar below the line
            self._bar.console.print(message, highlight=False, markup=False, soft_wrap=True)
        elif not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(message, highlight=False, markup=False, soft_wrap=True)  # one line: greppable

    @contextmanager
    def task(self, description: str, total: int) -> Iterator["Progress"]:
        if self.quiet:
            yield self
            return
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TextColumn, TimeElapsedColumn

        with Bar(TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                 TextColumn("{task.fields[note]}", markup=False), console=Console(stderr=True), transient=False) as bar:
            self._bar, self._task = bar, bar.add_task(printable(description), total=total, note="")
            try:
                yield self
            finally:
                self._bar = None

    def advance(self, note: str | None = None, advance: int = 1) -> None:
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, **({"note": printable(note)} if note is not None else {}))

    def set_total(self, total: int) -> None:
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def note(self, note: str) -> None:
        if self._bar is not None:
            self._bar.update(self._task, note=printable(note))
