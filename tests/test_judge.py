"""The pixel judge of generated toy-world videos: prompt parsing, object masks, shapes, paths."""
from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
import pytest

from ditflow.toyworld import judge
from ditflow.toyworld.world import COARSE_SHAPES, COLOURS, SHAPES, _shape_mask, make_clip

T, H, W = 9, 64, 64


@lru_cache(maxsize=None)
def _clip(seed: int):
    return make_clip(seed, T, H, W)


def _clips(n: int, backgrounds=("plain", "gradient"), objects: int = 1, unclipped: bool = False) -> list:
    """The first n clips (by seed) with that background and number of objects, found by search."""
    out = []
    for seed in range(300):
        c = _clip(seed)
        if c.background not in backgrounds or len(c.shapes) != objects:
            continue
        edges = c.masks[:, :, [0, -1]].any() or c.masks[:, :, :, [0, -1]].any()
        if unclipped and edges:  # the object touches the frame's edge somewhere: its centroid may shift
            continue
        out.append(c)
        if len(out) == n:
            return out
    raise AssertionError(f"fewer than {n} clips with {backgrounds}, {objects} objects")


def _vae_like(frames: np.ndarray, seed: int = 0) -> np.ndarray:
    """Gaussian noise (sigma 15) then a 5x5 Gaussian blur: roughly what a small decoder does to the clip."""
    x = frames.astype(np.float32) + np.random.default_rng(seed).normal(0, 15, frames.shape)
    return np.clip(np.stack([cv2.GaussianBlur(f, (5, 5), 0) for f in x]), 0, 255).astype(np.uint8)


def _iou(a: np.ndarray, b: np.ndarray) -> float:
    return float((a & b).sum() / max((a | b).sum(), 1))


def _with_object(prompt: str, colour: str, shape: str) -> str:
    """The single-object prompt with another object, same background."""
    article = "an" if colour[0] in "aeiou" else "a"
    return f"{article} {colour} {shape} on {prompt.split(' on ', 1)[1]}"


@pytest.mark.parametrize("backgrounds,objects", [(("plain",), 1), (("plain", "gradient", "textured"), 2),
                                                 (("gradient",), 1), (("textured",), 1)])
def test_parse_prompt_round_trips(backgrounds, objects):
    for c in _clips(3, backgrounds, objects):
        p = judge.parse_prompt(c.prompt)
        assert p.objects == list(zip(c.colours, c.shapes))
        assert p.background == c.background
        assert p.bg_colour in COLOURS and f" {p.bg_colour} " in c.prompt.split(" on ", 1)[1] + " "


@pytest.mark.parametrize("prompt", ["", "a cat on a mat", "a red circle", "a red blob on a grey background",
                                    "red circle on a grey background", "a red circle on a teal background",
                                    "a red circle on a textured grey gradient background",
                                    "a red circle and on a grey background"])
def test_parse_prompt_rejects_other_text(prompt):
    with pytest.raises(ValueError):
        judge.parse_prompt(prompt)


def test_object_mask_matches_ground_truth():
    for c in _clips(6):
        m = judge.object_mask(c.frames, c.colours[0], judge.parse_prompt(c.prompt).bg_colour)
        assert m.shape == (T, H, W) and m.dtype == bool
        assert _iou(m, c.masks[0]) >= 0.85, c.prompt


def test_object_mask_survives_noise_and_blur():
    for c in _clips(6):
        m = judge.object_mask(_vae_like(c.frames), c.colours[0])
        assert _iou(m, c.masks[0]) >= 0.7, c.prompt


def test_centroid_path_follows_ground_truth():
    for c in _clips(4, ("plain",), unclipped=True):
        path = judge.centroid_path(judge.object_mask(c.frames, c.colours[0]))
        assert path.shape == (T, 2)
        assert np.abs(path - c.trajectories[0]).max() <= 1.0, c.prompt


def test_centroid_path_is_nan_for_empty_frames():
    mask = np.zeros((3, 8, 8), dtype=bool)
    mask[1, 2:4, 4:6] = True
    path = judge.centroid_path(mask)
    assert np.isnan(path[[0, 2]]).all() and np.allclose(path[1], [5.0, 3.0])


@pytest.mark.parametrize("shape", SHAPES)
def test_classify_shape(shape):
    assert judge.classify_shape(_shape_mask(shape, 30.3, 33.7, 8.0, H, W)) == shape


@pytest.mark.parametrize("shape", COARSE_SHAPES)
def test_classify_shape_among_a_worlds_own_shapes(shape):
    """v7's world: the judge chooses among that world's shapes only."""
    mask = _shape_mask(shape, 30.3, 33.7, 8.0, H, W)
    assert judge.classify_shape(mask, COARSE_SHAPES) == shape


def test_prompt_match_in_the_coarse_world():
    radius = (0.18, 0.26)
    for seed in range(6):
        c = make_clip(seed, T, H, W, radius=radius, shapes=COARSE_SHAPES)
        assert set(c.shapes) <= set(COARSE_SHAPES)
        assert judge.prompt_match(c.frames, c.prompt, judge.max_area_for(radius), COARSE_SHAPES).ok, c.prompt
        wrong = judge.swap_word(c.prompt, "shape", 0, COARSE_SHAPES)
        assert judge.parse_prompt(wrong).objects[0][1] in set(COARSE_SHAPES) - {c.shapes[0]}
        assert not judge.prompt_match(c.frames, wrong, judge.max_area_for(radius), COARSE_SHAPES).shape, wrong


def test_prompt_match_own_prompt():
    for c in _clips(4):
        for frames in (c.frames, _vae_like(c.frames)):
            m = judge.prompt_match(frames, c.prompt)
            assert m.colour and m.shape and m.ok, c.prompt
            assert m.coverage.shape == (T,)
            assert np.array_equal(m.mask, judge.object_mask(frames, c.colours[0], judge.parse_prompt(c.prompt).bg_colour))


def test_prompt_match_rejects_another_colour():
    for c in _clips(4):
        bg = judge.parse_prompt(c.prompt).bg_colour
        for colour in COLOURS:
            if colour not in (c.colours[0], bg):
                m = judge.prompt_match(c.frames, _with_object(c.prompt, colour, c.shapes[0]))
                assert not m.colour and not m.ok, (c.prompt, colour)


def test_prompt_match_rejects_another_shape():
    for c in _clips(4):
        for shape in SHAPES:
            if shape != c.shapes[0]:
                m = judge.prompt_match(c.frames, _with_object(c.prompt, c.colours[0], shape))
                assert m.colour and not m.shape and not m.ok, (c.prompt, shape)


def test_prompt_match_rejects_noise():
    rng = np.random.default_rng(0)
    for colour in COLOURS:
        frames = rng.integers(0, 256, (T, H, W, 3), dtype=np.uint8)
        bg = "grey" if colour != "grey" else "white"
        assert not judge.prompt_match(frames, f"a {colour} circle on a {bg} background").ok, colour


def test_path_errors_zero_for_same_path():
    ref = _clips(1)[0].trajectories[0]
    assert judge.path_errors(ref.copy(), ref) == pytest.approx((0.0, 0.0), abs=1e-9)


def test_path_errors_shift_is_absolute_only():
    ref = _clips(1)[0].trajectories[0]
    rel, ab = judge.path_errors(ref + np.array([3.0, 4.0]), ref)
    assert rel == pytest.approx(0.0, abs=1e-6) and ab == pytest.approx(5.0)


def test_path_errors_fills_missing_frames_from_nearest():
    ref = np.stack([np.arange(5.0), np.zeros(5)], axis=1)
    path = ref.copy()
    path[[0, 4]] = np.nan  # filled: x = 1, 1, 2, 3, 3 against 0, 1, 2, 3, 4
    rel, ab = judge.path_errors(path, ref)
    assert ab == pytest.approx((1 + 0 + 0 + 0 + 1) / 5) and rel == pytest.approx((0 + 1 + 1 + 1 + 2) / 5)


def test_path_errors_empty_path_is_infinite():
    ref = np.zeros((4, 2))
    assert judge.path_errors(np.full((4, 2), np.nan), ref) == (float("inf"), float("inf"))


def test_static_relative_error_is_a_frozen_path():
    ref = _clips(1)[0].trajectories[0]
    frozen = np.broadcast_to(np.array([10.0, 50.0]), ref.shape)
    assert judge.static_relative_error(ref) == pytest.approx(judge.path_errors(frozen, ref)[0])
    assert judge.static_relative_error(ref) > 0


def test_background_residual_is_small_on_world_clips_and_grows_with_stray_paint():
    for c in _clips(4, backgrounds=("plain", "gradient")):
        clean = judge.background_residual(c.frames, c.prompt)
        assert clean is not None and clean < 1.0, c.prompt  # the object drops out, the plane fits the rest
        blotched = c.frames.copy()
        blotched[:, 2:14, 2:14] = 255 - blotched[:, 2:14, 2:14]  # a stray patch the prompt never asked for
        blotched[:, 50:60, 50:60] = 255 - blotched[:, 50:60, 50:60]
        assert judge.background_residual(blotched, c.prompt) > clean + 5, c.prompt
        noisy = _vae_like(c.frames)
        assert clean < judge.background_residual(noisy, c.prompt) < 25, c.prompt
    textured = _clips(1, backgrounds=("textured",))[0]
    assert judge.background_residual(textured.frames, textured.prompt) is None  # no plane to measure against


def test_max_area_keeps_v4_setting_and_admits_larger_worlds_objects():
    assert judge.max_area_for((0.14, 0.22)) == judge.MAX_AREA_FRAC  # v4's world: unchanged
    frames = np.full((3, 64, 64, 3), COLOURS["grey"], dtype=np.uint8)
    frames[:, _shape_mask("square", 32, 32, 0.33 * 64, 64, 64)] = COLOURS["red"]  # 31% of the frame
    prompt = "a red square on a grey background"
    assert not judge.prompt_match(frames, prompt).colour  # too large for v4's world: background
    m = judge.prompt_match(frames, prompt, judge.max_area_for((0.24, 0.33)))
    assert m.ok and m.mask.any(axis=(1, 2)).all()
