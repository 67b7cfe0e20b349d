"""The quality benchmark's references and prompts (its judging is tests/test_judge.py)."""
import importlib.util
from pathlib import Path

from ditflow.toyworld import judge
from ditflow.toyworld.train import TRAIN_SEED0

_spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_references_are_held_out_single_object_clips():
    refs = bench.references(6, 9, 32)
    assert len(refs) == 6 and len({s for s, _ in refs}) == 6
    assert all(seed < TRAIN_SEED0 and len(clip.shapes) == 1 for seed, clip in refs)


def test_new_prompts_change_appearance_and_are_judgeable():
    for seed, clip in bench.references(10, 9, 32):
        for salt in (0, 1):
            p = judge.parse_prompt(bench.new_prompt(seed, clip, salt))
            (colour, shape), = p.objects
            assert colour not in clip.colours and shape not in clip.shapes and p.bg_colour != colour
        assert bench.new_prompt(seed, clip) == bench.new_prompt(seed, clip)  # fixed per reference
