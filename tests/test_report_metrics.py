"""Issue 44's columns in batch rows and `ditflow report`: the peers' metrics (temporal consistency, FTD, masked MF)
and each generation's seconds and peak memory. Results rows written by hand here; one real tiny batch checks that
a gen artifact records its peak memory, that `cache show` prints it and that the row carries it."""
from __future__ import annotations

import ast
import csv
import json
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from helpers import cli, put, run_cli
from ditflow.batch.results import COLUMNS, read_results, write_csv, write_json

ROOT = Path(__file__).resolve().parent.parent
NEW = ("temporal_consistency", "ftd", "mf_masked", "peak_memory_mb")
SETUPS = ("backbone", "ditflow-latent", "ditflow-emb")


def row(n: int, setup: str = "backbone", model: str = "toy", **kw) -> dict:
    base = {"video": "a.gif", "prompt": "a red circle", "setup": setup, "seed": n, "amf": "a" * 64, "gen": "b" * 64,
            "motion_fidelity": 0.5, "clip_score": 0.25, "seconds": 10.0, "status": "ok", "model": model, "row": n,
            "temporal_consistency": 0.9, "ftd": 3.5, "mf_masked": 0.4, "peak_memory_mb": 1200.0}
    return {**base, **kw}


def three_setups() -> list[dict]:
    """Two runs of each of three setups, the slower setups scoring higher."""
    return [row(2 * i + k + 1, s, motion_fidelity=0.3 + 0.2 * i + 0.01 * k, seconds=5.0 * (i + 1) + k,
                temporal_consistency=0.8 + 0.05 * i, ftd=4.0 - i, mf_masked=0.2 + 0.2 * i, peak_memory_mb=1000.0 + 100 * i)
            for i, s in enumerate(SETUPS) for k in range(2)]


# -- results files ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("writer", [write_csv, write_json])
def test_new_columns_round_trip_through_csv_and_json(writer, tmp_path):
    rows = three_setups()
    back = read_results(writer(rows, tmp_path / f"out.{'csv' if writer is write_csv else 'json'}"))
    assert COLUMNS[-4:] == NEW
    assert [{k: r[k] for k in NEW} for r in back] == [{k: r[k] for k in NEW} for r in rows]


def test_a_results_file_from_before_the_new_columns_reads_with_them_empty(tmp_path, capsys, monkeypatch):
    old = [c for c in COLUMNS if c not in NEW]
    rows = [{k: v for k, v in row(n).items() if k not in NEW} for n in (1, 2)]
    with open(tmp_path / "old.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=old, restval="")
        writer.writeheader()
        writer.writerows(rows)
    (tmp_path / "old.json").write_text(json.dumps(rows))
    for name in ("old.csv", "old.json"):
        back = read_results(tmp_path / name)
        assert all(r[k] is None for r in back for k in NEW) and back[0]["motion_fidelity"] == 0.5
        code, out, _ = run_cli(["report", str(tmp_path / name)], capsys, monkeypatch)
        header = next(line for line in out.splitlines() if line.startswith("| setup"))
        # the peers' metrics no row has are left out; peak memory stays, empty
        assert code == 0 and "peak MB" in header and "FTD" not in header and "| — |" in out


@pytest.mark.parametrize("column, value", [("temporal_consistency", 1.5), ("ftd", -1), ("mf_masked", -3),
                                           ("peak_memory_mb", float("nan")), ("ftd", "far")])
def test_a_bad_new_cell_is_exit_2_naming_its_column(column, value, tmp_path, capsys, monkeypatch):
    results = tmp_path / "out.json"
    results.write_text(json.dumps([row(1), row(2, **{column: value})]))
    code, _, err = run_cli(["report", str(results)], capsys, monkeypatch)
    assert code == 2 and f"row 2, column {column}: " in err


# -- the report ---------------------------------------------------------------------------------------------
def test_report_table_has_the_setups_as_rows_and_every_metric_as_columns(tmp_path, capsys, monkeypatch):
    results = write_json(three_setups() + [row(9, "backbone", model="other", temporal_consistency=None, ftd=None,
                                                mf_masked=None)], tmp_path / "out.json")
    code, out, _ = run_cli(["report", str(results)], capsys, monkeypatch)
    toy, other = out.split("## other")
    header = [c.strip() for c in toy.splitlines()[2].split("|")[1:-1]]
    assert code == 0 and header == ["setup", "runs", "MF", "masked MF", "CLIP score", "temporal consistency", "FTD",
                                    "s / video", "peak MB"]
    body = [[c.strip() for c in line.split("|")[1:-1]] for line in toy.splitlines()[4:7]]
    assert [b[0] for b in body] == list(SETUPS) and all(b[1] == "2" for b in body)
    emb = dict(zip(header, body[2]))  # mean ± t(1) * stdev / sqrt(2): 12.706 * 0.5 for the seconds 15 and 16
    assert emb["s / video"] == "15.5 ± 6.4" and emb["peak MB"] == "1200 ± 0" and emb["FTD"] == "2.00 ± 0.00"
    assert "temporal consistency" not in other.splitlines()[2] and "peak MB" in other.splitlines()[2]


def test_html_page_has_the_mf_per_seconds_plot_with_a_ring_per_setup(tmp_path):
    from ditflow.batch.report_html import page

    text = page(three_setups(), None)
    assert text.count("<svg") == 2 and "aria-label='MF against seconds per video'" in text
    speed = text[text.index("aria-label='MF against seconds per video'"):]
    assert speed.count("r='8' fill='none'") == len(SETUPS) and "<th>temporal consistency</th>" in text
    assert "http://" not in text.replace("http://www.w3.org/2000/svg", "") and "https://" not in text
    no_seconds = page([{**r, "seconds": None} for r in three_setups()], None)
    assert no_seconds.count("<svg") == 1 and "No row has both MF and seconds per video" in no_seconds


# -- the runner fills the columns from the evaluation ----------------------------------------------------------
def test_a_rows_scores_come_from_the_eval_result_and_its_stored_record(store, monkeypatch):
    from ditflow.batch import runner
    from ditflow.eval import EvalSettings

    class Evaluator:
        def __init__(self, result):
            self.result = result

        def score(self, video, reference, prompt):
            return self.result

    frames = np.zeros((2, 4, 4, 3), np.uint8)
    amf = SimpleNamespace(hash=put(store, "amf"), frames=frames)
    gen = SimpleNamespace(hash=put(store, "gen"), frames=frames)
    result = {"motion_fidelity": 0.5, "clip_score": None, "temporal_consistency": 0.9, "ftd": 2.5, "ftd_foreground": 1.0,
              "unavailable": {"clip_score": "no weights"}}
    monkeypatch.setattr(runner, "_evaluator", lambda settings: Evaluator(result))
    first = runner.score(store, amf, gen, "a red circle", EvalSettings())
    again = runner.score(store, amf, gen, "a red circle", EvalSettings())  # read from the stored score object
    expected = {"motion_fidelity": 0.5, "clip_score": None, "temporal_consistency": 0.9, "ftd": 2.5, "mf_masked": None,
                "notes": "clip_score: no weights"}
    assert first == {**expected, "cached": False} and again == {**expected, "cached": True}


def test_default_eval_settings_keep_the_score_hashes_of_batches_scored_before():
    from ditflow.batch.runner import score_inputs
    from ditflow.eval import EvalSettings
    from ditflow.store import content_key

    before = {"metrics": ["clip", "mf"], "clip_model": "ViT-B-32", "clip_pretrained": "openai", "tracker": "auto",
              "mf_variant": "symmetric", "grid_size": 55, "cotracker_repo": None, "cotracker_checkpoint": None}
    inputs = score_inputs("a" * 64, "b" * 64, "a red circle", EvalSettings())
    assert content_key("score", inputs) == content_key("score", {"amf": "a" * 64, "gen": "b" * 64,
                                                                 "prompt": "a red circle", "eval": before})
    assert score_inputs("a" * 64, "b" * 64, "a red circle", EvalSettings(metrics=("mf",)))["eval"]["metrics"] == ["mf"]


# -- peak memory --------------------------------------------------------------------------------------------
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="VmHWM and clear_refs are Linux's")
def test_cpu_peak_memory_is_what_the_run_held_above_the_start():
    from ditflow.memory import PeakMemory

    held = np.ones(64 * 2**20, np.uint8)  # resident before the start: not the run's
    peak = PeakMemory("cpu")
    peak.start()
    block = np.ones(96 * 2**20, np.uint8)  # 96 MB touched, then freed
    del block
    result = peak.result()
    assert 80 <= result["mb"] < 400 and "above the loaded model" in result["measure"] and held[0] == 1


def test_a_batch_row_and_cache_show_carry_the_generations_seconds_and_peak_memory(tmp_path, tiny_rope, ref_video):
    from ditflow.store import Store, content_key

    (tmp_path / "a.gif").write_bytes(Path(ref_video).read_bytes())
    (tmp_path / "runs.csv").write_text("video,prompt,setup\na.gif,a red circle on a grey background,ditflow-latent\n")
    size = ["--frames", "9", "--height", "32", "--width", "48", "--steps", "4", "--guidance-range", "4,2",
            "--opt-steps", "2", "--metrics", "mf", "--tracker", "lk", "-q"]
    code, _, err = cli(["batch", str(tmp_path / "runs.csv"), "--model", tiny_rope, *size, "--cache", str(tmp_path / "c"),
                        "--json-out", str(tmp_path / "out.json")])
    [result] = read_results(tmp_path / "out.json")
    assert code == 0, err
    assert result["seconds"] > 0 and result["peak_memory_mb"] is not None and result["peak_memory_mb"] >= 0
    assert all(result[k] is None for k in ("temporal_consistency", "ftd", "mf_masked"))  # not asked: empty
    gen = Store(tmp_path / "c").info(result["gen"])
    assert gen.meta["peak_memory"]["mb"] == result["peak_memory_mb"]
    assert content_key("gen", gen.meta["inputs"]) == gen.hash  # in the meta, not the hash
    code, out, err = cli(["cache", "show", result["gen"][:12], "--cache", str(tmp_path / "c")])
    shown = json.loads(out)  # stdout stays JSON; the one-line summary is on stderr
    assert code == 0 and shown["peak_memory"] == gen.meta["peak_memory"] and shown["seconds"]["total"] == result["seconds"]
    assert f"generation: {result['seconds']:.1f} s (load " in err and f"peak memory {result['peak_memory_mb']:.1f} MB" in err


def test_cache_show_of_a_gen_from_before_the_peak_was_recorded_says_so(store, capsys, monkeypatch):
    h = put(store, "old", kind="gen", seconds={"total": 3.0, "load": 1.0})
    code, out, err = run_cli(["cache", "show", h[:12], "--cache", str(store.root)], capsys, monkeypatch)
    assert code == 0 and err.strip() == "generation: 3.0 s (load 1.0), peak memory not recorded"


# -- the manifest reader sits below batch and eval --------------------------------------------------------------
def test_eval_imports_nothing_of_batch():
    imports = []
    for path in sorted((ROOT / "ditflow" / "eval").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                imports.append(("." * node.level) + (node.module or ""))
            elif isinstance(node, ast.Import):
                imports += [a.name for a in node.names]
    assert not [i for i in imports if i.startswith(("..batch", "ditflow.batch"))]
    assert (ROOT / "ditflow" / "records.py").is_file() and not (ROOT / "ditflow" / "batch" / "records.py").exists()
