from __future__ import annotations

import json
import sys
from typing import Annotated, Optional

import typer

from commands._common import help_when_bare
from .options import CacheOpt, JsonOpt

cache_app = typer.Typer(help="List, inspect, remove and garbage-collect cached artifacts.", invoke_without_command=True,
                       callback=help_when_bare)
HashArg = Annotated[str, typer.Argument(help="Artifact hash or unique prefix (6+ characters).", show_default=False)]


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


@cache_app.command("ls")
def ls(cache: CacheOpt = None, kind: Annotated[Optional[str], typer.Option(help="Only this kind: amf or gen.", show_default=False)] = None,
       json_out: JsonOpt = False) -> None:
    """List artifacts: kind, hash, size, created, source."""
    from rich.console import Console
    from rich.table import Table

    from ditflow.store import Store

    store = Store(cache)
    rows = []
    for h in store.hashes():
        info = store.info(h, verify=False)
        if kind and info.kind != kind:
            continue
        source = info.meta.get("source") or info.meta.get("settings", {}).get("prompt", "")
        rows.append({"kind": info.kind, "hash": h, "size": info.size, "created": info.created, "source": source})
    if json_out:
        print(json.dumps(rows))
        return
    table = Table("kind", "hash", "size", "created", "source")
    for r in rows:
        table.add_row(r["kind"], r["hash"][:12], _human(r["size"]), r["created"], str(r["source"]))
    Console().print(table) if rows else print(f"no artifacts in {store.root}", file=sys.stderr)


@cache_app.command("show")
def show(ref: HashArg, cache: CacheOpt = None) -> None:
    """Print an artifact's metadata (JSON), after verifying its checksums."""
    from ditflow.store import Store

    info = Store(cache).info(ref)
    meta = dict(info.meta)
    if len(meta.get("losses", [])) > 20:
        meta["losses"] = f"{len(meta['losses'])} entries (see `ditflow viz loss`)"
    print(json.dumps(meta, indent=1))


@cache_app.command("path")
def path(ref: HashArg, cache: CacheOpt = None) -> None:
    """Print the folder of an artifact."""
    from ditflow.store import Store

    print(Store(cache).info(ref, verify=False).path)


@cache_app.command("rm")
def rm(refs: Annotated[list[str], typer.Argument(help="Hashes or prefixes.", show_default=False)], cache: CacheOpt = None,
       force: Annotated[bool, typer.Option("--force", help="Remove even if another artifact references it.")] = False) -> None:
    """Remove artifacts."""
    from ditflow.errors import InputError
    from ditflow.store import Store

    store = Store(cache)
    hashes = [store.resolve(r) for r in refs]
    used = store.referenced()
    for h in hashes:
        if h in used and not force:
            raise InputError(f"artifact {h[:12]} is referenced by another artifact; pass --force to remove it anyway")
    for h in hashes:
        store.rm(h)
        print(h)


@cache_app.command("gc")
def gc(cache: CacheOpt = None,
       older_than: Annotated[Optional[float], typer.Option(help="Also remove artifacts older than this many days that no other artifact references.", show_default=False)] = None,
       dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be removed.")] = False) -> None:
    """Remove leftovers of interrupted runs, corrupt artifacts, and (with --older-than) unreferenced old ones."""
    from ditflow.store import Store

    store = Store(cache)
    plan = store.gc_plan(older_than)
    for p in plan.temporaries:
        print(f"temporary {p}")
    for h in plan.corrupt:
        print(f"corrupt {h}")
    for h in plan.unreferenced:
        print(f"unreferenced {h}")
    if plan.empty:
        print("nothing to collect", file=sys.stderr)
    elif not dry_run:
        store.gc(plan)
    elif dry_run:
        print("dry run: nothing removed", file=sys.stderr)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
