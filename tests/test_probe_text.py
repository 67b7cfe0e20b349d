"""The prompt-word probe: its swapped words (judge.swap_word), and what it reads off the shipped toy model."""
import importlib.util
import json

import pytest
import sys
from pathlib import Path

from ditflow.toyworld import judge

_spec = importlib.util.spec_from_file_location("probe_text", Path(__file__).resolve().parents[1] / "benchmarks" / "probe_text.py")
probe = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(probe)


def test_swap_word_changes_one_word_of_the_first_object():
    prompt = "a red circle and a blue square on a grey background"
    shapes = {judge.parse_prompt(judge.swap_word(prompt, "shape", k)).objects[0] for k in range(8)}
    assert {c for c, _ in shapes} == {"red"} and len(shapes) == 4 and ("red", "circle") not in shapes
    colours = [judge.parse_prompt(judge.swap_word(prompt, "colour", k)) for k in range(20)]
    assert all(p.objects[0][1] == "circle" and p.objects[0][0] not in ("red", "grey") for p in colours)
    assert all(p.objects[1] == ("blue", "square") and p.bg_colour == "grey" for p in colours)


@pytest.mark.shipped
def test_probe_sees_the_toy_model_read_the_colour_word(tmp_path, monkeypatch):
    out = tmp_path / "probe.json"
    monkeypatch.setattr(sys, "argv", ["probe_text.py", "--refs", "4", "--timesteps", "500", "--out", str(out)])
    probe.main()
    (row,) = json.loads(out.read_text())["rows"]
    assert row["timestep"] == 500 and set(row) == {"timestep", "right", "shape", "colour", "empty"}
    assert row["colour"] > 1.2 * row["right"]  # v4 at t=500: x1.64 over 16 clips
