from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer

from ditflow.store import KNOWN_KINDS, Store, parse_created, tree_size

from ._common import help_when_bare
from .options import CacheOpt, Command, FormatOpt, Group, HashArg, JsonOpt, OverwriteOpt, argument, choices, option

cache_app = typer.Typer(cls=Group, help="List, inspect, export, remove and garbage-collect cached artifacts.",
                       invoke_without_command=True, callback=help_when_bare)
KINDS = ", ".join(KNOWN_KINDS[:-1]) + " or " + KNOWN_KINDS[-1]  # the library's list: the CLI accepts exactly what the store does


def _human(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def _mode(kind: str, inputs: dict[str, Any]) -> str:
    """What kind of run made it: the guide's opt mode, no-guidance or inject; for an AMF, its blocks."""
    if kind == "amf":
        return "blocks " + ",".join(str(b) for b in inputs.get("blocks") or [])
    if kind == "score":
        return "eval"
    if kind == "flow":  # a method's optical flow of a reference (RoPECraft's)
        return f"{inputs.get('flow')} flow"
    if "emb" in inputs:
        return "inject"
    return str(inputs.get("opt_mode")) if inputs.get("guidance") else "no-guidance"


def _row(entry) -> dict[str, Any]:
    """One `cache ls` row; its facts come from the hashed inputs, except the AMF's source file name."""
    row: dict[str, Any] = {"state": entry.state, "kind": "?", "hash": entry.hash, "size": 0, "created": "",
                           "mode": "", "seed": None, "prompt": None, "source": "", "reason": entry.reason}
    try:
        row["size"] = tree_size(entry.path)
    except OSError:
        pass
    if entry.info is None:
        return row
    info, inputs = entry.info, entry.info.meta["inputs"]
    row.update(kind=info.kind, created=info.created, mode=_mode(info.kind, inputs))
    if info.kind == "gen":
        row.update(seed=inputs.get("seed"), prompt=inputs.get("prompt"), source=str(inputs.get("prompt") or ""))
    else:
        row["source"] = str(info.meta.get("source") or "")
    return row


def _when(row: dict[str, Any]) -> float:
    created = parse_created(row["created"])
    return created.timestamp() if created is not None else float("-inf")


@cache_app.command("ls", cls=Command)
def ls(cache: CacheOpt = None,
       kind: Annotated[Optional[str], option("--kind", metavar=choices(KNOWN_KINDS), show_default=False,
                                             help="Only this kind (score: a batch row's evaluation).")] = None,
       as_json: JsonOpt = False) -> None:
    """List artifacts, oldest first: created, kind, hash, mode (opt mode / no-guidance / inject; an AMF's
    blocks), seed, size, prompt or source. A corrupt or incomplete one is listed with the reason."""
    from ditflow.errors import InputError
    from ditflow.fileio import printable

    if kind is not None and kind not in KNOWN_KINDS:
        raise InputError(f"--kind must be {KINDS}, not {printable(repr(kind))}")
    store = Store(cache)
    rows = sorted((_row(e) for e in store.scan()), key=_when)
    rows = [r for r in rows if not kind or r["kind"] == kind]
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        print(f"no artifacts in {printable(store.root)}", file=sys.stderr)
        return
    table = [("created", "kind", "hash", "mode", "seed", "size", "prompt / source")]
    for r in rows:
        what = r["source"] if r["state"] == "ok" else f"{r['state']}: {r['reason']}"
        # every cell but the size comes from files in the cache (a prompt, a file name): escaped for the terminal
        table.append(tuple(map(printable, (r["created"] or "?", r["kind"], r["hash"][:12], r["mode"],
                                           "" if r["seed"] is None else r["seed"], _human(r["size"]), what))))
    widths = [max(len(line[i]) for line in table) for i in range(len(table[0]) - 1)]
    for line in table:
        print("  ".join(c.ljust(w) for c, w in zip(line, widths)) + "  " + line[-1])


@cache_app.command("show", cls=Command)
def show(ref: HashArg, cache: CacheOpt = None) -> None:
    """Print an artifact's metadata (JSON), after verifying it; for a generation, also its seconds and peak memory
    as one line on stderr (stdout stays JSON)."""
    info = Store(cache).info(ref)
    meta = dict(info.meta)
    if len(meta.get("losses", [])) > 20:
        meta["losses"] = f"{len(meta['losses'])} entries (see `ditflow viz loss`)"
    print(json.dumps(meta, indent=1))
    if info.kind == "gen":
        print(cost_line(meta), file=sys.stderr)


def cost_line(meta: dict[str, Any]) -> str:
    """A generation's wall time and peak memory as recorded in its meta (older artifacts lack the peak)."""
    from ditflow.fileio import printable

    seconds, peak = (m if isinstance(m, dict) else {} for m in (meta.get("seconds"), meta.get("peak_memory")))
    parts = ", ".join(f"{k} {v:.1f}" for k, v in seconds.items() if k != "total" and isinstance(v, (int, float)))
    total = seconds.get("total")
    took = f"{total:.1f} s ({parts})" if isinstance(total, (int, float)) else "seconds not recorded"
    mb, measure = peak.get("mb"), peak.get("measure")
    if isinstance(mb, (int, float)):
        memory = f"peak memory {mb:.1f} MB ({measure})"
    else:  # made before ditflow recorded it, or the platform offers no measure
        memory = "peak memory not recorded" + (f" ({measure})" if measure else "")
    return printable(f"generation: {took}, {memory}")


@cache_app.command("path", cls=Command)
def path(ref: HashArg, cache: CacheOpt = None,
         video: Annotated[bool, option("--video", help="The payload holding the frames (gen: video.safetensors; amf: amf.zarr/frames), after verifying it.")] = False) -> None:
    """Print the folder of an artifact (also of an incomplete or corrupt one, to inspect it)."""
    store = Store(cache)
    if not video:
        print(store.object_path(store.resolve(ref)))
        return
    from ditflow.artifacts import AMF_PAYLOAD, load

    art = _video_artifact(load(store, ref))
    print(art.path / ("video.safetensors" if art.kind == "gen" else f"{AMF_PAYLOAD}/frames"))


def _video_artifact(art):
    from ditflow.errors import InputError

    if art.kind not in ("gen", "amf"):
        raise InputError(f"artifact {art.hash[:12]} is a '{art.kind}' artifact and holds no video")
    return art


@cache_app.command("export", cls=Command)
def export(ref: HashArg, out: Annotated[Path, argument(metavar="OUT", help="Video file to write (mp4, gif), or a folder of PNG frames.")],
           cache: CacheOpt = None, fmt: FormatOpt = None, overwrite: OverwriteOpt = False) -> None:
    """Write an artifact's video (gen: its frames; amf: its reference frames) to a file; print its path."""
    from ditflow.artifacts import load
    from ditflow.video import write_video

    art = _video_artifact(load(Store(cache), ref))
    print(write_video(art.frames, out, fmt=fmt or (None if out.suffix else "mp4"), overwrite=overwrite))


@cache_app.command("rm", cls=Command)
def rm(refs: Annotated[list[str], argument(metavar="HASH", help="Hashes or prefixes.")], cache: CacheOpt = None,
       force: Annotated[bool, option("--force", help="Remove even if another artifact references it.")] = False) -> None:
    """Remove artifacts (incomplete and corrupt ones too)."""
    for h in Store(cache).remove(refs, force=force):
        print(h)


@cache_app.command("gc", cls=Command)
def gc(cache: CacheOpt = None,
       older_than: Annotated[Optional[float], option("--older-than", metavar="DAYS", show_default=False,
                                                     help="Also remove artifacts older than this many days that no other artifact references.")] = None,
       dry_run: Annotated[bool, option("--dry-run", help="Only print what would be removed.")] = False) -> None:
    """Remove leftovers of interrupted runs, corrupt and incomplete artifacts, and (with --older-than)
    unreferenced old ones. Only what the store made is removed: anything else is reported and kept."""
    import math

    from ditflow.errors import InputError

    if older_than is not None and not (math.isfinite(older_than) and older_than >= 0):
        raise InputError(f"--older-than must be a number of days >= 0, got {older_than}")
    store = Store(cache)
    plan = store.gc_plan(older_than)
    for p in plan.temporaries:
        print(f"temporary {p}")
    for h in plan.corrupt:
        print(f"corrupt {h} ({plan.reasons[h]})")
    for h in plan.incomplete:
        print(f"incomplete {h} ({plan.reasons[h]})")
    for h in plan.unreferenced:
        print(f"unreferenced {h}")
    for p in plan.in_use:
        print(f"in use, left alone: {p}", file=sys.stderr)
    for p in plan.foreign:
        print(f"not ditflow's, left alone: {p}", file=sys.stderr)
    if plan.empty:
        print("nothing to collect", file=sys.stderr)
    elif dry_run:
        print("dry run: nothing removed", file=sys.stderr)
    else:
        store.gc(plan)


def register(app: typer.Typer) -> None:
    app.add_typer(cache_app, name="cache")
