"""What an object's `meta.json` may say, checked before anything trusts it.

An object's folder name is `content_key(kind, inputs)`, so what it says about its inputs is checked against
its name; every path it names must stay inside the object, and no payload file may be a symlink (a
symlink could lead a reader, or a delete, out of the cache). A failed check is a `BrokenObject`, a
`CorruptArtifact` that also carries the reason (for `cache ls`) and whether the object is merely
incomplete (no metadata at all: an interrupted copy, a manual delete). An object that passed is an
`ObjectInfo`.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ..errors import CorruptArtifact
from .keys import HASH, content_key, file_sha256

META = "meta.json"
KNOWN_KINDS = ("amf", "gen", "score", "flow")  # score: a batch row's evaluation (ditflow.batch.runner); flow: a
# reference's optical flow (ditflow.methods.ropecraft_flow)


class BrokenObject(CorruptArtifact):
    """An object that fails a check; `incomplete` when it has no metadata at all."""

    def __init__(self, h: str, reason: str, *, incomplete: bool = False):
        self.hash, self.reason, self.incomplete = h, reason, incomplete
        state = "incomplete" if incomplete else "corrupt"
        super().__init__(f"artifact {h[:12]} is {state} ({reason}); remove it with `ditflow cache rm {h[:12]}`")

    @property
    def state(self) -> str:
        return "incomplete" if self.incomplete else "corrupt"


def tree_size(folder: Path) -> int:
    """Bytes of the regular files under `folder`, without following symlinks."""
    total = 0
    for top, _, files in os.walk(folder, followlinks=False):
        total += sum(os.lstat(os.path.join(top, f)).st_size for f in files)
    return total


@dataclass
class ObjectInfo:
    """An object whose metadata passed `read_meta` (and, if asked, its payload `check_payload`)."""

    hash: str
    kind: str
    path: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def size(self) -> int:
        return tree_size(self.path)

    @property
    def created(self) -> str:
        return self.meta.get("created", "")

    @property
    def parents(self) -> list[str]:
        return list(self.meta.get("parents", []))


def read_meta(h: str, folder: Path) -> dict[str, Any]:
    """The checked metadata of the object `h` stored in `folder` (BrokenObject if it is not sound)."""
    try:
        fd = os.open(folder / META, os.O_RDONLY | os.O_NOFOLLOW)
    except FileNotFoundError:
        raise BrokenObject(h, f"no {META}", incomplete=True)
    except OSError as e:
        why = f"{META} is a symlink" if e.errno == errno.ELOOP else f"{META} unreadable: {e.strerror}"
        raise BrokenObject(h, why)
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                raise BrokenObject(h, f"{META} is not a file")
            meta = json.loads(f.read().decode("utf-8"))
    except (OSError, ValueError) as e:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise BrokenObject(h, f"{META} is not valid JSON: {str(e).splitlines()[0][:80]}")
    check_meta(h, meta)
    return meta


def safe_relpath(rel: Any) -> bool:
    """A relative POSIX path that stays inside its folder: no absolute path, no `..`, no empty part."""
    if not isinstance(rel, str) or not rel or "\0" in rel or "\\" in rel or rel.startswith("/"):
        return False
    parts = rel.split("/")
    return all(p not in ("", ".", "..") for p in parts) and rel != META


def check_meta(h: str, meta: Any) -> None:
    """Field types, and that the inputs hash to the object's name (so edited inputs, or an object copied
    under another hash, are corrupt)."""
    if not isinstance(meta, dict):
        raise BrokenObject(h, f"{META} is a JSON {type(meta).__name__}, not an object")
    kind, inputs, fmt = meta.get("kind"), meta.get("inputs"), meta.get("format")
    if kind not in KNOWN_KINDS:
        raise BrokenObject(h, f"unknown kind {str(kind)[:20]!r}")
    if not isinstance(inputs, dict):
        raise BrokenObject(h, "inputs is not a JSON object")
    if not isinstance(fmt, int) or isinstance(fmt, bool):
        raise BrokenObject(h, "format is not an integer")
    if meta.get("hash", h) != h:
        raise BrokenObject(h, "its metadata names another hash")
    parents = meta.get("parents", [])
    if not isinstance(parents, list) or not all(isinstance(p, str) and HASH.match(p) for p in parents):
        raise BrokenObject(h, "parents is not a list of artifact hashes")
    checksums = meta.get("checksums")
    if not isinstance(checksums, dict) or not all(isinstance(v, str) and HASH.match(v) for v in checksums.values()):
        raise BrokenObject(h, "checksums is not a map of sha256 digests")
    bad = [k for k in checksums if not safe_relpath(k)]
    if bad:
        raise BrokenObject(h, f"checksums names a path outside the object: {str(bad[0])[:60]!r}")
    sizes = meta.get("sizes", {})  # absent in objects published before sizes were recorded
    if not isinstance(sizes, dict) or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in sizes.values()):
        raise BrokenObject(h, "sizes is not a map of byte counts")
    created = meta.get("created")
    if parse_created(created) is None:
        raise BrokenObject(h, f"created is not an ISO date: {str(created)[:40]!r}")
    if content_key(kind, inputs, fmt=fmt) != h:
        raise BrokenObject(h, "its inputs do not hash to its name: edited, or copied under another hash")


def parse_created(created: Any) -> _dt.datetime | None:
    if not isinstance(created, str):
        return None
    try:
        return _dt.datetime.fromisoformat(created)
    except ValueError:
        return None


def payload_files(h: str, folder: Path) -> list[str]:
    """Relative paths of the payload files under `folder`, walked without following symlinks; a symlink
    or anything but folders and regular files makes the object corrupt."""
    found: list[str] = []
    for top, dirs, files in os.walk(folder, followlinks=False):
        base = Path(top)
        for name in dirs + files:
            mode = os.lstat(base / name).st_mode
            rel = (base / name).relative_to(folder).as_posix()
            if stat.S_ISLNK(mode):
                raise BrokenObject(h, f"{rel} is a symlink")
            if not (stat.S_ISDIR(mode) or stat.S_ISREG(mode)):
                raise BrokenObject(h, f"{rel} is not a regular file")
            if stat.S_ISREG(mode) and rel != META:
                found.append(rel)
    return sorted(found)


def check_payload(h: str, folder: Path, meta: dict[str, Any], *, checksums: bool = True) -> None:
    """The payload is exactly the recorded files, regular files inside `folder`, of their recorded sizes (one
    lstat each: cheap enough for every `cache ls`) and, with `checksums`, with their digests."""
    recorded: dict[str, str] = meta["checksums"]
    present = set(payload_files(h, folder))
    if missing := sorted(set(recorded) - present):
        raise BrokenObject(h, f"{missing[0]} is missing")
    if extra := sorted(present - set(recorded)):
        raise BrokenObject(h, f"{extra[0]} is not recorded")
    sizes = meta.get("sizes", {})
    for rel, size in sorted((rel, sizes[rel]) for rel in recorded if rel in sizes):  # the checksummed files only
        try:
            actual = os.lstat(folder / PurePosixPath(rel)).st_size
        except OSError as e:
            raise BrokenObject(h, f"{rel} unreadable: {e.strerror}")
        if actual != size:
            raise BrokenObject(h, f"{rel} is {'truncated' if actual < size else 'longer than recorded'} "
                                  f"({actual} of {size} bytes)")
    if not checksums:
        return
    root = folder.resolve()
    for rel, digest in recorded.items():
        path = folder / PurePosixPath(rel)
        if root not in path.resolve().parents:  # belt and braces: a folder swapped for a symlink meanwhile
            raise BrokenObject(h, f"{rel} leads outside the object")
        try:
            ok = file_sha256(path) == digest
        except OSError as e:
            raise BrokenObject(h, f"{rel} unreadable: {e.strerror}")
        if not ok:
            raise BrokenObject(h, f"{rel} changed")


__all__ = ["META", "KNOWN_KINDS", "BrokenObject", "ObjectInfo", "tree_size", "read_meta", "check_meta", "check_payload",
           "payload_files", "parse_created", "safe_relpath"]
