"""What names an object, and where it lies: canonical inputs, the content key, file hashing, and the
layout of objects/ (`objects/ab/cdef.../`, the hash split after two characters).

A leaf: it imports nothing from the rest of the store, so every other part may use it.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import stat
from pathlib import Path
from typing import Any, Iterator, Protocol

FORMAT_VERSION = 3  # part of every hash: bump it when the inputs' layout changes or the same inputs would store a different result
HASH = re.compile(r"^[0-9a-f]{64}$")
SHARD = re.compile(r"^[0-9a-f]{2}$")
REST = re.compile(r"^[0-9a-f]{62}$")


class _Hash(Protocol):
    def update(self, data: bytes, /) -> None: ...


def canonical(obj: Any) -> str:
    """Stable JSON of the inputs that determine a result (sorted keys, tuples as lists)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(kind: str, inputs: dict[str, Any], *, fmt: int = FORMAT_VERSION) -> str:
    """The name of the object of `kind` made from `inputs`: equal work gets the same name."""
    return hashlib.sha256(canonical({"kind": kind, "format": fmt, "inputs": inputs}).encode()).hexdigest()


def hash_file_into(h: _Hash, path: Path, *, follow_symlinks: bool = True, bufsize: int = 1 << 20) -> None:
    """Feed a file's bytes to the hash object `h` in chunks (files may be large videos or weights).
    Without `follow_symlinks` a symlink is refused (OSError), not read through."""
    flags = os.O_RDONLY | (0 if follow_symlinks else os.O_NOFOLLOW)
    with os.fdopen(os.open(path, flags), "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)


def file_sha256(path: Path) -> str:
    """sha256 of a regular file, refusing to read through a symlink: a payload symlink could lead a
    checksum (and so a reader trusting it) out of the cache."""
    h = hashlib.sha256()
    hash_file_into(h, path, follow_symlinks=False)
    return h.hexdigest()


def real_dir(p: Path) -> bool:
    """A folder, not a symlink to one. An error (vanished, unreadable) answers False: every caller keeps
    what is not provably a real folder of the store's, so a wrong False only ever leaves something alone,
    and a gc plan or a listing never fails on an entry another process removed meanwhile."""
    try:
        return stat.S_ISDIR(os.lstat(p).st_mode)
    except OSError:
        return False


def object_path(objects: Path, h: str) -> Path:
    return objects / h[:2] / h[2:]


def is_object_dir(objects: Path, h: str) -> bool:
    """A real folder at the hash's place, through real folders (complete or not): the store's, as only
    it names folders so."""
    return all(real_dir(p) for p in (objects, objects / h[:2], object_path(objects, h)))


def walk_objects(objects: Path) -> Iterator[tuple[Path, str | None]]:
    """Every entry of objects/ in name order: (folder, hash) for a hash-shaped real folder, (path, None)
    for anything the store did not make (other names, symlinks, files; a symlinked objects/ itself)."""
    if not real_dir(objects):
        if objects.is_symlink():
            yield objects, None
        return
    for shard in sorted(objects.iterdir()):
        if not (SHARD.match(shard.name) and real_dir(shard)):
            yield shard, None
            continue
        for o in sorted(shard.iterdir()):
            yield o, (shard.name + o.name if REST.match(o.name) and real_dir(o) else None)


__all__ = ["FORMAT_VERSION", "HASH", "SHARD", "REST", "canonical", "content_key", "hash_file_into", "file_sha256",
           "real_dir", "object_path", "is_object_dir", "walk_objects"]
