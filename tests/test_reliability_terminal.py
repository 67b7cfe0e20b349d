"""User strings on the terminal: a prompt or file name holding escape sequences (retitle, clear screen) is printed
escaped by `cache ls`, the batch progress and `report`, all through `fileio.printable`. No model loads."""
from __future__ import annotations

import os

import pytest

from helpers import one_error_line, run_cli
from ditflow.fileio import printable
from ditflow.store import Store, content_key

EVIL = "\x1b]0;x\a\x1b[2J"  # retitles the terminal (OSC 0 ... BEL), then clears it (CSI 2J)
SHOWN = "\\x1b]0;x\\x07\\x1b[2J"


def assert_no_raw_controls(text: str) -> None:
    assert not any(c in text for c in "\x1b\x07\x9b\u2028\u2029"), repr(text)


@pytest.mark.parametrize("raw, shown", [
    (EVIL, SHOWN), ("a\nb\r\tc", "a\\nb\\r\\tc"), ("\x00\x7f\x85\x9b", "\\x00\\x7f\\x85\\x9b"),
    ("line\u2028para\u2029", "line\\u2028para\\u2029"), ("\u202eevil\u2066", "\\u202eevil\\u2066"),
    (os.fsdecode(b"bad-\xff.gif"), "bad-\\xff.gif"), ("\ud800", "\\ud800")])
def test_printable_escapes_control_characters_and_undecodable_bytes(raw, shown):
    assert printable(raw) == shown and printable(shown) == shown  # idempotent: escaping twice changes nothing


def test_printable_keeps_ordinary_text():
    text = "C:\\videos\\a b.gif — é 漢字 👩\u200d👩\u200d👧 [bold]x[/]"
    assert printable(text) == text and printable(3) == "3"


def test_cache_ls_prints_prompts_and_sources_escaped(tmp_path, capsys, monkeypatch):
    store = Store(tmp_path / "cache")
    gen = {"prompt": EVIL + " prompt", "seed": 1, "guidance": True, "opt_mode": "latent"}
    with store.writer(content_key("gen", gen), "gen", gen) as folder:
        (folder / "data.bin").write_bytes(b"x")
    amf = {"name": "a"}
    with store.writer(content_key("amf", amf), "amf", amf, extra={"source": EVIL + ".gif"}) as folder:
        (folder / "data.bin").write_bytes(b"x")
    code, out, err = run_cli(["cache", "ls", "--cache", str(tmp_path / "cache")], capsys, monkeypatch)
    assert code in (0, None), err
    assert_no_raw_controls(out + err)
    assert f"{SHOWN} prompt" in out and f"{SHOWN}.gif" in out


def test_batch_progress_lines_are_escaped(tmp_path, monkeypatch, capsys):
    from ditflow.batch import BatchSettings, Run, run_batch
    from ditflow.config import RuntimeOptions

    monkeypatch.setattr("ditflow.batch.preflight", lambda settings, runs: settings)  # no model: the rows fail early
    runs = [Run(1, EVIL + ".gif", "v.gif", EVIL, "[bold]setup[/x]", 1, error="cannot read " + EVIL)]
    settings = BatchSettings(cache=str(tmp_path / "cache"), runtime=RuntimeOptions(device="cpu"))
    results = run_batch(runs, settings)
    err = capsys.readouterr().err
    assert results[0]["status"] == "failed"
    assert_no_raw_controls(err)
    assert f"row 1 failed ({SHOWN}.gif | [bold]setup[/x] | seed 1): cannot read {SHOWN}" in " ".join(err.split())


def test_report_prints_paths_tables_and_errors_escaped(tmp_path, capsys, monkeypatch):
    from ditflow.batch.results import write_csv

    results = write_csv([{"video": EVIL, "prompt": EVIL, "setup": EVIL, "seed": 1, "status": "ok", "model": EVIL,
                          "motion_fidelity": 0.5, "row": 1}], tmp_path / "out.csv")
    code, out, err = run_cli(["report", str(results)], capsys, monkeypatch)  # the Markdown on stdout
    assert code in (0, None) and out.startswith(f"## {SHOWN}\n"), err
    assert_no_raw_controls(out + err)
    md = tmp_path / f"r{EVIL}.md"
    code, out, err = run_cli(["report", str(results), "--md", str(md)], capsys, monkeypatch)
    assert code in (0, None) and out == f"{tmp_path}/r{SHOWN}.md\n" and md.is_file(), err
    code, out, err = run_cli(["report", str(tmp_path / f"gone{EVIL}.csv")], capsys, monkeypatch)
    assert code == 2 and f"gone{SHOWN}.csv" in one_error_line(err, "results not found")
    assert_no_raw_controls(out + err)
