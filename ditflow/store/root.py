"""The cache root: its marker, and whether a folder is (or may become) a ditflow cache we can write.

A ditflow cache root carries a CACHEDIR.TAG (https://bford.info/cachedir/) with ditflow's own line,
written on the store's first write. Anything that removes files refuses a root without it (a mistyped
--cache, DITFLOW_CACHE=$HOME), and the store never claims a folder that already holds other files, so a
user folder is never tagged (backup tools skip tagged folders) nor swept.
"""
from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from ..errors import InputError
from .keys import real_dir

TAG = "CACHEDIR.TAG"
TAG_SIGNATURE = "Signature: 8a477f597d28d172789f06886806bc55"
TAG_LINE = "# This file is a cache directory tag created by ditflow (a ditflow artifact cache)."
LOCK = ".ditflow.lock"
HINT = "choose another --cache or DITFLOW_CACHE"


def default_root() -> Path:
    """$DITFLOW_CACHE, else the platform's per-user cache folder."""
    env = os.environ.get("DITFLOW_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs  # only when no cache is named: most runs never need it

    return Path(platformdirs.user_cache_dir("ditflow"))


def is_cache(root: Path) -> bool:
    """`root` carries a CACHEDIR.TAG with ditflow's line (a regular file, not a symlink to one)."""
    tag = root / TAG
    try:
        if not stat.S_ISREG(os.lstat(tag).st_mode):
            return False
        text = tag.read_text(errors="replace")
    except OSError:
        return False
    return text.startswith(TAG_SIGNATURE) and TAG_LINE in text


def write_tag(root: Path) -> None:
    fd, tmp = tempfile.mkstemp(prefix=".tag-", dir=root)
    with os.fdopen(fd, "w") as f:
        f.write(f"{TAG_SIGNATURE}\n{TAG_LINE}\n# For information about cache directory tags see https://bford.info/cachedir/\n")
    os.replace(tmp, root / TAG)


def require_cache(root: Path) -> None:
    """InputError unless `root` is a ditflow cache: whatever removes anything calls this first."""
    if not real_dir(root):
        raise InputError(f"{root} is not a ditflow cache (no such folder); nothing removed; check --cache / DITFLOW_CACHE")
    if not is_cache(root):
        raise InputError(f"{root} is not a ditflow cache (it has no {TAG} written by ditflow); nothing removed; "
                         f"check --cache / DITFLOW_CACHE")


def check_shape(root: Path) -> list[Path]:
    """InputError unless `root` is, or can become, a ditflow cache folder; writes nothing and probes nothing,
    so a run that may need no write (a batch of cache hits on a read-only cache) can call it up front. Returns
    the folders a write would go into."""
    if not (root.exists() or root.is_symlink()):
        parent = next((p for p in root.parents if p.exists()), None)
        if parent is None or not parent.is_dir():
            raise InputError(f"cache {root} cannot be created: {parent} is not a folder; {HINT}")
        return [parent]
    if not root.is_dir():
        raise InputError(f"cache {root} is not a folder (a file is in the way); {HINT}")
    if not is_cache(root) and any(root.iterdir()):
        raise InputError(f"{root} is not a ditflow cache (it holds other files, which a cache must not share); "
                         f"{HINT} (a new or empty folder)")
    folders = [d for d in (root, root / "tmp", root / "objects") if d.exists() or d.is_symlink()]
    for d in folders:
        if not d.is_dir():
            raise InputError(f"cache {root} is damaged: {d} is not a folder; {HINT}")
    return folders


def check_writable(root: Path) -> None:
    """InputError (one line naming the folder and what to do) unless the store can write at `root`: it
    is, or can be made, a ditflow cache folder this process may write."""
    for folder in check_shape(root):
        _probe(folder, root)


def prepare(root: Path) -> None:
    """Make and mark the cache before the store's first write."""
    check_writable(root)
    root.mkdir(parents=True, exist_ok=True)
    if not (root / TAG).is_file():
        write_tag(root)
    (root / "tmp").mkdir(exist_ok=True)
    (root / "objects").mkdir(exist_ok=True)


def _probe(folder: Path, root: Path) -> None:
    """A real write into `folder` (permissions alone miss read-only file systems, and root ignores them)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        raise InputError(f"cache {root} cannot be written ({folder} is read-only); fix its permissions or {HINT}")
    try:
        fd, probe = tempfile.mkstemp(prefix=".ditflow-probe-", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as e:
        raise InputError(f"cache {root} cannot be written ({folder}: {e.strerror}); fix its permissions or {HINT}")


__all__ = ["TAG", "LOCK", "default_root", "is_cache", "require_cache", "check_shape", "check_writable", "prepare", "write_tag"]
