"""What identifies a model's weights: every file's content. Each file's sha256 is read once and remembered by
(device, inode, size, mtime) as git's index does, so a rerun on unchanged weights costs one stat per file; a
weight saved in place gets a new mtime, so it is read again. A hub snapshot's files are links to blobs named by
their digest (sha256 for LFS weights, git's sha1 for small files): the name is the content's digest."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from ..store import hash_file_into

MEMO_ENV = "DITFLOW_DIGESTS"  # where the memo is kept (default: the user's cache folder)
_BLOB = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
RACY_S = 2.0  # a file changed this recently may change again within the same mtime tick: not remembered yet


def memo_path() -> Path:
    env = os.environ.get(MEMO_ENV)
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ditflow-digests")) / "digests.json"


class DigestMemo:
    """File digests by (device, inode, size, mtime_ns); saved atomically, and never a reason for a run to fail
    (an unreadable or unwritable memo only costs reading the weights again)."""

    def __init__(self, path: Path | None = None):
        self.path = path or memo_path()
        try:
            entries = json.loads(self.path.read_text())
            self.entries: dict[str, str] = entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            self.entries = {}
        self.changed = False

    def digest(self, file: Path) -> str:
        """`file`'s content digest (a hub blob's own name, else its sha256)."""
        target = file.resolve()
        if file.is_symlink() and _BLOB.fullmatch(target.name):
            return target.name
        st = target.stat()
        key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}"
        if key in self.entries:
            return self.entries[key]
        h = hashlib.sha256()
        hash_file_into(h, target)
        if time.time() - st.st_mtime_ns / 1e9 > RACY_S:
            self.entries[key], self.changed = h.hexdigest(), True
        return h.hexdigest()

    def save(self) -> None:
        if not self.changed:
            return
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_text(json.dumps(self.entries))
            os.replace(tmp, self.path)  # concurrent writers: the last one wins, and a lost entry is only re-read
        except OSError:
            try:
                tmp.unlink(missing_ok=True)
            except OSError:
                pass
        self.changed = False


def weights_digest(folder: Path, memo: DigestMemo | None = None) -> str:
    """One digest of every file of a model folder: its relative path and content digest."""
    memo = memo or DigestMemo()
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if p.is_file() and not p.name.startswith("."):
            h.update(f"{p.relative_to(folder).as_posix()}\0{memo.digest(p)}\n".encode())
    memo.save()
    return h.hexdigest()[:16]
