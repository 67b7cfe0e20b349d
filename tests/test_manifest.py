"""Manifest reading (ditflow/records.py), the same for `batch` and `eval --manifest`: a malformed file is
refused with exit 2 and one `error: path:line[:column]: ...` line, a valid one is read exactly, and a grid too
large is refused from its list lengths before any run is built. Tiny files written here; no model loads."""
from __future__ import annotations

import json
import time

import pytest

from helpers import one_error_line, run_cli
from ditflow.batch.manifest import MAX_ROWS, read_manifest
from ditflow.errors import InputError
from ditflow.eval.batch import read_manifest as read_eval_manifest

BOTH = ["batch", "eval"]


def refused(command: str, path, capsys, monkeypatch) -> str:
    """`ditflow batch|eval --manifest PATH`: exit 2 and stderr's one error line, returned."""
    args = ["batch", str(path), "--model", "toy"] if command == "batch" else ["eval", "--manifest", str(path)]
    code, out, err = run_cli(args, capsys, monkeypatch)
    assert code == 2 and out == "", (code, err)
    return one_error_line(err)


def write(tmp_path, name: str, text: str, encoding: str = "utf-8"):
    path = tmp_path / name
    path.write_bytes(text.encode(encoding))
    return path


def runs(path):
    return read_manifest(path, setups=["backbone"], seeds=[1]).runs


@pytest.fixture
def video(tmp_path):
    (tmp_path / "v.mp4").write_bytes(b"")  # batch rows check only that the file exists
    return "v.mp4"


# -- CSV ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command", BOTH)
def test_unquoted_comma_is_refused_naming_line_and_column(tmp_path, capsys, monkeypatch, no_model, command):
    path = write(tmp_path, "m.csv", "video,prompt\nv.mp4,a cat, running fast\n")
    line = refused(command, path, capsys, monkeypatch)
    assert line.startswith(f"error: {path}:2:13: 3 fields, but the header has 2 (video,prompt); quote a value")


@pytest.mark.parametrize("command", BOTH)
@pytest.mark.parametrize("text", ['video,prompt\nv.mp4,x\nv.mp4,"a cat\nv.mp4,a dog\nv.mp4,a cow\n',
                                  'video,prompt\nv.mp4,x\nv.mp4,"a cat'])
def test_unclosed_quote_is_refused_at_the_line_it_opens(tmp_path, capsys, monkeypatch, no_model, command, text):
    path = write(tmp_path, "m.csv", text)
    line = refused(command, path, capsys, monkeypatch)
    assert line == f"error: {path}:3:7: a quote opened here is not closed on its line (a field cannot span lines)"


def test_text_after_a_closing_quote_is_refused(tmp_path, capsys, monkeypatch, no_model):
    path = write(tmp_path, "m.csv", 'video,prompt\nv.mp4,"a cat" running\n')
    assert refused("batch", path, capsys, monkeypatch).startswith(f"error: {path}:2:14: not valid CSV")


@pytest.mark.parametrize("command", BOTH)
@pytest.mark.parametrize("header", ["video,prompt,prompt", "video,prompt,Prompt "])
def test_duplicated_csv_column_is_refused(tmp_path, capsys, monkeypatch, no_model, command, header):
    path = write(tmp_path, "m.csv", f"{header}\nv.mp4,a,b\n")
    line = refused(command, path, capsys, monkeypatch)
    assert line == f"error: {path}:1:14: field 'prompt' given twice (columns 2 and 3)"


def test_value_under_an_unnamed_column_is_refused_and_empty_ones_are_ignored(tmp_path, video):
    with pytest.raises(InputError, match=r"m\.csv:2:9: a value in column 3, which the header does not name"):
        runs(write(tmp_path, "m.csv", "video,prompt,\nv.mp4,x,y\n"))
    read = runs(write(tmp_path, "excel.csv", "video,prompt,,\r\nv.mp4,x,,\r\n,,,\r\n"))  # Excel's trailing commas
    assert [(r.video, r.prompt, r.error) for r in read] == [("v.mp4", "x", None)]


@pytest.mark.parametrize("command", BOTH)
def test_csv_with_a_bom_is_read(tmp_path, command):
    path = write(tmp_path, "m.csv", "\ufeffvideo,prompt\r\nv.mp4,a cat\r\n")
    if command == "batch":
        assert [(r.video, r.prompt) for r in runs(path)] == [("v.mp4", "a cat")]
    else:
        assert [(r.video, r.prompt) for r in read_eval_manifest(path)] == [("v.mp4", "a cat")]


def test_quoted_comma_and_quotes_are_read_exactly(tmp_path, video):
    path = write(tmp_path, "m.csv", 'video,prompt\nv.mp4,"a cat, running fast"\nv.mp4,"a ""red"" ball"\n')
    assert [r.prompt for r in runs(path)] == ["a cat, running fast", 'a "red" ball']
    assert [r.prompt for r in read_eval_manifest(path)] == ["a cat, running fast", 'a "red" ball']


def test_not_utf8_names_the_line(tmp_path, capsys, monkeypatch, no_model):
    path = write(tmp_path, "m.csv", "video,prompt\nv.mp4,caf\xe9\n", encoding="latin-1")
    assert refused("eval", path, capsys, monkeypatch).startswith(f"error: {path}:2:10: not UTF-8 text")


# -- JSON lines ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("command, why", [("batch", "is an empty list, which makes no run"),
                                          ("eval", "takes one value, not a list")])
def test_empty_list_is_refused_naming_field_and_line(tmp_path, capsys, monkeypatch, no_model, command, why):
    path = write(tmp_path, "m.jsonl", '{"video": "v.mp4", "prompt": "x"}\n{"video": [], "prompt": "x"}\n')
    assert refused(command, path, capsys, monkeypatch).startswith(f"error: {path}:2: field 'video' {why}")


@pytest.mark.parametrize("command", BOTH)
@pytest.mark.parametrize("record", ['{"video": "v.mp4", "prompt": "a", "prompt": "b"}',
                                    '{"video": "v.mp4", "Prompt": "a", "prompt": "b"}'])
def test_duplicated_json_key_is_refused(tmp_path, capsys, monkeypatch, no_model, command, record):
    path = write(tmp_path, "m.jsonl", record + "\n")
    assert refused(command, path, capsys, monkeypatch) == f"error: {path}:1: field 'prompt' given twice"


def test_raw_line_separator_inside_a_json_string_is_read_exactly(tmp_path, video):
    prompt = "a cat\u2028running\u2029fast\x85now"  # str.splitlines() would split this line in four
    path = write(tmp_path, "m.jsonl", "\ufeff" + json.dumps({"video": "v.mp4", "prompt": prompt}, ensure_ascii=False)
                 + "\r\n\n")
    assert [(r.prompt, r.error) for r in runs(path)] == [(prompt, None)]
    assert [r.prompt for r in read_eval_manifest(path)] == [prompt]


@pytest.mark.parametrize("text, what", [('{"video": "v.mp4", "prompt": "x"\n', ":1:33: not JSON: Expecting ',' delimiter"),
                                        ('["v.mp4", "x"]\n', ":1: not a JSON object"),
                                        ('{"video": "v.mp4", "prompt": {"a": 1}}\n', ":1: field 'prompt' must be a string"),
                                        ('{"video": "v.mp4", "prompt": ["x", null]}\n', ":1: field 'prompt' must be a list of")])
def test_malformed_json_line_is_refused(tmp_path, capsys, monkeypatch, no_model, text, what):
    path = write(tmp_path, "m.jsonl", text)
    assert refused("batch", path, capsys, monkeypatch).startswith(f"error: {path}{what}")


# -- both formats, both commands: unknown and missing fields --------------------------------------------------
@pytest.mark.parametrize("command", BOTH)
@pytest.mark.parametrize("name, text, where", [
    ("m.csv", "video,prompt,colour\nv.mp4,x,red\n", ":1:14: unknown field 'colour' in the header line (known: "),
    ("m.jsonl", '{"video": "v.mp4", "prompt": "x", "colour": "red"}\n', ":1: unknown field 'colour' (known: "),
])
def test_unknown_field_is_refused_by_batch_and_eval_alike(tmp_path, capsys, monkeypatch, no_model, command, name, text, where):
    path = write(tmp_path, name, text)
    known = "video, prompt, setup, seed, frame_range, image, image_fit" if command == "batch" else "video, reference, prompt"
    assert refused(command, path, capsys, monkeypatch) == f"error: {path}{where}{known})"


@pytest.mark.parametrize("command", BOTH)
def test_record_without_a_video_is_refused(tmp_path, capsys, monkeypatch, no_model, command):
    path = write(tmp_path, "m.jsonl", '{"prompt": "x"}\n')
    assert refused(command, path, capsys, monkeypatch).startswith(f"error: {path}:1: record has no 'video'")


# -- TOML ---------------------------------------------------------------------------------------------------
def test_duplicated_toml_key_is_refused(tmp_path, capsys, monkeypatch, no_model):
    path = write(tmp_path, "m.toml", 'video = "v.mp4"\nprompt = "a"\nprompt = "b"\n')
    line = refused("batch", path, capsys, monkeypatch)
    assert line == f"error: {path}:3:13: not valid TOML: Cannot overwrite a value (a key or table given twice)"


def test_empty_toml_list_is_refused_naming_the_table(tmp_path, capsys, monkeypatch, no_model):
    path = write(tmp_path, "m.toml", '[[run]]\nvideo = "v.mp4"\nprompt = "x"\n[[run]]\nvideo = "v.mp4"\nprompt = []\n')
    line = refused("batch", path, capsys, monkeypatch)
    assert line.startswith(f"error: {path}: [[run]] 2: field 'prompt' is an empty list")


def test_toml_with_a_bom_is_read(tmp_path, video):
    path = write(tmp_path, "m.toml", '\ufeffvideo = "v.mp4"\nprompt = ["a, b", "c\u2028d"]\n')
    assert [r.prompt for r in runs(path)] == ["a, b", "c\u2028d"]


def test_huge_grid_is_refused_before_any_run_is_built(tmp_path, capsys, monkeypatch, no_model):
    def items(prefix: str) -> str:
        return ", ".join(f'"{prefix}{i}"' for i in range(1000))

    path = write(tmp_path, "m.toml", f"video = [{items('v')}]\nprompt = [{items('p')}]\nseed = [{', '.join(map(str, range(1000)))}]\n")
    monkeypatch.setattr("ditflow.batch.manifest._run", lambda *a: pytest.fail("a run was built"))
    began = time.perf_counter()
    line = refused("batch", path, capsys, monkeypatch)
    assert time.perf_counter() - began < 1.0
    assert line.startswith(f"error: {path}: the top-level keys: this record makes 1,000,000,000 runs (1000 videos × "
                           "1000 prompts × 1 setup × 1000 seeds)")
    assert f"at most MAX_ROWS = {MAX_ROWS:,} runs" in line


def test_grid_limit_counts_every_record(tmp_path, video):
    half = MAX_ROWS // 2 + 1
    record = json.dumps({"video": "v.mp4", "prompt": "x", "seed": list(range(half))})
    with pytest.raises(InputError, match=rf"m\.jsonl:2: this record makes {half:,} runs .* {2 * half:,} so far"):
        runs(write(tmp_path, "m.jsonl", f"{record}\n{record}\n"))
