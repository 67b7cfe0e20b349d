"""Batch evaluation from a manifest: CSV with a header `video,reference,prompt`, or JSON lines with those
keys. Relative paths are taken from the manifest's folder; hashes name artifacts. A failing row becomes
a result with an `error` and the batch goes on."""
from __future__ import annotations

import csv
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import DitflowError, InputError
from ..fileio import atomic_file

COLUMNS = ("video", "reference", "prompt")
RESULT_COLUMNS = ("row", "video", "reference", "prompt", "clip_score", "motion_fidelity", "tracker", "mf_variant", "error",
                  "tracks_video", "tracks_reference")


@dataclass
class Row:
    index: int  # 1-based line of data in the manifest
    video: str
    reference: str | None
    prompt: str | None


def read_manifest(path: str | os.PathLike) -> list[Row]:
    """Rows of a .csv or .jsonl manifest; raises InputError for a missing file or a bad header/line."""
    path = Path(path)
    if not path.is_file():
        raise InputError(f"manifest not found: {path}")
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise InputError(f"manifest {path} must be .csv (header video,reference,prompt) or .jsonl")
    rows = [Row(i, rec.get("video") or "", rec.get("reference") or None, rec.get("prompt") or None)
            for i, rec in enumerate(read_records(path, COLUMNS), start=1)]
    if not rows:
        raise InputError(f"manifest {path} has no rows")
    return rows


def read_records(path: Path, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    """The records of a .csv (with a header naming at least a 'video' column of `columns`) or .jsonl
    manifest, keys lower-cased and string values stripped: the reading `eval --manifest` and `batch` share."""
    records = _csv_records(path, columns) if path.suffix.lower() == ".csv" else _jsonl_records(path)
    return [{k.strip().lower(): (v.strip() if isinstance(v, str) else v) for k, v in rec.items() if k} for rec in records]


def _csv_records(path: Path, columns: tuple[str, ...] = COLUMNS) -> list[dict[str, Any]]:
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            if not reader.fieldnames or "video" not in [n.strip().lower() for n in reader.fieldnames]:
                raise InputError(f"manifest {path} needs a header line with at least a 'video' column ({','.join(columns)})")
            return list(reader)
    except UnicodeDecodeError as e:
        raise InputError(f"manifest {path} is not UTF-8 text (byte {e.start}); save it as UTF-8")


def _jsonl_records(path: Path) -> list[dict[str, Any]]:
    records = []
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"manifest {path} is not UTF-8 text (byte {e.start}); save it as UTF-8")
    for n, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as e:
            raise InputError(f"manifest {path} line {n} is not JSON: {e.msg}")
        if not isinstance(rec, dict):
            raise InputError(f"manifest {path} line {n} is not a JSON object")
        records.append(rec)
    return records


def run_rows(rows: list[Row], score_row: Callable[[Row], dict[str, Any]], on_result: Callable[[dict], None] | None = None) -> list[dict[str, Any]]:
    """score_row on every row; any error in one row is kept as its `error` and the rest go on."""
    results = []
    for row in rows:
        base = {"row": row.index, "video": row.video, "reference": row.reference, "prompt": row.prompt}
        try:
            if not row.video:
                raise InputError("row has no video")
            result = {**base, **score_row(row), "error": None}
        except DitflowError as e:
            result = {**base, **_failed(str(e))}
        except Exception as e:  # one broken file must not lose the rest of a long batch
            result = {**base, **_failed(f"{type(e).__name__}: {e}")}
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


def _failed(message: str) -> dict[str, Any]:
    return {"clip_score": None, "motion_fidelity": None, "tracker": None, "error": (message.splitlines() or [""])[0]}


def write_csv(results: list[dict[str, Any]], path: str | os.PathLike) -> Path:
    """The result columns (plus `unavailable` reasons and `warnings`, each joined into one cell) as CSV,
    written atomically."""
    path = Path(path)
    with atomic_file(path) as tmp, open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=[*RESULT_COLUMNS, "unavailable", "warnings"], extrasaction="ignore")
        writer.writeheader()
        for r in results:
            notes = "; ".join(f"{k}: {v}" for k, v in (r.get("unavailable") or {}).items())
            tracks = r.get("tracks") or {}
            writer.writerow({**{k: r.get(k) for k in RESULT_COLUMNS}, "tracks_video": tracks.get("video"),
                             "tracks_reference": tracks.get("reference"), "unavailable": notes,
                             "warnings": "; ".join(r.get("warnings") or [])})
    return path
