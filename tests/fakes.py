"""Small fake payloads written through the real store, and folder snapshots, for the store's tests."""
from __future__ import annotations

import hashlib
import os
from functools import lru_cache
from pathlib import Path

from ditflow.store import Store, content_key


def put(store: Store, name: str, payload: bytes = b"x", parents=(), kind: str = "amf", **extra) -> str:
    """Publish a fake object whose inputs are {"name": name}; its hash is what the store would compute."""
    inputs = {"name": name}
    h = content_key(kind, inputs)
    with store.writer(h, kind, inputs, parents=list(parents), extra=extra or None) as folder:
        (folder / "data.bin").write_bytes(payload)
    return h


@lru_cache(maxsize=None)
def twin_names(kind: str = "amf") -> tuple[str, str, str]:
    """Two input names whose hashes share their first 6 hex characters, and that prefix (a birthday
    search: some thousands of sha256s)."""
    seen: dict[str, str] = {}
    i = 0
    while True:
        name = f"twin-{i}"
        prefix = content_key(kind, {"name": name})[:6]
        if prefix in seen:
            return seen[prefix], name, prefix
        seen[prefix] = name
        i += 1


def snapshot(root: Path) -> dict[str, str]:
    """Every path under `root` (symlinks not followed) with what it is and a digest of file bytes."""
    out = {}
    for top, dirs, files in os.walk(root, followlinks=False):
        for name in dirs + files:
            p = Path(top) / name
            rel = p.relative_to(root).as_posix()
            if p.is_symlink():
                out[rel] = "link:" + os.readlink(p)
            elif p.is_dir():
                out[rel] = "dir"
            else:
                out[rel] = hashlib.sha256(p.read_bytes()).hexdigest()
    return out
