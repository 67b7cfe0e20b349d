"""Content-addressed artifact store.

Layout: <root>/objects/ab/cdef.../ holds the payload files of one artifact and `meta.json` (kind, the
canonical inputs it was made from, checksums of every payload file, parents, created). An object is
addressed by the sha256 of its canonical inputs, so equal work is found again. Writes go to
<root>/tmp/<random>/ and are moved into place with one `os.replace`, so an interrupted run leaves no
partial object (only a temporary folder that `gc` sweeps). Reads verify the checksums.
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import shutil
import stat
import tempfile
import time
import uuid
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

from .errors import AmbiguousHash, ArtifactNotFound, CorruptArtifact, InputError

FORMAT_VERSION = 2  # 2: round 2's settings (cut knobs, per-mode lr); part of every hash
META = "meta.json"
MIN_PREFIX = 6


def default_root() -> Path:
    env = os.environ.get("DITFLOW_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ditflow"))


def canonical(obj: Any) -> str:
    """Stable JSON of the inputs that determine a result (sorted keys, tuples as lists)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(kind: str, inputs: dict[str, Any]) -> str:
    return hashlib.sha256(canonical({"kind": kind, "format": FORMAT_VERSION, "inputs": inputs}).encode()).hexdigest()


def hash_file_into(h, path: Path, bufsize: int = 1 << 20) -> None:
    """Feed a file's bytes to the hash object `h` in chunks (files may be large videos or weights)."""
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    hash_file_into(h, path)
    return h.hexdigest()


def _payload_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name != META)


@dataclass
class ObjectInfo:
    hash: str
    kind: str
    path: Path
    meta: dict[str, Any] = field(repr=False)

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    @property
    def created(self) -> str:
        return self.meta.get("created", "")

    @property
    def parents(self) -> list[str]:
        return list(self.meta.get("parents", []))


@dataclass
class GcPlan:
    temporaries: list[Path]
    corrupt: list[str]
    unreferenced: list[str]

    @property
    def empty(self) -> bool:
        return not (self.temporaries or self.corrupt or self.unreferenced)


class Store:
    def __init__(self, root: str | os.PathLike | None = None):
        self.root = Path(root).expanduser() if root is not None else default_root()

    # -- layout ---------------------------------------------------------------------------------------
    @property
    def objects(self) -> Path:
        return self.root / "objects"

    @property
    def tmp(self) -> Path:
        return self.root / "tmp"

    def object_path(self, h: str) -> Path:
        return self.objects / h[:2] / h[2:]

    def exists(self, h: str) -> bool:
        return (self.object_path(h) / META).is_file()

    def hashes(self) -> list[str]:
        if not self.objects.is_dir():
            return []
        return sorted(
            d.name + o.name
            for d in self.objects.iterdir()
            if d.is_dir()
            for o in d.iterdir()
            if (o / META).is_file()
        )

    # -- look-up --------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """Full hash of `ref`, a hash or a unique prefix of at least 6 hex characters."""
        ref = ref.strip().lower()
        if len(ref) < MIN_PREFIX or any(c not in "0123456789abcdef" for c in ref):
            raise InputError(f"'{ref}' is not an artifact hash (give at least {MIN_PREFIX} hex characters)")
        if len(ref) == 64:
            if self.exists(ref):
                return ref
            raise ArtifactNotFound(f"no artifact {ref[:12]} in cache {self.root}")
        folder = self.objects / ref[:2]
        matches = sorted(ref[:2] + o.name for o in folder.iterdir() if o.name.startswith(ref[2:])) if folder.is_dir() else []
        matches = [m for m in matches if self.exists(m)]
        if not matches:
            raise ArtifactNotFound(f"no artifact matches '{ref}' in cache {self.root}")
        if len(matches) > 1:
            shown = ", ".join(m[:12] for m in matches[:5])
            raise AmbiguousHash(f"'{ref}' is ambiguous: {len(matches)} artifacts match ({shown}); give more characters")
        return matches[0]

    def info(self, ref: str, *, verify: bool = True) -> ObjectInfo:
        h = self.resolve(ref)
        path = self.object_path(h)
        try:
            meta = json.loads((path / META).read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise CorruptArtifact(f"artifact {h[:12]} has unreadable metadata ({e}); remove it with `ditflow cache rm {h[:12]}`")
        if verify:
            self.verify(h, path, meta)
        return ObjectInfo(h, meta.get("kind", "?"), path, meta)

    def verify(self, h: str, path: Path, meta: dict[str, Any]) -> None:
        recorded: dict[str, str] = meta.get("checksums", {})
        present = {p.relative_to(path).as_posix() for p in _payload_files(path)}
        if set(recorded) != present:
            raise CorruptArtifact(f"artifact {h[:12]} is incomplete or has extra files; remove it with `ditflow cache rm {h[:12]}`")
        for rel, digest in recorded.items():
            if file_sha256(path / rel) != digest:
                raise CorruptArtifact(f"artifact {h[:12]} is corrupt ({rel} changed); remove it with `ditflow cache rm {h[:12]}`")

    # -- writing --------------------------------------------------------------------------------------
    @contextmanager
    def writer(self, h: str, kind: str, inputs: dict[str, Any], *, parents: list[str] = (), extra: dict | None = None) -> Iterator[Path]:
        """Yield an empty temporary folder; on clean exit checksum it and move it into place atomically.

        On any exception (Ctrl-C included) the temporary folder is removed and nothing is published.
        """
        self.tmp.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{h[:12]}-", dir=self.tmp))
        try:
            yield work
            meta = {
                "kind": kind,
                "hash": h,
                "format": FORMAT_VERSION,
                "inputs": inputs,
                "parents": list(parents),
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
                "checksums": {p.relative_to(work).as_posix(): file_sha256(p) for p in _payload_files(work)},
                **(extra or {}),
            }
            (work / META).write_text(json.dumps(meta, indent=1, default=str))
            _make_read_only(work)
            dest = self.object_path(h)
            dest.parent.mkdir(parents=True, exist_ok=True)
            if dest.exists():  # another process finished the same work first: keep theirs
                _remove(work)
            else:
                os.replace(work, dest)
        except BaseException:
            _remove(work)
            raise

    # -- removal --------------------------------------------------------------------------------------
    def rm(self, ref: str) -> str:
        h = self.resolve(ref)
        path = self.object_path(h)
        # Rename first so a reader never sees a half-deleted object.
        doomed = self.tmp / f"rm-{h[:12]}-{uuid.uuid4().hex[:8]}"
        self.tmp.mkdir(parents=True, exist_ok=True)
        os.replace(path, doomed)
        _remove(doomed)
        return h

    def referenced(self) -> set[str]:
        refs: set[str] = set()
        for h in self.hashes():
            try:
                refs.update(json.loads((self.object_path(h) / META).read_text()).get("parents", []))
            except (OSError, json.JSONDecodeError):
                pass
        return refs

    def gc_plan(self, older_than_days: float | None = None) -> GcPlan:
        """Mark (what metadata references) and plan the sweep: temporaries, corrupt objects, and, when
        `older_than_days` is given, objects older than that which no other object references."""
        temporaries = sorted(self.tmp.iterdir()) if self.tmp.is_dir() else []
        corrupt, unreferenced = [], []
        refs = self.referenced()
        now = time.time()
        for h in self.hashes():
            try:
                info = self.info(h)
            except CorruptArtifact:
                corrupt.append(h)
                continue
            if older_than_days is not None and h not in refs:
                created = _dt.datetime.fromisoformat(info.created).timestamp() if info.created else 0.0
                if now - created >= older_than_days * 86400:
                    unreferenced.append(h)
        return GcPlan(temporaries, corrupt, unreferenced)

    def gc(self, plan: GcPlan) -> None:
        for p in plan.temporaries:
            _remove(p)
        for h in plan.corrupt + plan.unreferenced:
            if self.exists(h):
                self.rm(h)


def _make_read_only(folder: Path) -> None:
    for p in folder.rglob("*"):
        if p.is_file():
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


def _remove(path: Path) -> None:
    # Payload files are read-only, but on POSIX deleting needs only the (writable) folder's permission.
    if path.is_dir():
        shutil.rmtree(path, ignore_errors=True)
    elif path.exists():
        path.unlink()
