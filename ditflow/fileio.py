"""Writing a user's output files safely, and printing user strings (paths, prompts) safely (`printable`).

Every output is checked before any work starts (`check_target`: a CLI fails in a second, not after a model
load; `check_outputs`: nor is it one of the run's inputs, the cache, or another of its outputs), written
under a temporary name beside its destination and moved into place only when complete (`atomic_file`); an
OSError while writing (full disk, permissions) becomes one `OutputError` line naming the file, and nothing
temporary is left behind.
"""
from __future__ import annotations

import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterable, Iterator

from .errors import InputError, OutputError


# What must never reach a terminal raw: C0 (ESC starts the sequences that retitle or clear it), DEL, C1,
# the line and paragraph separators (a new line inside one "line"), and the bidi controls (they reorder text)
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
_SHORT = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escape(match: re.Match) -> str:
    c = match.group()
    return _SHORT.get(c) or (f"\\x{ord(c):02x}" if ord(c) < 0x100 else f"\\u{ord(c):04x}")


def printable(text: object) -> str:
    """`text` as one safe terminal line: the one escaping of every user string ditflow prints (paths, prompts,
    hashes read from files). Control characters are shown escaped (\\n, \\t, \\x1b, \\u2028) and undecodable
    file-name bytes (Python's surrogate escapes) as \\xNN, so printing it never raises UnicodeEncodeError
    and never moves the cursor, retitles or clears the terminal. Backslashes are kept as they are."""
    s = str(text)
    try:
        s = s.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    except UnicodeEncodeError:  # a lone surrogate that is no escaped byte
        s = s.encode("utf-8", "backslashreplace").decode("utf-8")
    return _CONTROL.sub(_escape, s)


def check_input_file(path: str | os.PathLike, what: str) -> Path:
    """A file a run reads (a manifest, a results file, a config file), before anything opens it: a missing one
    is "not found", and a folder, FIFO or device (even behind a symlink) is refused by name, since opening a
    FIFO blocks until some writer comes and a device may never end. Returns the path."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {printable(path)}")
    if path.is_dir():
        raise InputError(f"{what} {printable(path)} is a folder; give a file")
    if not path.is_file():
        raise InputError(f"{what} {printable(path)} is not a regular file (a device, FIFO or socket); give a file")
    return path


def check_target(path: str | os.PathLike, overwrite: bool, *, folder: bool = False, flag: str = "--out") -> Path:
    """The preflight of one output path (pure: it writes nothing). Refuses an existing path without
    `overwrite`, a folder where a file goes (and the reverse), a device or FIFO, and a parent that is a
    file or not writable. Returns the path."""
    path = Path(path).expanduser()
    if path.exists() or path.is_symlink():
        if not overwrite:
            raise InputError(f"{printable(path)} already exists; choose another {flag} or pass --overwrite")
        if folder and not path.is_dir():
            raise InputError(f"{printable(path)} is a file, but PNG frames go into a folder; choose another {flag} or "
                             f"a video format (--format mp4 or gif)")
        if not folder and path.is_dir():
            raise InputError(f"{printable(path)} is a folder; give a file name for {flag} (or --format png for a folder of frames)")
        if not folder and not path.is_file():
            raise InputError(f"{printable(path)} is not a regular file (a device, FIFO or broken link); choose another {flag}")
    parent = _existing_ancestor(path)
    if not parent.is_dir():
        raise InputError(f"cannot write {printable(path)}: {printable(parent)} is a file, not a folder")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise InputError(f"cannot write {printable(path)}: no permission to write in {printable(parent)}")
    return path


def check_outputs(outputs: dict[str, str | os.PathLike | None], overwrite: bool, *,
                  inputs: Iterable[tuple[str, str | os.PathLike | None]] = (), cache: str | os.PathLike | None = None) -> None:
    """The preflight of a run's output files, {flag: path} (None: not asked for): each passes `check_target`
    and `check_not_inputs`. Pure: it writes nothing."""
    for flag, path in outputs.items():
        if path is not None:
            check_target(path, overwrite, flag=flag)
    check_not_inputs(outputs, inputs, cache=cache)


def check_outputs_again(outputs: dict[str, str | os.PathLike | None], overwrite: bool, *, note: str) -> None:
    """`check_target` of each output once more, just before any of them is written: a file that appeared
    while the run worked (another run's results, a user's file) is refused as one there from the start would
    have been, never replaced without --overwrite, and nothing is written. `note` follows the message of a
    path that now exists (what became of the run's work)."""
    for flag, path in outputs.items():
        if path is None:
            continue
        try:
            check_target(path, overwrite, flag=flag)
        except InputError as e:
            there = Path(path).expanduser()
            raise InputError(f"{e} ({note})" if there.exists() or there.is_symlink() else str(e)) from None


def check_not_inputs(outputs: dict[str, str | os.PathLike | None], inputs: Iterable[tuple[str, str | os.PathLike | None]], *,
                     cache: str | os.PathLike | None = None) -> None:
    """InputError when an output (flag: path, None: not asked for) is one of the run's inputs ((what, path):
    the manifest, a row's video...), the cache folder or a path inside it, or another output of the run.
    --overwrite is meant for an old result: it never lets a run replace what it reads, the store's files, or
    its own other output."""
    inputs = [(what, Path(p).expanduser()) for what, p in inputs if p is not None]
    seen: list[tuple[str, Path]] = []
    for flag, out in outputs.items():
        if out is None:
            continue
        out = Path(out).expanduser()
        for what, path in inputs:
            if same_file(out, path):
                raise InputError(f"{flag} {printable(out)} is {what}, which this run reads; choose another {flag}")
            if path.is_dir() and _within(out, path):  # a frame folder: a new file there would become a frame
                raise InputError(f"{flag} {printable(out)} is inside {what}, which this run reads; choose another {flag}")
        if cache is not None and _within(out, Path(cache).expanduser()):
            raise InputError(f"{flag} {printable(out)} is inside the cache {printable(cache)}, where only the store writes; "
                             f"choose another {flag}")
        for other_flag, other in seen:
            if same_file(out, other):
                raise InputError(f"{other_flag} and {flag} are the same file {printable(out)}; give each its own")
        seen.append((flag, out))


def same_file(a: Path, b: Path) -> bool:
    """One file: the same inode (a hard link, a symlink to it), or the same path once resolved (for paths that
    do not exist yet)."""
    try:
        if os.path.samefile(a, b):
            return True
    except OSError:  # one of them does not exist (yet)
        pass
    return _resolved(a) == _resolved(b)


def _resolved(path: Path) -> Path:
    return Path(os.path.abspath(path)).resolve()


def _within(path: Path, folder: Path) -> bool:
    path, folder = _resolved(path), _resolved(folder)
    return path == folder or folder in path.parents


def _existing_ancestor(path: Path) -> Path:
    parent = path.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    return parent


def make_parents(path: Path) -> list[Path]:
    """Create the missing folders above `path` (normal permissions: the umask's); returns those created,
    outermost first, so that a failed write can remove them again."""
    missing = []
    parent = path.absolute().parent
    while not parent.exists():
        missing.append(parent)
        parent = parent.parent
    for folder in reversed(missing):
        try:
            folder.mkdir()
        except FileExistsError:  # made meanwhile by someone else: theirs
            pass
        except OSError as e:
            raise output_error(path, e) from e
    return list(reversed(missing))


def remove_folders(folders: list[Path]) -> None:
    """rmdir the folders `make_parents` created, innermost first, where still empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass


def output_error(path: Path, e: OSError) -> OutputError:
    reason = e.strerror or (str(e).splitlines() or [type(e).__name__])[0]
    return OutputError(f"cannot write {printable(path)}: {printable(reason)}")


def temp_name(path: Path) -> Path:
    """A temporary name beside `path`, hidden and unique to this process."""
    return path.with_name(f".tmp-{os.getpid()}-{path.name}")


@contextmanager
def writing(path: Path, cleanup: Callable[[], None]) -> Iterator[None]:
    """Run a write of `path`: on any failure call `cleanup` (remove temporaries) and turn an OSError into
    an OutputError naming `path`."""
    try:
        yield
    except BaseException as e:
        cleanup()
        if isinstance(e, OSError):
            raise output_error(path, e) from e
        raise


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


@contextmanager
def atomic_file(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path` to write to; on success it replaces `path` in one rename, on any
    failure it is removed (with the folders made for it) and an OSError becomes an OutputError."""
    path = Path(path)
    created = make_parents(path)
    tmp = temp_name(path)
    with writing(path, lambda: (_unlink(tmp), remove_folders(created))):
        yield tmp
        os.replace(tmp, path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write `text` (UTF-8) to `path` atomically."""
    path = Path(path)
    with atomic_file(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


__all__ = ["printable", "check_input_file", "check_target", "check_outputs", "check_outputs_again", "check_not_inputs", "same_file", "atomic_file", "write_text", "make_parents", "remove_folders", "writing",
           "temp_name", "output_error"]
