"""Content-addressed artifact store.

Layout: <root>/objects/ab/cdef.../ holds the payload files of one artifact and `meta.json` (kind, the
canonical inputs it was made from, checksums of every payload file, parents, created). An object is
addressed by the sha256 of its canonical inputs, so equal work is found again, and what its metadata says
about its inputs is checked against its name (`store_meta`). Writes go to a locked temporary entry under
<root>/tmp/ (`store_tmp`) and are moved into place with one rename, so an interrupted run leaves no
partial object. The root is marked with a CACHEDIR.TAG carrying ditflow's line: only a marked folder is
ever garbage-collected, and only what the store can prove is its own is deleted (`store_gc`).
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import stat
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from . import store_root
from .errors import AmbiguousHash, ArtifactNotFound, CorruptArtifact, InputError
from .store_meta import META, BrokenObject, check_meta, check_payload, payload_files, read_meta, sha256_nofollow
from .store_tmp import TempEntry, file_lock, remove_tree

if TYPE_CHECKING:
    from .store_gc import GcPlan, ObjectEntry

FORMAT_VERSION = 2  # 2: round 2's settings (cut knobs, per-mode lr); part of every hash
MIN_PREFIX = 6
_SHARD, _REST = re.compile(r"^[0-9a-f]{2}$"), re.compile(r"^[0-9a-f]{62}$")


def default_root() -> Path:
    env = os.environ.get("DITFLOW_CACHE")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ditflow"))


def canonical(obj: Any) -> str:
    """Stable JSON of the inputs that determine a result (sorted keys, tuples as lists)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), default=str)


def content_key(kind: str, inputs: dict[str, Any], *, fmt: int = FORMAT_VERSION) -> str:
    return hashlib.sha256(canonical({"kind": kind, "format": fmt, "inputs": inputs}).encode()).hexdigest()


def hash_file_into(h, path: Path, bufsize: int = 1 << 20) -> None:
    """Feed a file's bytes to the hash object `h` in chunks (files may be large videos or weights)."""
    with open(path, "rb") as f:
        while chunk := f.read(bufsize):
            h.update(chunk)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    hash_file_into(h, path)
    return h.hexdigest()


def tree_size(folder: Path) -> int:
    """Bytes of the regular files under `folder`, without following symlinks."""
    total = 0
    for top, _, files in os.walk(folder, followlinks=False):
        total += sum(os.lstat(os.path.join(top, f)).st_size for f in files)
    return total


@dataclass
class ObjectInfo:
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

    def _is_object_dir(self, h: str) -> bool:
        """A real folder at the hash's place (complete or not): the store's, as only it names them so."""
        try:
            return all(stat.S_ISDIR(os.lstat(p).st_mode) for p in (self.objects, self.objects / h[:2], self.object_path(h)))
        except OSError:
            return False

    def exists(self, h: str) -> bool:
        """A published object (with its metadata) is at `h`; whether it verifies is `info`'s business."""
        try:
            return self._is_object_dir(h) and stat.S_ISREG(os.lstat(self.object_path(h) / META).st_mode)
        except OSError:
            return False

    def object_dirs(self) -> Iterator[tuple[str, Path]]:
        """(hash, folder) of every hash-shaped real folder under objects/, complete or not."""
        for shard in sorted(self.objects.iterdir()) if self._real_dir(self.objects) else []:
            if _SHARD.match(shard.name) and self._real_dir(shard):
                for o in sorted(shard.iterdir()):
                    if _REST.match(o.name) and self._real_dir(o):
                        yield shard.name + o.name, o

    _real_dir = staticmethod(store_root.real_dir)

    def hashes(self) -> list[str]:
        """Hashes of the published objects (those with metadata)."""
        return [h for h, _ in self.object_dirs() if self.exists(h)]

    # -- the cache root (store_root) ------------------------------------------------------------------
    def is_cache(self) -> bool:
        return store_root.is_cache(self.root)

    def require_cache(self) -> None:
        """InputError unless the root is a ditflow cache (marked): what removes anything calls this first."""
        store_root.require_cache(self.root)

    def check_writable(self) -> None:
        """InputError (one line naming the folder and what to do) unless the store can write here. Stages
        call it before any model loads, so an unusable cache never costs a model load and a whole run."""
        store_root.check_writable(self.root)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The cache-wide lock: held briefly to place or remove objects, so a removal never takes an
        object a writer has just published, and two writers never replace one broken object twice."""
        with file_lock(self.root / store_root.LOCK):
            yield

    # -- look-up --------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """Full hash of `ref`, a hash or a unique prefix of at least 6 hex characters. Incomplete objects
        (no metadata) resolve too, so `cache rm` can name them."""
        ref = ref.strip().lower()
        if len(ref) < MIN_PREFIX or len(ref) > 64 or any(c not in "0123456789abcdef" for c in ref):
            raise InputError(f"'{ref}' is not an artifact hash (give at least {MIN_PREFIX} hex characters)")
        if len(ref) == 64:
            if self._is_object_dir(ref):
                return ref
            raise ArtifactNotFound(f"no artifact {ref[:12]} in cache {self.root}")
        folder = self.objects / ref[:2]
        names = sorted(o.name for o in folder.iterdir()) if self._real_dir(folder) else []
        matches = [ref[:2] + n for n in names if n.startswith(ref[2:]) and _REST.match(n) and self._is_object_dir(ref[:2] + n)]
        if not matches:
            raise ArtifactNotFound(f"no artifact matches '{ref}' in cache {self.root}")
        if len(matches) > 1:
            shown = ", ".join(m[:12] for m in matches[:5])
            raise AmbiguousHash(f"'{ref}' is ambiguous: {len(matches)} artifacts match ({shown}); give more characters")
        return matches[0]

    def info(self, ref: str, *, verify: bool = True) -> ObjectInfo:
        """The object `ref`, its metadata checked (types, paths, inputs against the hash); with `verify`
        its payload too (exactly the recorded regular files, with their checksums)."""
        return self.info_at(self.resolve(ref), verify=verify)

    def info_at(self, h: str, *, verify: bool = True) -> ObjectInfo:
        path = self.object_path(h)
        meta = read_meta(h, path)
        if verify:
            check_payload(h, path, meta)
        return ObjectInfo(h, meta["kind"], path, meta)

    def verify(self, h: str, path: Path, meta: dict[str, Any]) -> None:
        check_meta(h, meta)
        check_payload(h, path, meta)

    # -- writing --------------------------------------------------------------------------------------
    @contextmanager
    def writer(self, h: str, kind: str, inputs: dict[str, Any], *, parents: list[str] = (), extra: dict | None = None) -> Iterator[Path]:
        """Yield an empty temporary folder; on clean exit checksum it and move it into place atomically.

        On any exception (Ctrl-C included) the temporary folder is removed and nothing is published. The
        folder is locked for the writer's life, so `gc` leaves it alone. If the object appeared meanwhile
        (an identical run finished first) and verifies, this run is a cache hit; if what is there is
        incomplete or corrupt, it is replaced.
        """
        if content_key(kind, inputs) != h:
            raise ValueError(f"hash {h[:12]} is not content_key({kind!r}, inputs): the store could never verify it")
        store_root.prepare(self.root)
        entry = TempEntry.create(self.tmp, "w", h)
        try:
            entry.payload.mkdir()
            yield entry.payload
            self._publish(entry, h, kind, inputs, list(parents), extra or {})
        finally:
            entry.discard()

    def _publish(self, entry: TempEntry, h: str, kind: str, inputs: dict, parents: list[str], extra: dict) -> None:
        import datetime as _dt

        def lost() -> CorruptArtifact:
            return CorruptArtifact(f"the temporary folder of this run ({entry.path}) was removed or changed while it "
                                   f"was written; nothing was published; run again")

        folder = entry.payload
        if not entry.intact():
            raise lost()
        try:
            checksums = {rel: sha256_nofollow(folder / rel) for rel in payload_files(h, folder)}
        except (OSError, BrokenObject):
            raise lost()
        meta = {**extra, "kind": kind, "hash": h, "format": FORMAT_VERSION, "inputs": inputs, "parents": parents,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "checksums": checksums}
        meta = json.loads(json.dumps(meta, default=str))  # what a reader will see
        (folder / META).write_text(json.dumps(meta, indent=1))
        _make_read_only(folder)
        try:  # the files are still exactly those checksummed: nothing partial is ever published
            check_payload(h, folder, meta, checksums=False)
        except BrokenObject:
            raise lost()
        if not entry.intact():
            raise lost()
        with self.locked():
            self._place(folder, h)

    def _place(self, folder: Path, h: str) -> None:
        """Rename `folder` to the object's place (under the cache lock). An object already there that
        verifies makes this a hit (the caller discards `folder`); a broken one is moved aside first."""
        dest = self.object_path(h)
        dest.parent.mkdir(parents=True, exist_ok=True)
        for _ in range(3):
            try:
                os.rename(folder, dest)  # replaces an empty folder; refuses a non-empty one
                return
            except OSError as e:
                if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                    if e.errno == errno.ENOTDIR:
                        raise InputError(f"cannot publish {h[:12]}: {dest} is not a folder the store made; move it away")
                    raise
            try:
                self.info_at(h, verify=True)
                return
            except BrokenObject:
                self._move_aside(h).discard()
        raise CorruptArtifact(f"cannot publish {h[:12]}: {dest} keeps coming back; is another program writing there?")

    def _move_aside(self, h: str) -> TempEntry:
        """Rename the object `h` into a locked temporary entry (call under `locked()`); the caller removes it."""
        entry = TempEntry.create(self.tmp, "rm", h)
        try:
            os.rename(self.object_path(h), entry.payload)
        except BaseException:
            entry.discard()
            raise
        return entry

    # -- removal --------------------------------------------------------------------------------------
    def rm(self, ref: str) -> str:
        """Remove the object `ref` (complete, incomplete or corrupt). Renamed aside first, under the lock,
        so a reader never sees a half-deleted object; deleted after the lock is released."""
        self.require_cache()
        h = self.resolve(ref)
        with self.locked():
            if not self._is_object_dir(h):
                raise ArtifactNotFound(f"no artifact {h[:12]} in cache {self.root}")
            aside = self._move_aside(h)
        aside.discard()
        return h

    def referenced(self) -> set[str]:
        """Parents named by the objects whose metadata checks."""
        refs: set[str] = set()
        for h, _ in self.object_dirs():
            try:
                refs.update(self.info_at(h, verify=False).parents)
            except CorruptArtifact:
                pass
        return refs

    # -- listing and garbage collection (store_gc) ----------------------------------------------------
    def scan(self, *, verify: bool = False) -> "list[ObjectEntry]":
        from .store_gc import scan

        return scan(self, verify=verify)

    def gc_plan(self, older_than_days: float | None = None) -> "GcPlan":
        from .store_gc import plan

        return plan(self, older_than_days)

    def gc(self, plan: "GcPlan") -> None:
        from .store_gc import sweep

        sweep(self, plan)


def _make_read_only(folder: Path) -> None:
    for top, _, files in os.walk(folder, followlinks=False):
        for name in files:
            p = Path(top) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


_remove = remove_tree  # kept for callers of the old private helper
