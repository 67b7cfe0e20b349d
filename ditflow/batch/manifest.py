"""`ditflow batch` manifests: what to run, one `Run` per (video, prompt, setup, seed).

    runs.csv     video,prompt[,setup][,seed][,frame_range][,image][,image_fit]   one run per line
    runs.jsonl   {"video": ..., "prompt": [...], "setup": [...], "seed": [1, 2]}   a list expands (a grid)
    runs.toml    video = [...]  prompt = [...]  setup = [...]  seed = [...]        the same, or [[run]] tables
                 [setups.NAME] loss = "flow" ...                                     a setup of your own

A record expands to the product videos × prompts × setups × seeds of its list-valued fields (in that order);
a missing setup or seed is the batch's `--setups` / `--seeds`. frame_range is START,END,STEP (a string
"0,48,2" in CSV, a list in JSONL/TOML). Relative video and image paths are taken from the manifest's folder.
image (image-to-video) is the picture the row animates, as `--image` takes it; image_fit is `--image-fit`'s
crop, pad or squash (default crop).

The file is read by ditflow/records.py, one set of rules with `eval --manifest`: what is wrong with the file itself
(unreadable, no video/prompt, an unknown or repeated field, an unquoted comma, an open quote, an empty list, no
rows, a bad setup table, more than MAX_ROWS runs) is an InputError naming its line before anything runs (exit
2); what is wrong with one row (a missing video or image, an unknown setup, a bad seed, range or image_fit, an
empty prompt) makes that row a failed run with its reason, and the others still run. Both are decided here,
before any model loads.
"""
from __future__ import annotations

import itertools
import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from ..checks import MAX_SEED
from ..errors import InputError
from ..fileio import check_input_file
from ..image import IMAGE_FITS
from . import setups as S
from ..records import Record, Schema, read_records

COLUMNS = ("video", "prompt", "setup", "seed", "frame_range", "image", "image_fit")
EXPANDED = ("video", "prompt", "setup", "seed")  # a list in these fields is a grid axis
SCHEMA = Schema(COLUMNS, required=("video", "prompt"), lists=(*EXPANDED, "frame_range"), tables=("setups",))
MAX_ROWS = 100_000  # runs one manifest may expand to; checked on the list lengths, before any run is built


@dataclass(frozen=True)
class Run:
    row: int  # 1-based, in manifest order after expansion
    video: str  # as the manifest wrote it
    path: str  # resolved against the manifest's folder
    prompt: str
    setup: str
    seed: int | None
    frame_range: tuple[int, int, int] | None = None
    image: str | None = None  # image-to-video: the picture to animate, as the manifest wrote it
    image_path: str | None = None  # resolved against the manifest's folder
    image_fit: str = "crop"  # how the picture is fitted to the reference's size (`--image-fit`)
    inject_from: str | None = None  # an inject row: the prompt of the ditflow-emb run it replays
    error: str | None = None  # why this row cannot run (it is reported failed, the rest go on)

    @property
    def video_key(self) -> tuple[str, tuple | None]:
        """Which reference a run uses: the file and its frame range."""
        return (self.path, self.frame_range)


@dataclass
class Manifest:
    runs: list[Run]
    setups: dict[str, dict[str, Any]]  # the custom setups it defines (built-ins are in setups.SETUPS)


def read_manifest(path: str | os.PathLike, *, setups: list[str], seeds: list[int],
                  custom: dict[str, dict[str, Any]] | None = None) -> Manifest:
    """The runs of a .csv, .jsonl or .toml manifest. `setups` / `seeds` fill records without them; `custom`
    adds setups (from --setups-file) to those the manifest's own [setups] tables define."""
    path = check_input_file(path, "manifest")
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson", ".toml"):
        raise InputError(f"manifest {path} must be .csv (header video,prompt[,setup][,seed]), .jsonl or .toml")
    records, tables = read_records(path, SCHEMA)
    own = tables.get("setups", {})
    if not isinstance(own, dict):
        raise InputError(f"manifest {path}: 'setups' must be tables [setups.NAME] of guide settings")
    _check_size(records, setups, seeds)
    defined = {**(custom or {}), **S.check_custom(own, str(path))}
    known = set(S.builtin_names()) | set(defined)
    base = path.resolve().parent
    runs: list[Run] = []
    for rec in records:
        for video, prompt, setup, seed in itertools.product(*_axes(rec.fields, setups, seeds)):
            runs.append(_run(len(runs) + 1, video, prompt, setup, seed, rec.fields.get("frame_range"), base, known,
                             rec.fields.get("image"), rec.fields.get("image_fit")))
    if not runs:
        raise InputError(f"manifest {path} has no rows")
    return Manifest(inject_sources(runs), defined)


def _check_size(records: list[Record], setups: list[str], seeds: list[int]) -> None:
    """Refuse a manifest of more than MAX_ROWS runs from its list lengths alone, naming the record that
    crosses the limit: a small file can describe a grid of billions."""
    total = 0
    for rec in records:
        sizes = [len(axis) for axis in _axes(rec.fields, setups, seeds)]
        total += math.prod(sizes)
        if total > MAX_ROWS:
            grid = " × ".join(f"{n} {name}{'s' if n != 1 else ''}" for n, name in zip(sizes, EXPANDED))
            raise rec.error(f"this record makes {math.prod(sizes):,} runs ({grid}), {total:,} so far; a manifest "
                            f"makes at most MAX_ROWS = {MAX_ROWS:,} runs (split it into several)")


def _listed(value: Any, default: list) -> list:
    if value is None or value == "":
        return list(default)
    return list(value) if isinstance(value, list) else [value]


def _axes(rec: dict[str, Any], setups: list[str], seeds: list[int]) -> list[list]:
    """The grid axes of a record: its videos, prompts, setups and seeds."""
    return [_listed(rec.get("video"), [""]), _listed(rec.get("prompt"), [""]), _listed(rec.get("setup"), setups),
            _listed(rec.get("seed"), seeds)]


def _run(row: int, video: Any, prompt: Any, setup: Any, seed: Any, frame_range: Any, base: Path, known: set[str],
         image: Any = None, image_fit: Any = None) -> Run:
    video, prompt, setup = str(video).strip(), str(prompt).strip(), str(setup).strip()
    picture = None if image is None or str(image).strip() == "" else str(image).strip()
    fit = "crop" if image_fit is None or str(image_fit).strip() == "" else str(image_fit).strip()
    seed_value, seed_error = parse_seed(seed)
    span, span_error = parse_frame_range(frame_range)
    resolved = _resolve(video, base)
    error = ("row has no video" if not video else
             f"video not found: {video}" if not resolved.exists() else
             "row has no prompt" if not prompt else
             f"unknown setup '{setup}' (known: {', '.join(sorted(known))})" if setup not in known else
             seed_error or span_error or _image_error(picture, base) or
             (f"image_fit must be one of {', '.join(IMAGE_FITS)}, got {fit!r}" if fit not in IMAGE_FITS else None))
    return Run(row, video, str(resolved), prompt, setup, seed_value, span, picture,
               None if picture is None else str(_resolve(picture, base)), fit, error=error)


def _resolve(path: str, base: Path) -> Path:
    resolved = Path(path).expanduser()
    return resolved if resolved.is_absolute() else base / resolved


def _image_error(image: str | None, base: Path) -> str | None:
    """Why a row's image cannot be read, or None. It takes what `--image` takes (a picture or video file, a folder
    of frames) and refuses what it refuses (a FIFO or device, which would block or never end), by name."""
    if image is None:
        return None
    path = _resolve(image, base)
    if not path.exists():
        return f"image not found: {image}"
    if not (path.is_file() or path.is_dir()):
        return f"image {image} is not a regular file (a device, FIFO or socket); give a picture, a video or a folder of frames"
    return None


def parse_seed(value: Any) -> tuple[int | None, str | None]:
    """(seed, None) or (None, why not)."""
    if isinstance(value, bool):
        return None, f"seed must be an integer, got {value}"
    try:
        seed = int(value) if isinstance(value, (int, str)) and str(value).strip().lstrip("-").isdigit() else None
    except ValueError:
        seed = None
    if seed is None:
        return None, f"seed must be an integer, got {value!r}"
    if not 0 <= seed <= MAX_SEED:
        return None, f"seed must be between 0 and {MAX_SEED}, got {seed}"
    return seed, None


def parse_frame_range(value: Any) -> tuple[tuple[int, int, int] | None, str | None]:
    """(START, END, STEP) from "0,48,2" or [0, 48, 2]; (None, why) when malformed; (None, None) when absent."""
    if value is None or value == "":
        return None, None
    parts = value.split(",") if isinstance(value, str) else value if isinstance(value, list) else None
    try:
        span = tuple(int(p) for p in parts) if parts is not None and not any(isinstance(p, (bool, float)) for p in parts) else ()
    except (TypeError, ValueError):
        span = ()
    if len(span) != 3:
        return None, f"frame_range must be START,END,STEP (three integers), got {value!r}"
    start, end, step = span
    if not (start >= 0 and end > start and step >= 1):
        return None, f"frame_range needs END > START >= 0 and STEP >= 1, got {start},{end},{step}"
    return span, None


def inject_sources(runs: list[Run]) -> list[Run]:
    """Each inject row gets the prompt whose ditflow-emb run it replays: the first prompt the manifest lists
    for the same video (and frame range) other than the row's own; the run is the one with the row's seed.
    A video with only one prompt leaves an inject row nothing to replay: that row fails."""
    prompts: dict[tuple, dict[str, None]] = {}  # an ordered set per video: a grid of MAX_ROWS stays linear
    for r in runs:
        if r.error is None:
            prompts.setdefault(r.video_key, {})[r.prompt] = None
    out = []
    for r in runs:
        if r.setup == S.INJECT and r.error is None:
            other = next((p for p in prompts.get(r.video_key, {}) if p != r.prompt), None)
            r = replace(r, inject_from=other) if other is not None else replace(
                r, error=f"inject replays the {S.INJECT_SOURCE} run of another prompt of the same video; "
                         f"the manifest gives {r.video} no other prompt")
        out.append(r)
    return out
