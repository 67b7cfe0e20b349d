"""A batch's results: one row per run, written as CSV or JSON (atomically) and read back by `ditflow report`."""
from __future__ import annotations

import csv
import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError
from ..fileio import atomic_file, write_text

# amf and gen are the artifacts' hashes; seconds the generation's (guide or inject) when it was made;
# status ok or failed; cached: the whole row came from the cache; notes: why a score is missing or doubtful
COLUMNS = ("video", "prompt", "setup", "seed", "amf", "gen", "motion_fidelity", "clip_score", "seconds", "status",
           "error", "model", "frame_range", "cached", "notes", "row")
NUMBERS = ("motion_fidelity", "clip_score", "seconds")


def write_csv(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for r in results:
            writer.writerow({k: "" if r.get(k) is None else r.get(k) for k in COLUMNS})
    return path


def results_json(results: list[dict[str, Any]]) -> str:
    """The rows as one JSON list: what --json prints and --json-out writes."""
    return json.dumps([{k: r.get(k) for k in COLUMNS} for r in results], indent=1)


def write_json(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    return write_text(path, results_json(results) + "\n")


def read_results(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The rows of a batch's --json-out or --csv, numbers as floats and empty cells as None."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"results not found: {path}")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path} is not UTF-8 text (byte {e.start})")
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as e:
            raise InputError(f"{path} is not JSON: {e.msg} (line {e.lineno})")
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise InputError(f"{path} is not a list of result rows (the --json-out of `ditflow batch`)")
    elif path.suffix.lower() == ".csv":
        rows = list(csv.DictReader(text.splitlines()))
    else:
        raise InputError(f"results {path} must be the .json or .csv that `ditflow batch` wrote")
    missing = [c for c in ("setup", "status", "motion_fidelity") if rows and c not in rows[0]]
    if missing:
        raise InputError(f"{path} has no '{missing[0]}' column: is it the output of `ditflow batch`?")
    return [_typed(r) for r in rows]


def _typed(row: dict[str, Any]) -> dict[str, Any]:
    out = {k: (None if v == "" else v) for k, v in row.items()}
    for k in NUMBERS:
        try:
            out[k] = None if out.get(k) is None else float(out[k])
        except (TypeError, ValueError):
            out[k] = None
    return out
