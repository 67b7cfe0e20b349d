"""Temporary entries of the store, and the locks that keep `gc` away from live ones.

A temporary entry is `<root>/tmp/<w|rm>-<hash12>-<random>/` holding a marker file, `.ditflow-tmp`, and
`payload/` (what a writer fills, or an object being removed). Its creator holds an `flock` on the marker
for the entry's whole life, so a crashed process leaves an entry whose lock anyone can take, and a live
one an entry nobody else can. `gc` sweeps only entries with the store's name pattern AND the marker AND a
free lock: anything else under tmp/ is not provably the store's and is left alone.
"""
from __future__ import annotations

import datetime as _dt
import fcntl
import json
import os
import re
import shutil
import stat
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

MARKER = ".ditflow-tmp"
_NAME = re.compile(r"^(w|rm)-[0-9a-f]{12}-[0-9a-f]{16}$")


class TempEntry:
    """A temporary entry this process created and holds locked until `discard()`."""

    def __init__(self, path: Path, fd: int):
        self.path, self._fd = path, fd

    @classmethod
    def create(cls, tmp: Path, role: str, h: str) -> "TempEntry":
        tmp.mkdir(parents=True, exist_ok=True)
        path = tmp / f"{role}-{h[:12]}-{uuid.uuid4().hex[:16]}"
        path.mkdir()
        # Lock under a staging name, then rename: gc only recognises the final name, so it never sees
        # a marker whose lock is not yet held.
        staging = path / f"{MARKER}.new"
        fd = os.open(staging, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            note = {"pid": os.getpid(), "hash": h, "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")}
            os.write(fd, json.dumps(note).encode())
            os.rename(staging, path / MARKER)
        except BaseException:
            os.close(fd)
            remove_tree(path)
            raise
        return cls(path, fd)

    @property
    def payload(self) -> Path:
        return self.path / "payload"

    def intact(self) -> bool:
        """Our marker is still in place (the very file we lock) and the payload is still a real folder."""
        try:
            st, payload = os.lstat(self.path / MARKER), os.lstat(self.payload)
        except OSError:
            return False
        mine = os.fstat(self._fd)
        return (st.st_ino, st.st_dev) == (mine.st_ino, mine.st_dev) and stat.S_ISDIR(payload.st_mode)

    def discard(self) -> None:
        """Remove the entry (whatever is still in it), then release the lock."""
        if self._fd < 0:
            return
        try:
            remove_tree(self.path)
        finally:
            os.close(self._fd)
            self._fd = -1


def is_store_entry(path: Path) -> bool:
    """Named by the store, a real folder, and holding the store's marker as a regular file."""
    try:
        if not _NAME.match(path.name) or not stat.S_ISDIR(os.lstat(path).st_mode):
            return False
        return stat.S_ISREG(os.lstat(path / MARKER).st_mode)
    except OSError:
        return False


def _try_lock(entry: Path) -> int | None:
    """An fd holding the entry's lock, or None when a live process holds it (or the marker is gone)."""
    try:
        fd = os.open(entry / MARKER, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def scan_tmp(tmp: Path) -> tuple[list[Path], list[Path], list[Path]]:
    """(stale, in_use, foreign) entries of tmp/: stale ones are the store's and no process holds them."""
    stale, in_use, foreign = [], [], []
    if tmp.is_symlink() or not tmp.is_dir():
        return stale, in_use, ([tmp] if tmp.is_symlink() else [])
    for p in sorted(tmp.iterdir()):
        if not is_store_entry(p):
            foreign.append(p)
            continue
        fd = _try_lock(p)
        if fd is None:
            in_use.append(p)
        else:
            os.close(fd)
            stale.append(p)
    return stale, in_use, foreign


def sweep(entry: Path) -> bool:
    """Remove a stale entry while holding its lock; False (and nothing removed) if it is in use now."""
    if not is_store_entry(entry):
        return False
    fd = _try_lock(entry)
    if fd is None:
        return False
    try:
        remove_tree(entry)
    finally:
        os.close(fd)
    return True


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """An exclusive flock on `path` (created if missing) for the duration of the block."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def remove_tree(path: Path) -> None:
    """Delete a folder the store owns. rmtree never follows symlinks inside it; a symlink itself is only
    unlinked. Read-only payload files need only the folder's write permission on POSIX."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


__all__ = ["TempEntry", "MARKER", "is_store_entry", "scan_tmp", "sweep", "file_lock", "remove_tree"]
