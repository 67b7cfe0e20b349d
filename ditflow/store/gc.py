"""Listing and garbage collection of a store, deleting only what the store can prove is its own.

Objects: a real folder at a hash-shaped path under objects/ is the store's (only it names folders so);
it is `ok`, `corrupt` (metadata or payload fails a check) or `incomplete` (no metadata). Temporaries:
entries with the store's name pattern, marker and a free lock (`tmp`). Everything else (other
names, symlinks, files) is reported as foreign and left alone.
"""
from __future__ import annotations

import time
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Protocol

from .keys import walk_objects
from .meta import BrokenObject, ObjectInfo, check_payload, parse_created
from .tmp import TempEntry, scan_tmp
from .tmp import sweep as sweep_entry


class StoreLike(Protocol):
    """The public part of `Store` that listing and gc use (the store's package imports this module)."""

    @property
    def objects(self) -> Path: ...
    @property
    def tmp(self) -> Path: ...
    def require_cache(self) -> None: ...
    def locked(self) -> AbstractContextManager[None]: ...
    def object_dirs(self) -> Iterator[tuple[str, Path]]: ...
    def is_object_dir(self, h: str) -> bool: ...
    def info_at(self, h: str, *, verify: bool = True) -> ObjectInfo: ...
    def referenced(self) -> set[str]: ...
    def move_aside(self, h: str) -> TempEntry: ...


@dataclass
class ObjectEntry:
    hash: str
    path: Path
    state: str  # "ok", "corrupt" or "incomplete"
    reason: str = ""
    info: ObjectInfo | None = None  # its checked metadata, kept for a corrupt payload too (ls still shows its kind)


@dataclass
class GcPlan:
    temporaries: list[Path]  # the store's, held by no live process: removed
    corrupt: list[str]
    unreferenced: list[str]
    incomplete: list[str] = field(default_factory=list)
    in_use: list[Path] = field(default_factory=list)  # locked by a live writer: kept
    foreign: list[Path] = field(default_factory=list)  # not ditflow's: kept
    reasons: dict[str, str] = field(default_factory=dict)  # hash -> why it is corrupt or incomplete

    @property
    def empty(self) -> bool:
        return not (self.temporaries or self.corrupt or self.incomplete or self.unreferenced)


def scan(store: StoreLike, *, verify: bool = False) -> list[ObjectEntry]:
    """Every object folder with its state; one bad object never stops the listing of the others."""
    out = []
    for h, path in store.object_dirs():
        info = None
        try:
            info = store.info_at(h, verify=verify)
            if not verify:  # still the recorded files at their recorded sizes; hashed only where no sizes are recorded
                check_payload(h, path, info.meta, checksums="sizes" not in info.meta)
            out.append(ObjectEntry(h, path, "ok", info=info))
        except BrokenObject as e:  # `info` kept when only the payload is bad: the listing still says what it was
            out.append(ObjectEntry(h, path, e.state, e.reason, info=info))
        except OSError as e:  # vanished or unreadable meanwhile
            out.append(ObjectEntry(h, path, "corrupt", f"unreadable: {e.strerror}"))
    return out


def foreign_objects(store: StoreLike) -> list[Path]:
    """What lies under objects/ that the store did not make (other names, symlinks, files)."""
    return [p for p, h in walk_objects(store.objects) if h is None]


def plan(store: StoreLike, older_than_days: float | None = None) -> GcPlan:
    """Plan the sweep: stale temporaries, corrupt and incomplete objects, and, when `older_than_days`
    is given, verified objects older than that which no other object references."""
    store.require_cache()
    stale, in_use, foreign = scan_tmp(store.tmp)
    entries = scan(store, verify=True)
    refs = {p for e in entries if e.state == "ok" for p in e.info.parents}
    result = GcPlan(stale, [], [], in_use=in_use, foreign=foreign + foreign_objects(store))
    now = time.time()
    for e in entries:
        if e.state != "ok":
            (result.corrupt if e.state == "corrupt" else result.incomplete).append(e.hash)
            result.reasons[e.hash] = e.reason
        elif older_than_days is not None and e.hash not in refs:
            created = parse_created(e.info.created)  # checked by read_meta, so never None here
            if created is not None and now - created.timestamp() >= older_than_days * 86400:
                result.unreferenced.append(e.hash)
    return result


def sweep(store: StoreLike, plan: GcPlan) -> None:
    """Carry out `plan`, checking each item again: a temporary that a live process holds now, an object
    replaced by a sound one, or one that became referenced since the plan, is kept."""
    store.require_cache()
    for p in plan.temporaries:
        sweep_entry(p)
    doomed = []
    with store.locked():  # decide and rename under the lock; delete after it
        refs = store.referenced() if plan.unreferenced else set()
        for h in plan.corrupt + plan.incomplete:
            if not store.is_object_dir(h):
                continue
            try:
                store.info_at(h, verify=True)
                continue
            except BrokenObject:
                doomed.append(store.move_aside(h))
        for h in plan.unreferenced:
            if h not in refs and store.is_object_dir(h):
                doomed.append(store.move_aside(h))
    for entry in doomed:
        entry.discard()


__all__ = ["GcPlan", "ObjectEntry", "scan", "plan", "sweep", "foreign_objects"]
