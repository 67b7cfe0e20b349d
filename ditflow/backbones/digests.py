"""What identifies a model's weights: every file's content. Each file's sha256 is read once and remembered by
(device, inode, size, mtime, ctime) as git's index keys its stat data, so a rerun on unchanged weights costs one
stat per file. A weight saved in place gets a new mtime; one copied over in place with its timestamps kept
(`cp -p`, `rsync -t`, `touch -r`) keeps its mtime but not its ctime, which no user call can set back: either way it
is read again. A hub cache's snapshot files are links to `blobs/` named by their digest (sha256 for LFS weights,
git's sha1 for small files): there, and only there, the name is taken as the content's digest."""
from __future__ import annotations

import hashlib
import json
import os
import re
import time
from pathlib import Path

from ..errors import InputError
from ..fileio import printable
from ..store import hash_file_into

MEMO_ENV = "DITFLOW_DIGESTS"  # where the memo is kept (default: the user's cache folder)
_BLOB = re.compile(r"[0-9a-f]{40}|[0-9a-f]{64}")
_REPO = re.compile(r"models--.+")  # huggingface_hub's cache folder of one model repository
RACY_S = 2.0  # a file changed this recently may change again within the same mtime tick: not remembered yet


def memo_path() -> Path:
    env = os.environ.get(MEMO_ENV)
    if env:
        path = Path(env).expanduser()
        # a FIFO would block the read, and the atomic save would replace whatever is there with a file
        if (path.exists() or path.is_symlink()) and not path.is_file():
            raise InputError(f"${MEMO_ENV} names {printable(path)}, which is not a regular file (a folder, device, "
                             f"FIFO or broken link): point it at a file (it need not exist yet) or unset it")
        return path
    import platformdirs

    return Path(platformdirs.user_cache_dir("ditflow-digests")) / "digests.json"


def hub_blob(file: Path) -> str | None:
    """The digest a hub cache's snapshot link names: `models--ORG--NAME/snapshots/REV/...` pointing into
    `models--ORG--NAME/blobs/DIGEST`. Anything else (a link to a hex-named file anywhere) is read."""
    if not file.is_symlink():
        return None
    target = file.resolve()
    repo = target.parent.parent
    if (target.parent.name == "blobs" and _REPO.fullmatch(repo.name) and _BLOB.fullmatch(target.name)
            and _within(file, repo / "snapshots")):
        return target.name
    return None


def _within(file: Path, folder: Path) -> bool:
    """`file`'s own path (its link not followed) lies under `folder` (which may itself be reached by links)."""
    try:
        file.parent.resolve().relative_to(folder.resolve())
        return True
    except ValueError:
        return False


class DigestMemo:
    """File digests by (device, inode, size, mtime_ns, ctime_ns); saved atomically, and never a reason for a run to fail
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
        blob = hub_blob(file)
        if blob is not None:
            return blob
        target = file.resolve()
        st = target.stat()
        key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        if key in self.entries:
            return self.entries[key]
        h = hashlib.sha256()
        hash_file_into(h, target)
        if time.time() - max(st.st_mtime_ns, st.st_ctime_ns) / 1e9 > RACY_S:
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
