"""Content-addressed artifact store.

Layout: <root>/objects/ab/cdef.../ holds the payload files of one artifact and `meta.json` (kind, the
canonical inputs it was made from, checksums of every payload file, parents, created). An object is
addressed by the sha256 of its canonical inputs, so equal work is found again, and what its metadata says
about its inputs is checked against its name (`meta`). Writes go to a locked temporary entry under
<root>/tmp/ (`tmp`) and are moved into place with one rename, so an interrupted run leaves no partial
object. The root is marked with a CACHEDIR.TAG carrying ditflow's line (`root`): only a marked folder is
ever garbage-collected, and only what the store can prove is its own is deleted (`gc`). Names, hashing
and the objects/ layout are `keys`, which imports nothing else of the store.
"""
from __future__ import annotations

import datetime as _dt
import errno
import json
import os
import stat
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import AmbiguousHash, ArtifactNotFound, CorruptArtifact, InputError
from . import gc as _gc
from . import root as _root
from .failures import io_reason, remove_error, write_error
from .gc import GcPlan, ObjectEntry
from .keys import (FORMAT_VERSION, REST, canonical, content_key, file_sha256, hash_file_into, is_object_dir, object_path,
                   real_dir, walk_objects)
from .meta import KNOWN_KINDS, META, BrokenObject, ObjectInfo, check_payload, parse_created, payload_files, read_meta, tree_size
from .root import default_root
from .tmp import TempEntry, file_lock

MIN_PREFIX = 6


class Store:
    """The cache at `root` (default: $DITFLOW_CACHE, else the user's cache folder)."""

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
        return object_path(self.objects, h)

    def is_object_dir(self, h: str) -> bool:
        """A real folder at the hash's place (complete or not): the store's, as only it names them so."""
        return is_object_dir(self.objects, h)

    def exists(self, h: str) -> bool:
        """A published object (with its metadata) is at `h`; whether it verifies is `info`'s business."""
        try:
            return self.is_object_dir(h) and stat.S_ISREG(os.lstat(self.object_path(h) / META).st_mode)
        except OSError:
            return False

    def object_dirs(self) -> Iterator[tuple[str, Path]]:
        """(hash, folder) of every hash-shaped real folder under objects/, complete or not."""
        return ((h, path) for path, h in walk_objects(self.objects) if h is not None)

    def hashes(self) -> list[str]:
        """Hashes of the published objects (those with metadata)."""
        return [h for h, _ in self.object_dirs() if self.exists(h)]

    # -- the cache root (root.py) ---------------------------------------------------------------------
    def is_cache(self) -> bool:
        return _root.is_cache(self.root)

    def require_cache(self) -> None:
        """InputError unless the root is a ditflow cache (marked): what removes anything calls this first."""
        _root.require_cache(self.root)

    def check_shape(self) -> None:
        """InputError unless the root is, or can become, a cache folder (a file in the way, a folder of other
        files); no write probe, for a run that checks its --cache up front but may only read."""
        _root.check_shape(self.root)

    def check_writable(self) -> None:
        """InputError (one line naming the folder and what to do) unless the store can write here. Stages
        call it before any model loads, so an unusable cache never costs a model load and a whole run."""
        _root.check_writable(self.root)

    @contextmanager
    def locked(self) -> Iterator[None]:
        """The cache-wide lock: held briefly to place or remove objects, so a removal never takes an
        object a writer has just published, and two writers never replace one broken object twice."""
        with file_lock(self.root / _root.LOCK):
            yield

    # -- look-up --------------------------------------------------------------------------------------
    def resolve(self, ref: str) -> str:
        """Full hash of `ref`, a hash or a unique prefix of at least 6 hex characters. Incomplete objects
        (no metadata) resolve too, so `cache rm` can name them."""
        ref = ref.strip().lower()
        if len(ref) < MIN_PREFIX or len(ref) > 64 or any(c not in "0123456789abcdef" for c in ref):
            raise InputError(f"'{ref}' is not an artifact hash (give at least {MIN_PREFIX} hex characters)")
        if len(ref) == 64:
            if self.is_object_dir(ref):
                return ref
            raise ArtifactNotFound(f"no artifact {ref[:12]} in cache {self.root}")
        folder = self.objects / ref[:2]
        names = sorted(o.name for o in folder.iterdir()) if real_dir(folder) else []
        matches = [ref[:2] + n for n in names if n.startswith(ref[2:]) and REST.match(n) and self.is_object_dir(ref[:2] + n)]
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
        try:
            _root.prepare(self.root)
            entry = TempEntry.create(self.tmp, "w", h)
        except OSError as e:
            raise write_error(self.root, io_reason(e)) from e
        try:
            entry.payload.mkdir()
            yield entry.payload
            self._publish(entry, h, kind, inputs, list(parents), extra or {})
        except Exception as e:  # the payload's writes (files, safetensors, zarr), its meta, the publishing rename
            reason = io_reason(e)
            if reason is None:
                raise
            raise write_error(self.root, reason) from e
        finally:
            entry.discard()

    def _publish(self, entry: TempEntry, h: str, kind: str, inputs: dict, parents: list[str], extra: dict) -> None:
        def lost() -> CorruptArtifact:
            return CorruptArtifact(f"the temporary folder of this run ({entry.path}) was removed or changed while it "
                                   f"was written; nothing was published; run again")

        folder = entry.payload
        if not entry.intact():
            raise lost()
        try:
            files = payload_files(h, folder)
            checksums = {rel: file_sha256(folder / rel) for rel in files}
            sizes = {rel: os.lstat(folder / rel).st_size for rel in files}  # lets `cache ls` see a truncation cheaply
        except (OSError, BrokenObject):
            raise lost()
        meta = {**extra, "kind": kind, "hash": h, "format": FORMAT_VERSION, "inputs": inputs, "parents": parents,
                "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), "checksums": checksums,
                "sizes": sizes}
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
                self.move_aside(h).discard()
        raise CorruptArtifact(f"cannot publish {h[:12]}: {dest} keeps coming back; is another program writing there?")

    def move_aside(self, h: str) -> TempEntry:
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
        try:
            with self.locked():
                if not self.is_object_dir(h):
                    raise ArtifactNotFound(f"no artifact {h[:12]} in cache {self.root}")
                aside = self.move_aside(h)
        except OSError as e:  # a read-only cache: the lock or the rename aside fails before anything is gone
            raise remove_error(self.root, h, io_reason(e)) from e
        aside.discard()
        return h

    def remove(self, refs: list[str], *, force: bool = False) -> list[str]:
        """`cache rm`'s rule, for every front-end: resolve all of `refs` first, refuse (InputError, nothing
        removed) one that another artifact references unless `force`, then `rm` each once. Returns the hashes."""
        self.require_cache()
        hashes = list(dict.fromkeys(self.resolve(r) for r in refs))  # `rm S S` or two prefixes of one hash: once
        used = self.referenced()
        for h in hashes:
            if h in used and not force:
                raise InputError(f"artifact {h[:12]} is referenced by another artifact; pass --force to remove it anyway")
        for h in hashes:
            self.rm(h)
        return hashes

    def referenced(self) -> set[str]:
        """Parents named by the objects whose metadata checks."""
        refs: set[str] = set()
        for h, _ in self.object_dirs():
            try:
                refs.update(self.info_at(h, verify=False).parents)
            except CorruptArtifact:
                pass
        return refs

    # -- listing and garbage collection (gc.py) -------------------------------------------------------
    def scan(self, *, verify: bool = False) -> list[ObjectEntry]:
        return _gc.scan(self, verify=verify)

    def gc_plan(self, older_than_days: float | None = None) -> GcPlan:
        return _gc.plan(self, older_than_days)

    def gc(self, plan: GcPlan) -> None:
        _gc.sweep(self, plan)


def _make_read_only(folder: Path) -> None:
    for top, _, files in os.walk(folder, followlinks=False):
        for name in files:
            p = Path(top) / name
            p.chmod(p.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))


__all__ = ["Store", "ObjectInfo", "ObjectEntry", "GcPlan", "BrokenObject", "FORMAT_VERSION", "KNOWN_KINDS", "META",
           "MIN_PREFIX", "canonical", "content_key", "default_root", "file_sha256", "hash_file_into", "parse_created",
           "tree_size"]
