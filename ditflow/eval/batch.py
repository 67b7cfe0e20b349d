"""Batch evaluation from a manifest: CSV with a header `video,reference,prompt`, or JSON lines with those
keys, read by the reader `ditflow batch` uses (ditflow/records.py, below both: one set of rules). Relative paths are
taken from the manifest's folder; hashes name artifacts. A failing row becomes a result with an `error` and the
batch goes on."""
from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from ..errors import DitflowError, InputError
from ..fileio import atomic_file, check_input_file
from ..records import Schema, read_records

COLUMNS = ("video", "reference", "prompt")
RESULT_COLUMNS = ("row", "video", "reference", "prompt", "clip_score", "motion_fidelity", "tracker", "mf_variant", "error",
                  "tracks_video", "tracks_reference", "mf_masked", "temporal_consistency", "temporal_consistency_first",
                  "ftd", "ftd_foreground", "ftd_background")


@dataclass
class Row:
    index: int  # 1-based: the record's place in the manifest
    video: str
    reference: str | None
    prompt: str | None


def read_manifest(path: str | os.PathLike) -> list[Row]:
    """Rows of a .csv or .jsonl manifest; raises InputError for a missing file or a bad header/line."""
    path = check_input_file(path, "manifest")
    if path.suffix.lower() not in (".csv", ".jsonl", ".ndjson"):
        raise InputError(f"manifest {path} must be .csv (header video,reference,prompt) or .jsonl")
    records, _ = read_records(path, Schema(COLUMNS, required=("video",)))
    return [Row(i, _text(rec.fields.get("video")) or "", _text(rec.fields.get("reference")), _text(rec.fields.get("prompt")))
            for i, rec in enumerate(records, start=1)]


def _text(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


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
