"""The records of a manifest (.csv, .jsonl, .toml) as {field: value}, read exactly or refused: one reader, and
one set of rules, for `ditflow batch` and `ditflow eval --manifest` (so it sits below both: batch imports eval).
A refusal is an InputError (exit 2) that starts `path:line[:column]:` (a TOML record, which tomllib gives no
line, is named `[[run]] N` instead).

- UTF-8 text, with or without a BOM (Excel writes one). Field names are case-insensitive; names and string
  values are stripped of surrounding whitespace.
- A field the schema does not know, a field given twice, a record without a required field: refused.
- A value is a string, a number, a boolean or null (null or "": not given); a list only in the schema's list
  fields, of such scalars, and never empty (it would make no run).
- CSV: the first line is the header, then one record per line. More fields than the header (an unquoted
  comma) or a quote left open (a field cannot span lines) is refused; fewer leave the rest empty. Blank
  lines, and lines of empty fields only, are skipped.
- JSONL: one object per line, split on \\n only, so a raw U+2028 inside a string is part of it.
- TOML: the top-level keys are one record, each [[run]] table one more; the schema's `tables` (batch: the
  [setups.NAME] tables) are returned aside.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import InputError

SCALARS = (str, int, float, bool)


@dataclass(frozen=True)
class Schema:
    columns: tuple[str, ...]  # the fields a record may have, in the order messages list them
    required: tuple[str, ...] = ()  # the fields every record must have
    lists: tuple[str, ...] = ()  # the fields that may hold a list
    tables: tuple[str, ...] = ()  # TOML top-level tables that are not records


@dataclass(frozen=True)
class Record:
    fields: dict[str, Any]
    where: str  # "runs.csv:3", "runs.toml: [[run]] 2": what this record's errors start with

    def error(self, what: str) -> InputError:
        return InputError(f"{self.where}: {what}")


def read_records(path: Path, schema: Schema) -> tuple[list[Record], dict[str, Any]]:
    """(the records in file order, checked against `schema`; the schema's TOML tables by name)."""
    text = _text(path)
    suffix = path.suffix.lower()
    tables: dict[str, Any] = {}
    if suffix == ".csv":
        raw = _csv_records(path, text, schema)
    elif suffix in (".jsonl", ".ndjson"):
        raw = _jsonl_records(path, text)
    elif suffix == ".toml":
        raw, tables = _toml_records(path, text, schema)
    else:
        raise InputError(f"{path}: a manifest is .csv, .jsonl or .toml")
    records = [_checked(r, schema) for r in raw]
    if not records:
        raise InputError(f"{path}: the manifest has no rows")
    return records, tables


def _text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read manifest {path}: {e.strerror or e}")
    if data.startswith(codecs.BOM_UTF8):
        data = data[len(codecs.BOM_UTF8):]
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        column = e.start - (data.rfind(b"\n", 0, e.start) + 1) + 1
        raise InputError(f"{path}:{line}:{column}: not UTF-8 text (byte {e.start}); save the manifest as UTF-8")


# -- checks every format shares ---------------------------------------------------------------------------
def _checked(rec: Record, schema: Schema) -> Record:
    fields: dict[str, Any] = {}
    for key, value in rec.fields.items():
        name = key.strip().lower()
        if name in fields:
            raise rec.error(f"field '{name}' given twice")
        if name not in schema.columns:
            raise rec.error(f"unknown field '{name}' (known: {', '.join(schema.columns)})")
        fields[name] = _value(rec, name, value, schema)
    for name in schema.required:
        if name not in fields:
            raise rec.error(f"record has no '{name}' (fields: {', '.join(schema.columns)})")
    return Record(fields, rec.where)


def _value(rec: Record, name: str, value: Any, schema: Schema) -> Any:
    if isinstance(value, str):
        return value.strip()
    if value is None or isinstance(value, SCALARS):
        return value
    if isinstance(value, list) and name in schema.lists:
        if not value:
            raise rec.error(f"field '{name}' is an empty list, which makes no run; give it a value")
        if not all(isinstance(v, SCALARS) for v in value):
            raise rec.error(f"field '{name}' must be a list of strings or numbers")
        return [v.strip() if isinstance(v, str) else v for v in value]
    if isinstance(value, list):
        raise rec.error(f"field '{name}' takes one value, not a list")
    kind = "an object" if isinstance(value, dict) else f"a {type(value).__name__}"
    raise rec.error(f"field '{name}' must be a string or a number, not {kind}")


# -- CSV ----------------------------------------------------------------------------------------------------
def _csv_records(path: Path, text: str, schema: Schema) -> list[Record]:
    lines = io.StringIO(text, newline="").readlines()  # the lines as csv counts them
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] | None = None
    records: list[Record] = []
    start = 1  # the line the next row starts on
    while True:
        try:
            row = next(reader, None)
        except csv.Error as e:
            raise _csv_error(path, lines, start, reader.line_num, str(e))
        if row is None:
            break
        if reader.line_num > start:  # a quoted field held a line break: in a manifest, a quote left open
            raise _csv_error(path, lines, start, reader.line_num, "")
        line, start = start, reader.line_num + 1
        if not any(cell.strip() for cell in row):
            continue
        if header is None:
            header = _csv_header(path, line, lines[line - 1], row, schema)
            continue
        records.append(_csv_record(path, line, lines[line - 1], header, row))
    return records


def _csv_header(path: Path, line: int, text: str, row: list[str], schema: Schema) -> list[str]:
    names = [cell.strip().lower() for cell in row]
    for i, name in enumerate(names):
        where = f"{path}:{line}:{_column(text, i)}"
        if name and name not in schema.columns:
            raise InputError(f"{where}: unknown field '{name}' in the header line (known: {', '.join(schema.columns)})")
        if name and name in names[:i]:
            raise InputError(f"{where}: field '{name}' given twice (columns {names.index(name) + 1} and {i + 1})")
    for name in schema.required:
        if name not in names:
            raise InputError(f"{path}:{line}: the header line has no '{name}' (fields: {', '.join(schema.columns)})")
    return names


def _csv_record(path: Path, line: int, text: str, header: list[str], row: list[str]) -> Record:
    if len(row) > len(header):
        raise InputError(f"{path}:{line}:{_column(text, len(header))}: {len(row)} fields, but the header has "
                         f"{len(header)} ({','.join(header)}); quote a value that holds a comma (\"a cat, running\")")
    for i, (name, cell) in enumerate(zip(header, row)):
        if not name and cell.strip():
            raise InputError(f"{path}:{line}:{_column(text, i)}: a value in column {i + 1}, which the header does not name")
    cells = row + [""] * (len(header) - len(row))
    return Record({name: cell for name, cell in zip(header, cells) if name}, f"{path}:{line}")


def _column(text: str, field: int) -> int:
    """The 1-based column where field number `field` (from 0) of a CSV line starts; scanned only for an error."""
    starts = _scan(text)[0]
    return starts[field] if field < len(starts) else 1


def _csv_error(path: Path, lines: list[str], start: int, end: int, reason: str) -> InputError:
    """A quote left open names the line and column where it opens; any other CSV error the line it is on."""
    opened = _scan(lines[start - 1])[1] if start <= len(lines) else None
    if opened is not None and (end > start or "end of data" in reason):
        return InputError(f"{path}:{start}:{opened}: a quote opened here is not closed on its line "
                          "(a field cannot span lines)")
    bad = lines[end - 1] if 0 < end <= len(lines) else ""
    stray = _scan(bad)[2]
    return InputError(f"{path}:{end}{f':{stray}' if stray else ''}: not valid CSV: {reason}")


def _scan(text: str) -> tuple[list[int], int | None, int | None]:
    """One CSV line as the csv module reads it (strict, '"' quoting): (the 1-based column where each field
    starts, the column of a quote left open at its end, the column of a character after a closing quote)."""
    starts, state, opened = [1], "start", None
    for i, ch in enumerate(text.rstrip("\r\n"), start=1):
        if state == "quoted":
            state = "closing" if ch == '"' else "quoted"
        elif state == "closing" and ch == '"':  # a doubled quote: one literal '"'
            state = "quoted"
        elif ch == ",":
            starts.append(i + 1)
            state = "start"
        elif state == "closing":
            return starts, None, i
        elif state == "start" and ch == '"':
            state, opened = "quoted", i
        else:
            state = "plain"
    return starts, opened if state == "quoted" else None, None


# -- JSON lines ---------------------------------------------------------------------------------------------
class _Repeated(Exception):
    pass


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    obj: dict[str, Any] = {}
    for key, value in pairs:
        if key in obj:  # json.loads would keep the last silently
            raise _Repeated(key)
        obj[key] = value
    return obj


def _jsonl_records(path: Path, text: str) -> list[Record]:
    records = []
    for n, line in enumerate(text.split("\n"), start=1):  # not splitlines(): it also splits on U+2028, \x0c ...
        if not line.strip(" \t\r"):
            continue
        try:
            obj = json.loads(line, object_pairs_hook=_object)
        except json.JSONDecodeError as e:
            raise InputError(f"{path}:{n}:{e.colno}: not JSON: {e.msg}")
        except _Repeated as e:
            raise InputError(f"{path}:{n}: field '{e.args[0]}' given twice")
        except ValueError as e:  # e.g. an integer too long to convert
            raise InputError(f"{path}:{n}: not JSON: {e}")
        if not isinstance(obj, dict):
            raise InputError(f"{path}:{n}: not a JSON object ({{\"video\": ..., \"prompt\": ...}})")
        records.append(Record(obj, f"{path}:{n}"))
    return records


# -- TOML ---------------------------------------------------------------------------------------------------
def _toml_records(path: Path, text: str, schema: Schema) -> tuple[list[Record], dict[str, Any]]:
    import tomllib

    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        message = str(e).splitlines()[0]
        at = re.search(r"\s*\(at line (\d+), column (\d+)\)$", message)
        where = f"{path}:{at[1]}:{at[2]}" if at else str(path)
        reason = message[: at.start()] if at else message
        hint = " (a key or table given twice)" if reason == "Cannot overwrite a value" else ""
        raise InputError(f"{where}: not valid TOML: {reason}{hint}")
    tables = {name: data.pop(name) for name in schema.tables if name in data}
    runs = data.pop("run", [])
    if not isinstance(runs, list) or not all(isinstance(r, dict) for r in runs):
        raise InputError(f"{path}: 'run' must be [[run]] tables")
    records = [Record(data, f"{path}: the top-level keys")] if data else []
    return records + [Record(r, f"{path}: [[run]] {i}") for i, r in enumerate(runs, start=1)], tables
