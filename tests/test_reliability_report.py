"""`ditflow report` on ditflow's own output and on broken files: every row is checked before anything is written,
any prompt reads back exactly, and user text is escaped for Markdown and HTML. Tiny files written here; no model."""
from __future__ import annotations

import csv
import html
import json

import pytest

from helpers import one_error_line, run_cli
from ditflow.batch.results import COLUMNS, read_results, write_csv, write_json

H1, H2 = "a" * 64, "0123456789abcdef" * 4
MODEL = "tiny-model"


def row(n: int = 1, **kw) -> dict:
    """One ok result row as the runner makes it."""
    base = {"video": "a.gif", "prompt": "a red circle", "setup": "backbone", "seed": 1, "amf": H1, "gen": H2,
            "motion_fidelity": 0.5, "clip_score": 0.25, "seconds": 12.5, "status": "ok", "error": None,
            "model": MODEL, "frame_range": None, "cached": False, "notes": None, "row": n, "cache": None,
            "image": None, "image_fit": None, "image_digest": None, "temporal_consistency": None, "ftd": None,
            "mf_masked": None, "peak_memory_mb": None}
    return {**base, **kw}


def csv_with(path, column: str, text: str):
    """Two rows written as a batch does, the second with `column` holding the raw cell `text`."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        for r in (row(1), {**row(2), column: text}):
            writer.writerow({k: "" if v is None else v for k, v in r.items()})
    return path


# -- bad cells: exit 2, one line naming file, row and column, nothing written ------------------------------
@pytest.mark.parametrize("column, text", [
    ("motion_fidelity", "nan"), ("motion_fidelity", "inf"), ("motion_fidelity", "1e308"), ("clip_score", "-1e308"),
    ("clip_score", "-inf"), ("motion_fidelity", "high"), ("seconds", "1e308"), ("seconds", "-3"),
    ("amf", "xyz"), ("gen", H2.upper()), ("status", "okay"), ("status", ""), ("seed", "one"), ("cached", "maybe")])
def test_a_bad_csv_cell_is_exit_2_naming_file_row_and_column(column, text, tmp_path, capsys, monkeypatch):
    results = csv_with(tmp_path / "out.csv", column, text)
    code, out, err = run_cli(["report", str(results), "--md", str(tmp_path / "r.md"), "--html", str(tmp_path / "r.html")],
                             capsys, monkeypatch)
    line = one_error_line(err, f"{results} row 2, column {column}: ")
    assert code == 2 and out == "" and "internal error" not in line
    assert not (tmp_path / "r.md").exists() and not (tmp_path / "r.html").exists()


@pytest.mark.parametrize("column, value", [
    ("motion_fidelity", float("nan")), ("clip_score", float("inf")), ("motion_fidelity", 1e308), ("seconds", -1e308),
    ("motion_fidelity", 10 ** 400), ("clip_score", True), ("clip_score", [0.5]), ("amf", 5), ("gen", ["a" * 64]),
    ("amf", {"h": H1}), ("prompt", 7), ("seed", 1.5), ("cached", "yes"), ("status", None)])
def test_a_bad_json_cell_is_exit_2_naming_file_row_and_column(column, value, tmp_path, capsys, monkeypatch):
    results = tmp_path / "out.json"
    results.write_text(json.dumps([row(1), {**row(2), column: value}]))  # NaN and Infinity as JSON literals
    code, out, err = run_cli(["report", str(results), "--md", str(tmp_path / "r.md")], capsys, monkeypatch)
    one_error_line(err, f"{results} row 2, column {column}: ")
    assert code == 2 and out == "" and not (tmp_path / "r.md").exists()


def test_json_nested_too_deeply_is_exit_2(tmp_path, capsys, monkeypatch):
    results = tmp_path / "out.json"
    results.write_text("[" * 100_000 + "]" * 100_000)
    code, _, err = run_cli(["report", str(results)], capsys, monkeypatch)
    assert code == 2 and "nested too deeply" in one_error_line(err)


def test_a_csv_row_with_a_missing_field_is_exit_2(tmp_path, capsys, monkeypatch):
    results = csv_with(tmp_path / "out.csv", "video", "a.gif")
    results.write_text(results.read_text() + "b.gif,only two\n")
    code, _, err = run_cli(["report", str(results)], capsys, monkeypatch)
    assert code == 2 and f"row 3 has 2 fields, its header {len(COLUMNS)}" in one_error_line(err)


# -- what the writer writes, the reader reads exactly ------------------------------------------------------
PROMPTS = ["line\u2028separator and\u2029paragraph", "form\x0cfeed", "two\nlines\r\nthen a\rcarriage return",
           "x" * 200_000, 'quotes " and, commas', "tab\tesc\x1b[2J nel\x85 vt\x0b nul\x00 fs\x1c gs\x1d rs\x1e", "  spaces kept  "]


def test_prompts_round_trip_exactly_through_csv_and_json(tmp_path):
    rows = [row(i + 1, prompt=p, notes=f"note {p[:20]}") for i, p in enumerate(PROMPTS)]
    rows.append(row(len(rows) + 1, status="failed", error="bad | row", amf=None, gen=None, motion_fidelity=None,
                    clip_score=None, seconds=None, cached=None, seed=None, frame_range="0,48,2"))
    limit = csv.field_size_limit()
    assert read_results(write_csv(rows, tmp_path / "out.csv")) == rows
    assert read_results(write_json(rows, tmp_path / "out.json")) == rows
    assert csv.field_size_limit() == limit  # raised for the read only


def test_prompts_with_separators_make_no_phantom_rows(tmp_path, capsys, monkeypatch):
    results = write_csv([row(i + 1, prompt=p) for i, p in enumerate(PROMPTS)], tmp_path / "out.csv")
    code, out, err = run_cli(["report", str(results)], capsys, monkeypatch)
    assert code == 0, err
    assert [ln for ln in out.splitlines() if ln.startswith("## ")] == [f"## {MODEL}"]
    assert "| backbone | 7 |" in out and "failed" not in out


def test_the_writer_never_writes_a_score_its_reader_refuses(tmp_path):
    rows = [row(1, motion_fidelity=float("nan")), row(2, clip_score=float("inf"))]
    for written in (write_csv(rows, tmp_path / "out.csv"), write_json(rows, tmp_path / "out.json")):
        back = read_results(written)
        assert back[0]["motion_fidelity"] is None and "motion_fidelity: not written" in back[0]["notes"]
        assert back[1]["clip_score"] is None and back[1]["motion_fidelity"] == 0.5


# -- escaped for the format: Markdown and HTML --------------------------------------------------------------
EVIL = "<script>alert(1)</script> a|b & c\nnext"


def test_markdown_escapes_pipes_html_and_newlines(tmp_path):
    from markdown_it import MarkdownIt

    from ditflow.batch.report import markdown

    rows = [row(1, setup=EVIL, model=EVIL),
            row(2, status="failed", video=EVIL, prompt=EVIL, error=EVIL, amf=None, gen=None, motion_fidelity=None)]
    text = markdown(read_results(write_csv(rows, tmp_path / "out.csv")))
    assert "<script>" not in text and "&lt;script&gt;" in text and "a\\|b" in text and "c<br>next" in text
    rendered = MarkdownIt("commonmark").enable("table").render(text)
    # renders as the text itself: the setup one cell of its row, the newline a line break
    cell = f"<td>{html.escape(EVIL, quote=False).replace(chr(10), '<br>')}</td>"
    assert "<script>" not in rendered and cell in rendered and rendered.count("<td>") == 12  # 2 rows: setup, runs, 4 metrics


def test_markdown_shows_control_characters_escaped():
    from ditflow.batch.report import md_text

    assert md_text("a\x1b]0;x\x07\x1b[2J\u2028b\x0cc\\d") == "a\\x1b]0;x\\x07\\x1b[2J<br>b\\x0cc\\\\d"


def test_html_page_stays_escaped():
    from ditflow.batch.report_html import page

    rows = [row(1, setup=EVIL, model=EVIL, prompt=EVIL, video=EVIL),
            row(2, status="failed", error=EVIL, prompt=EVIL, motion_fidelity=None)]
    text = page(rows, None)
    assert "<script>" not in text and text.count("&lt;script&gt;alert(1)&lt;/script&gt;") >= 5
