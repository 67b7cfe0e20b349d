"""The quality benchmark's references and prompts (its judging is tests/test_judge.py)."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ditflow.toyworld import judge
from ditflow.toyworld.train import TRAIN_SEED0
from ditflow.toyworld.world import CLASSIC_WORLD

_spec = importlib.util.spec_from_file_location("bench_quality", Path(__file__).resolve().parents[1] / "benchmarks" / "bench_quality.py")
bench = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(bench)


def test_references_are_held_out_single_object_clips():
    refs = bench.references(6, 9, 32, CLASSIC_WORLD)
    assert len(refs) == 6 and len({s for s, _ in refs}) == 6
    assert all(seed < TRAIN_SEED0 and len(clip.shapes) == 1 for seed, clip in refs)


def test_references_can_be_restricted_to_kinds_of_motion():
    import pytest

    refs = bench.references(3, 9, 32, CLASSIC_WORLD, motions=("pan", "arc"))
    assert len(refs) == 3 and {clip.motion for _, clip in refs} <= {"pan", "arc"}
    with pytest.raises(ValueError, match="unknown motion"):
        bench.references(1, 9, 32, CLASSIC_WORLD, motions=("spiral",))


def test_new_prompts_change_appearance_and_are_judgeable():
    for seed, clip in bench.references(10, 9, 32, CLASSIC_WORLD):
        for salt in (0, 1):
            p = judge.parse_prompt(bench.new_prompt(seed, clip, salt))
            (colour, shape), = p.objects
            assert colour not in clip.colours and shape not in clip.shapes and p.bg_colour != colour
        assert bench.new_prompt(seed, clip) == bench.new_prompt(seed, clip)  # fixed per reference


def test_references_and_prompts_come_from_the_models_world():
    from ditflow.toyworld.world import COARSE_SHAPES, World

    world = World((0.18, 0.26), COARSE_SHAPES)
    for seed, clip in bench.references(8, 9, 32, world):
        assert set(clip.shapes) <= set(COARSE_SHAPES)
        (_, shape), = judge.parse_prompt(bench.new_prompt(seed, clip, shapes=world.shapes)).objects
        assert shape in COARSE_SHAPES and shape not in clip.shapes


def test_new_image_draws_the_new_prompts_object_where_the_reference_starts(tmp_path):
    from PIL import Image

    from ditflow.toyworld.world import COLOURS, COARSE_SHAPES, World

    world = World((0.18, 0.26), COARSE_SHAPES)
    for seed, clip in bench.references(3, 9, 32, world):
        path = bench.new_image(seed, clip, tmp_path, 0, world.shapes)
        image = np.asarray(Image.open(path))
        (colour, shape), = judge.parse_prompt(bench.new_prompt(seed, clip, shapes=world.shapes)).objects
        x, y = clip.trajectories[0][0]
        assert image.shape == clip.frames.shape[1:] and tuple(image[int(y), int(x)]) == COLOURS[colour]
        match = judge.prompt_match(image[None], bench.new_prompt(seed, clip, shapes=world.shapes),
                                   judge.max_area_for(world.radius), world.shapes)
        assert match.colour and np.linalg.norm(judge.centroid_path(match.mask)[0] - (x, y)) < 2
        assert bench.new_image(seed, clip, tmp_path, 1, world.shapes) != path  # inject's picture: its own prompt's


@pytest.fixture(scope="module")
def tiny_toy(tmp_path_factory):
    """A tiny toy model trained for a step in its own world (recipe.json), as a text-to-video folder."""
    from dataclasses import replace

    from ditflow.toyworld.train import Recipe, train

    tmp = tmp_path_factory.mktemp("tiny-toy")
    recipe = replace(Recipe(), size=32, frames=9, vae_channels=(8, 8, 8), patch=2, heads=2, head_dim=16, layers=2,
                     vae_steps=1, vae_batch=1, steps=1, batch=2, bank=8, decoder_steps=1, text_steps=1, text_batch=2,
                     defaults={"guidance_blocks": [1], "frames": 9, "height": 32, "width": 32, "steps": 3,
                               "guidance_range": [3, 2], "opt_steps": 1, "negative_prompt": ""})
    return train(recipe, tmp / "work", tmp / "toy", quiet=True)


def run_bench(model, setups_toml: str, tmp_path, monkeypatch) -> dict:
    """bench_quality.py on `model`, 1 reference, the setups of `setups_toml`; its JSON result."""
    import json
    import sys

    (tmp_path / "setups.toml").write_text(setups_toml)
    out = tmp_path / "quality.json"
    monkeypatch.setattr(sys, "argv", ["bench_quality.py", "--model", str(model), "--refs", "1",
                                      "--setups-file", str(tmp_path / "setups.toml"), "--work", str(tmp_path / "bench"),
                                      "--out", str(out)])
    bench.main()
    return json.loads(out.read_text())


@pytest.mark.slow
def test_an_image_to_video_model_animates_each_prompts_picture(tiny_toy, tmp_path, monkeypatch):
    """On an I2V model every run gets new_image's picture (inject its own prompt's) and a frame-0 error."""
    from PIL import Image

    from ditflow.artifacts import load
    from ditflow.store import Store
    from ditflow.toyworld.i2v import convert, export

    model = export(convert(tiny_toy), tiny_toy, tmp_path / "toy-i2v", steps=0, minutes=0)
    result = run_bench(model, '[guided]\nopt_steps = 1\nopt_mode = "emb"\n[reuse]\ninject_from = "guided"\n',
                       tmp_path, monkeypatch)
    store = Store(tmp_path / "bench" / "store")
    for row, salt in zip(result["rows"], (0, 1)):
        picture = np.asarray(Image.open(tmp_path / "bench" / "images" / f"seed{row['ref_seed']:04d}-{salt}.png"))
        gen = load(store, row["gen"], "gen")
        np.testing.assert_array_equal(gen.image, picture)
        assert row["frame0_error"] == pytest.approx(np.abs(gen.frames[0].astype(int) - picture.astype(int)).mean())
    assert "frame-0 error vs image" in bench.table(result)


@pytest.mark.slow
def test_a_setup_can_extract_the_reference_from_other_blocks(tiny_toy, tmp_path, monkeypatch):
    """A setups-file table's `blocks` picks the reference AMF's blocks; the others use the model's."""
    import json
    import sys

    result = run_bench(tiny_toy, '[model]\nopt_steps = 1\n[first]\nopt_steps = 1\nblocks = [0]\n', tmp_path, monkeypatch)
    rows = {r["setup"]: r for r in result["rows"]}
    assert rows["model"]["amf"] != rows["first"]["amf"]
    from ditflow.artifacts import load
    from ditflow.store import Store

    store = Store(tmp_path / "bench" / "store")
    assert load(store, rows["first"]["amf"], "amf").blocks == [0]
    assert load(store, rows["model"]["amf"], "amf").blocks == [1]
    assert not any(r["from_store"] for r in rows.values())

    # a rerun is served from the store: marked so, and left out of the seconds per video
    monkeypatch.setattr(sys, "argv", sys.argv[:-1] + [str(tmp_path / "again.json")])
    bench.main()
    again = json.loads((tmp_path / "again.json").read_text())
    assert all(r["from_store"] for r in again["rows"])
    assert again["summary"]["model"]["from_store"] == 1 and again["summary"]["model"]["seconds_per_video"] is None


def test_a_dotted_setup_name_is_refused_not_silently_emptied(tmp_path, monkeypatch):
    import sys

    import pytest

    (tmp_path / "setups.toml").write_text('[emb-0.08]\nopt_mode = "emb"\n')  # TOML reads table "emb-0", subtable "08"
    monkeypatch.setattr(sys, "argv", ["bench_quality.py", "--setups-file", str(tmp_path / "setups.toml"),
                                      "--work", str(tmp_path / "bench"), "--out", str(tmp_path / "q.json")])
    with pytest.raises(SystemExit, match='quote names'):
        bench.main()
    assert not (tmp_path / "q.json").exists()


def test_probe_sampler_negative_prompt_leaves_out_only_the_shape():
    spec = importlib.util.spec_from_file_location("probe_sampler", Path(__file__).resolve().parents[1] / "benchmarks" / "probe_sampler.py")
    probe = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(probe)
    from ditflow.toyworld.world import COARSE_SHAPES

    assert probe.without_shape("a red triangle on a grey gradient background", COARSE_SHAPES) == "a red on a grey gradient background"


def test_quality_per_second_is_against_the_first_setup():
    base = {"mf": 0.8, "rel_path_error": 4.0, "sample_seconds_per_video": 10.0}
    half_time = bench.per_second({"mf": 0.76, "rel_path_error": 5.0, "sample_seconds_per_video": 4.0}, base)
    assert half_time == {"mf_per_second": 0.95 * 2.5, "path_per_second": 0.8 * 2.5, "mf": 0.95, "sample_seconds": 0.4}
    assert bench.per_second({"mf": None, "rel_path_error": 5.0, "sample_seconds_per_video": 4.0}, base) is None
