"""A batch's results: one row per run, written as CSV or JSON (atomically) and read back by `ditflow report`.

The writer and the reader agree exactly: a prompt with any character (newlines, form feeds, U+2028, hundreds
of thousands of characters) reads back as it was written. The reader checks every row before it returns, so
a report refuses a bad file (one `InputError` naming file, row and column) before it writes anything.
"""
from __future__ import annotations

import csv
import io
import json
import math
import numbers
import os
import re
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from ..errors import InputError
from ..fileio import atomic_file, check_input_file, printable, write_text
from ..image import IMAGE_FITS

# amf and gen are the artifacts' hashes; seconds the generation's (guide or inject) when it was made;
# status ok or failed; cached: the whole row came from the cache; notes: why a score is missing or doubtful;
# cache: the cache folder the row's artifacts are in (so `ditflow report` finds its thumbnails without --cache);
# image (as the manifest wrote it), image_fit and image_digest (the gen's `image` input: its fitted pixels) for
# an image-to-video row, appended last so that a reader of an older file's columns by position still reads them;
# then the peers' metrics (`ditflow eval`'s result keys) and the generation's peak memory, appended last for the
# same reason (a file from before them reads with those columns empty)
COLUMNS = ("video", "prompt", "setup", "seed", "amf", "gen", "motion_fidelity", "clip_score", "seconds", "status",
           "error", "model", "frame_range", "cached", "notes", "row", "cache", "image", "image_fit", "image_digest",
           "temporal_consistency", "ftd", "mf_masked", "peak_memory_mb")
SCORE_COLUMNS = ("motion_fidelity", "clip_score", "temporal_consistency", "ftd", "mf_masked")  # from the row's evaluation
NUMBERS = (*SCORE_COLUMNS, "seconds", "peak_memory_mb")
HASHES = ("amf", "gen", "image_digest")
INTEGERS = ("seed", "row")
FLAGS = ("cached",)
STATUSES = ("ok", "failed")
REQUIRED = ("setup", "status", "motion_fidelity")
# MF is a mean of cosines, less one on a square matrix's diagonal in its `ditflow` variant (so down to -2);
# the CLIP score and temporal consistency means of cosines; FTD a distance in pixels (bounded far above any
# video's diagonal); a generation's wall time at most a year, its peak memory at most a PiB. Anything else is no result.
RANGES = {"motion_fidelity": (-2.0, 1.0), "mf_masked": (-2.0, 1.0), "clip_score": (-1.0, 1.0),
          "temporal_consistency": (-1.0, 1.0), "ftd": (0.0, 1e6), "seconds": (0.0, 366 * 86400.0),
          "peak_memory_mb": (0.0, 2.0**30)}
SLACK = 1e-4  # float32 rounding can put a cosine a hair outside [-1, 1]
# csv's default limit (131,072 characters a field) is shorter than a long prompt; this one bounds a field
# at 64 Mi characters, far beyond any prompt, so a corrupt file still fails in one line instead of using all memory
MAX_FIELD = 64 * 1024 * 1024
_HASH = re.compile("[0-9a-f]{64}")


class BadValue(ValueError):
    """One cell that is not what its column holds; the reader adds the file, row and column."""


# -- writing ---------------------------------------------------------------------------------------------
def writable(row: dict[str, Any]) -> dict[str, Any]:
    """The row as the reader reads it back: a score the reader would refuse (a bug upstream, never a real
    score) is left empty and noted, so a batch never writes a results file its report refuses."""
    out = {k: row.get(k) for k in COLUMNS}
    notes = [out["notes"]] if out["notes"] else []
    for k in NUMBERS:
        try:
            out[k] = _number(k, out[k])
        except BadValue as e:
            out[k] = None
            notes.append(f"{k}: not written, {e}")
    out["notes"] = "; ".join(notes) or None
    return out


def write_csv(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)  # quotes any field holding a quote, comma, CR or LF
        writer.writeheader()
        for r in results:
            writer.writerow({k: "" if v is None else v for k, v in writable(r).items()})
    return path


def results_json(results: list[dict[str, Any]]) -> str:
    """The rows as one JSON list: what --json prints and --json-out writes."""
    return json.dumps([writable(r) for r in results], indent=1)


def write_json(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    return write_text(path, results_json(results) + "\n")


# -- reading ---------------------------------------------------------------------------------------------
def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a batch's --json-out or --csv, typed (numbers as floats, seed and row as ints, cached as a
    bool, empty cells as None) and checked: any bad cell is an InputError naming file, row and column."""
    path = check_input_file(path, "results")
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        raise InputError(f"{printable(path)} is not UTF-8 text (byte {e.start})")
    except OSError as e:
        raise InputError(f"cannot read {printable(path)}: {printable(e.strerror or e)}")
    suffix = path.suffix.lower()
    if suffix == ".json":
        rows, from_csv = _json_rows(path, text), False
    elif suffix == ".csv":
        rows, from_csv = _csv_rows(path, text), True
    else:
        raise InputError(f"results {printable(path)} must be the .json or .csv that `ditflow batch` wrote")
    missing = [c for c in REQUIRED if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{printable(path)} has no '{missing[0]}' column: is it the output of `ditflow batch`?")
    return [typed(path, n, r, from_csv) for n, r in enumerate(rows, start=1)]


def recorded_cache(rows: list[dict[str, Any]]) -> str | None:
    """The cache the batch recorded in its rows (the first row's that names one; None for an older file)."""
    return next((r["cache"] for r in rows if r.get("cache")), None)


def _json_rows(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        rows = json.loads(text)
    except json.JSONDecodeError as e:
        raise InputError(f"{printable(path)} is not JSON: {e.msg} (line {e.lineno})")
    except ValueError as e:  # an integer of more digits than Python converts
        raise InputError(f"{printable(path)} is not usable JSON: {printable(e)}")
    except RecursionError:
        raise InputError(f"{printable(path)} is not a list of result rows: nested too deeply")
    if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
        raise InputError(f"{printable(path)} is not a list of result rows (the --json-out of `ditflow batch`)")
    return rows


@contextmanager
def _field_limit(limit: int) -> Iterator[None]:
    """csv's field limit is process-wide: raised for this read only."""
    before = csv.field_size_limit(limit)
    try:
        yield
    finally:
        csv.field_size_limit(before)


def _csv_rows(path: Path, text: str) -> list[dict[str, str]]:
    # newline="": CR, LF and CRLF inside quoted fields stay as written, and U+2028 or a form feed is no line end
    reader = csv.reader(io.StringIO(text, newline=""))
    try:
        with _field_limit(MAX_FIELD):
            records = [r for r in reader if r]  # a blank line is no row (as for csv.DictReader)
    except csv.Error as e:
        raise InputError(f"{printable(path)} is not readable CSV (line {reader.line_num}): {printable(e)}")
    if not records:
        return []
    header, body = records[0], records[1:]
    twice = [c for c in dict.fromkeys(header) if header.count(c) > 1]
    if twice:
        raise InputError(f"{printable(path)} has the column '{printable(twice[0])}' twice")
    for n, record in enumerate(body, start=1):
        if len(record) != len(header):
            raise InputError(f"{printable(path)} row {n} has {len(record)} fields, its header {len(header)}")
    return [dict(zip(header, record)) for record in body]


def typed(path: Path, n: int, row: dict[str, Any], from_csv: bool) -> dict[str, Any]:
    """Row `n` of `path` with each column typed and checked (a CSV cell is text; empty is None)."""
    out = {}
    for k in COLUMNS:
        value = row.get(k)
        if from_csv and value == "":
            value = None
        try:
            out[k] = _cell(k, value, from_csv)
            if k == "status" and value is None:
                raise BadValue(f"empty; it must be {' or '.join(STATUSES)}")
        except BadValue as e:
            raise InputError(f"{printable(path)} row {n}, column {k}: {e}") from None
    return out


def _cell(column: str, value: Any, from_csv: bool) -> Any:
    if value is None:
        return None
    if column in NUMBERS:
        return _number(column, value)
    if column in HASHES:
        if not (isinstance(value, str) and _HASH.fullmatch(value)):
            raise BadValue(f"{_show(value)} is not an artifact hash (64 hex digits)")
        return value
    if column in INTEGERS:
        return _integer(value, from_csv)
    if column in FLAGS:
        return _flag(value, from_csv)
    if not isinstance(value, str):
        raise BadValue(f"{_show(value)} is not text")
    if column == "status" and value not in STATUSES:
        raise BadValue(f"{_show(value)} is not a status ({' or '.join(STATUSES)})")
    if column == "image_fit" and value not in IMAGE_FITS:
        raise BadValue(f"{_show(value)} is not an image fit ({', '.join(IMAGE_FITS)})")
    return value


def _number(column: str, value: Any) -> float | None:
    """A score or seconds as a float within its column's range; raises BadValue for anything else."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (numbers.Real, str)):
        raise BadValue(f"{_show(value)} is not a number")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: a JSON integer too large for a float
        raise BadValue(f"{_show(value)} is not a number") from None
    lo, hi = RANGES[column]
    if not (math.isfinite(number) and lo - SLACK <= number <= hi + SLACK):
        raise BadValue(f"{_show(value)} is not a finite number in [{lo:g}, {hi:g}]")
    return number


def _integer(value: Any, from_csv: bool) -> int:
    if from_csv and isinstance(value, str) and re.fullmatch("-?[0-9]{1,20}", value):
        return int(value)
    if not from_csv and isinstance(value, int) and not isinstance(value, bool):
        return value
    raise BadValue(f"{_show(value)} is not a whole number")


def _flag(value: Any, from_csv: bool) -> bool:
    if from_csv and value in ("True", "False"):
        return value == "True"
    if not from_csv and isinstance(value, bool):
        return value
    raise BadValue(f"{_show(value)} is not True or False")


def _show(value: Any, limit: int = 40) -> str:
    """A cell in a message: escaped, and cut short (a bad cell may be a whole prompt)."""
    try:
        text = repr(value) if isinstance(value, str) else json.dumps(value)
    except (TypeError, ValueError):  # not from a file: a writer's odd object
        text = repr(value)
    text = printable(text)
    return text if len(text) <= limit else text[:limit] + "..."
