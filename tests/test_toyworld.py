import numpy as np
import pytest

from ditflow.toyworld import MOTIONS, make_clip

MOTION_WORDS = {"moving", "running", "walking", "left", "right", "up", "down", "bounce", "bouncing", "arc", "zigzag", "pan"}


def test_deterministic():
    a, b = make_clip(7), make_clip(7)
    assert np.array_equal(a.frames, b.frames) and a.prompt == b.prompt
    assert not np.array_equal(make_clip(8).frames, a.frames)


@pytest.mark.parametrize("seed", range(10))
def test_ground_truth_matches_pixels(seed):
    clip = make_clip(seed, frames=9, height=64, width=64)
    assert clip.frames.shape == (9, 64, 64, 3) and clip.frames.dtype == np.uint8
    for obj, colour in enumerate(clip.colours):
        visible = [f for f in range(9) if clip.masks[obj, f].sum() > 20]
        assert len(visible) >= 7
        for f in visible:
            ys, xs = np.nonzero(clip.masks[obj, f])
            centroid = np.array([xs.mean(), ys.mean()]) + 0.5
            assert np.abs(centroid - clip.trajectories[obj, f]).max() < 3.0  # occlusion can shift it a little
            from ditflow.toyworld import COLOURS

            assert (clip.frames[f][clip.masks[obj, f]] == COLOURS[colour]).all()


@pytest.mark.parametrize("seed", range(20))
def test_prompt_is_appearance_only_and_motion_is_large(seed):
    clip = make_clip(seed)
    words = set(clip.prompt.split())
    assert not words & MOTION_WORDS
    assert all(c in words for c in clip.colours) and all(s in words for s in clip.shapes)
    path = np.linalg.norm(np.diff(clip.trajectories[0], axis=0), axis=1).sum()
    assert path >= 0.25 * 128  # several 8-px patches of travel at 128x128


def test_every_motion_occurs():
    assert {make_clip(s).motion for s in range(60)} == set(MOTIONS)


def test_every_seed_makes_a_clip_at_the_toy_size():
    """Long paths in a small frame once made the start range empty; any seed must give a clip."""
    for seed in range(20_000_000, 20_002_000):
        clip = make_clip(seed, 17, 64, 64)
        assert clip.frames.shape == (17, 64, 64, 3)
        assert np.all((clip.trajectories >= 0) & (clip.trajectories <= 64))


def test_radius_sets_object_size_and_nothing_else():
    small, big = make_clip(3, 9, 64, 64, radius=(0.10, 0.10)), make_clip(3, 9, 64, 64, radius=(0.20, 0.20))
    assert small.prompt == big.prompt and small.motion == big.motion  # the same draws, only sizes differ
    area = lambda c: c.masks[0, 0].sum()  # noqa: E731
    assert 3.0 < area(big) / area(small) < 5.0  # area grows with r^2


def test_shape_ambiguity_is_where_shapes_disagree():
    from ditflow.toyworld.world import SHAPES, _shape_mask, shape_ambiguity

    clip = next(c for c in (make_clip(s, 9, 64, 64) for s in range(50)) if len(c.shapes) == 1)
    amb = shape_ambiguity(clip)
    assert amb.shape == clip.masks.shape[1:] and len(clip.radii) == 1
    (x, y), r = clip.trajectories[0, 4], clip.radii[0]
    drawn = {s: _shape_mask(s, x, y, r, 64, 64) for s in SHAPES}
    for s in SHAPES:  # pixels one shape covers and another does not are all ambiguous
        assert (drawn[s] & ~drawn["circle"] <= amb[4]).all() and (drawn["circle"] & ~drawn[s] <= amb[4]).all()
    assert not amb[4][int(y), int(x)]  # every shape covers its centre
    yy, xx = np.mgrid[0:64, 0:64] + 0.5
    assert not amb[4][(xx - x) ** 2 + (yy - y) ** 2 > (1.25 * r) ** 2].any()  # nothing beyond the shapes (square corners: 1.2 r)


def test_shape_ambiguity_is_per_object():
    """With two objects, one's core (every shape covers it) does not hide the other's disagreeing edge there."""
    from dataclasses import replace

    from ditflow.toyworld.world import shape_ambiguity

    clip = next(c for c in (make_clip(s, 9, 64, 64, radius=(0.2, 0.2)) for s in range(200)) if len(c.shapes) == 2)
    alone = [shape_ambiguity(replace(clip, radii=[r], trajectories=clip.trajectories[i:i + 1]))
             for i, r in enumerate(clip.radii)]
    assert np.array_equal(shape_ambiguity(clip), alone[0] | alone[1])


def test_shape_region_holds_every_shape_of_the_world():
    from ditflow.toyworld.world import COARSE_SHAPES, _shape_mask, shape_ambiguity, shape_region

    clip = next(c for c in (make_clip(s, 9, 64, 64, shapes=COARSE_SHAPES) for s in range(50)) if len(c.shapes) == 1)
    region = shape_region(clip, COARSE_SHAPES)
    (x, y), r = clip.trajectories[0, 4], clip.radii[0]
    for s in COARSE_SHAPES:
        assert (_shape_mask(s, x, y, r, 64, 64) <= region[4]).all()
    assert (clip.masks[0] <= region).all() and (shape_ambiguity(clip, COARSE_SHAPES) <= region).all()
    assert region[4][int(y), int(x)] and not shape_ambiguity(clip, COARSE_SHAPES)[4][int(y), int(x)]


# ------------------------------------------------------------------ references: a toy model's world, for benchmarks
def test_model_world_radius_follows_the_model_recipe(tmp_path):
    import json

    from ditflow.toyworld.references import model_world
    from ditflow.toyworld.world import OBJECT_RADIUS

    assert model_world(tmp_path).radius == OBJECT_RADIUS  # not a trained folder: today's world
    (tmp_path / "recipe.json").write_text(json.dumps({"size": 64}))
    assert model_world(tmp_path).radius == (0.10, 0.18)  # v3 predates the setting
    (tmp_path / "recipe.json").write_text(json.dumps({"object_radius": [0.2, 0.3]}))
    assert model_world(tmp_path).radius == (0.2, 0.3)


def test_model_world_reads_the_shape_set(tmp_path):
    import json

    from ditflow.toyworld.references import model_world
    from ditflow.toyworld.world import COARSE_SHAPES, SHAPES

    (tmp_path / "recipe.json").write_text(json.dumps({"object_radius": [0.14, 0.22]}))
    assert model_world(tmp_path).shapes == SHAPES  # v1-v6 predate the setting
    (tmp_path / "recipe.json").write_text(json.dumps({"object_radius": [0.18, 0.26], "shapes": list(COARSE_SHAPES)}))
    assert model_world(tmp_path).shapes == COARSE_SHAPES and model_world(tmp_path).radius == (0.18, 0.26)


def test_model_world_clip_draws_at_the_model_size(tmp_path):
    import json

    from ditflow.toyworld.references import model_world_clip

    (tmp_path / "recipe.json").write_text(json.dumps({"size": 48, "frames": 9, "object_radius": [0.2, 0.2]}))
    clip = model_world_clip(3, tmp_path)
    assert clip.frames.shape == (9, 48, 48, 3)
    assert np.array_equal(clip.frames, make_clip(3, 9, 48, 48, radius=(0.2, 0.2)).frames)


def test_object_errors_average_over_covered_pixels_only():
    import torch

    from ditflow.toyworld.references import object_errors

    target = torch.zeros(2, 3, 4, 4, 4)
    pred = target.clone()
    pred[:, :, :, 0, 0] = 2.0  # wrong only at pixel (0, 0)
    mask = torch.zeros(2, 3, 1, 4, 4)
    mask[0, :, :, 0, 0] = 1.0  # sample 0: the error is on its object
    mask[1, :, :, 3, 3] = 1.0  # sample 1: the error is off its object
    assert torch.allclose(object_errors(pred, target, mask), torch.tensor([4.0, 0.0]))
