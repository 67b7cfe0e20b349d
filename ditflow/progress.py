"""Progress on stderr (rich), silenced by `quiet`. The library reports; it never prints results.

Every line and note goes through `printable` and is never read as rich markup: messages carry user strings
(file names, prompts, errors), and a `[` or an ESC in one must print as itself.

A front-end that is not a terminal (the `ditflow ui` page) follows a stage with `listen(callback)`: the
callback sees every task's (description, done, total, note), quiet or not, in the thread that runs the stage,
and may raise to stop it (a cancel button): the stage then publishes nothing, as on Ctrl-C."""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar
from typing import Callable, Iterator

from .fileio import printable

Listener = Callable[[str, int, int, str], None]  # (task description, steps done, total, latest note)
_listener: ContextVar[Listener | None] = ContextVar("ditflow_progress_listener", default=None)


@contextmanager
def listen(callback: Listener) -> Iterator[None]:
    """Call `callback` on every progress update of the stages run inside this block (this context only)."""
    token = _listener.set(callback)
    try:
        yield
    finally:
        _listener.reset(token)


class Progress:
    def __init__(self, quiet: bool = False):
        self.quiet = quiet
        self._bar = None
        self._state = ["", 0, 0, ""]  # what a listener is told: description, done, total, note

    def _tell(self) -> None:
        callback = _listener.get()
        if callback is not None:
            callback(*self._state)

    def log(self, message: str) -> None:
        message = printable(message)
        if self._bar is not None:  # through the live bar's console, which keeps the bar below the line
            self._bar.console.print(message, highlight=False, markup=False, soft_wrap=True)
        elif not self.quiet:
            from rich.console import Console

            Console(stderr=True).print(message, highlight=False, markup=False, soft_wrap=True)  # one line: greppable

    @contextmanager
    def task(self, description: str, total: int) -> Iterator["Progress"]:
        self._state = [description, 0, total, ""]
        self._tell()
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
        self._state[1] += advance
        if note is not None:
            self._state[3] = note
        self._tell()
        if self._bar is not None:
            self._bar.update(self._task, advance=advance, **({"note": printable(note)} if note is not None else {}))

    def set_total(self, total: int) -> None:
        self._state[2] = total
        if self._bar is not None:
            self._bar.update(self._task, total=total)

    def note(self, note: str) -> None:
        self._state[3] = note
        self._tell()
        if self._bar is not None:
            self._bar.update(self._task, note=printable(note))
