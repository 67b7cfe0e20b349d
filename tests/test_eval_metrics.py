"""ditflow eval's peer metrics: temporal consistency, Fréchet trajectory distance, masked motion fidelity, --mask."""
from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from ditflow.errors import InputError, ModelUnavailable
from ditflow.eval import EvalSettings, Evaluator, parse_metrics
from ditflow.eval.consistency import consistency_with_first, load_dino, temporal_consistency
from ditflow.eval.ftd import discrete_frechet, frechet_batch, ftd_scores
from ditflow.eval.mask import inside, load_mask, parse_box
from ditflow.eval.trackers import lost_for_good
from ditflow.video import write_video
from helpers import assert_one_line_error, deadline, run_cli
from eval_kit import GRID, moving, texture


@pytest.fixture(autouse=True)
def _offline(offline):
    """Every test here runs with no weights anywhere (eval_kit.offline)."""

LINE = np.array([[0.0, 0.0], [1.0, 0.0], [2.0, 0.0]])


# -- pure functions ------------------------------------------------------------------------------------
def test_discrete_frechet_by_hand():
    assert discrete_frechet(LINE, LINE) == 0.0
    assert discrete_frechet(LINE, LINE + [0, 1]) == pytest.approx(1.0)  # the leash is 1 all along
    # walked backwards: both walks start at their own start, 2 apart
    assert discrete_frechet(LINE, LINE[::-1]) == pytest.approx(2.0)
    # lengths may differ: (0,0)-(0,0), then (0,0)|(2,0) against (1,0) costs 1, then (2,0)-(2,0)
    assert discrete_frechet([[0, 0], [2, 0]], LINE) == pytest.approx(1.0)
    # the maximum of the best coupling, not a sum: one far vertex decides
    assert discrete_frechet(LINE, [[0, 0], [1, 3], [2, 0]]) == pytest.approx(3.0)


def test_discrete_frechet_is_symmetric_and_batched():
    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(5, 7, 2)), rng.normal(size=(5, 4, 2))
    batch = frechet_batch(a, b)
    assert batch.shape == (5,)
    np.testing.assert_allclose(batch, frechet_batch(b, a))
    np.testing.assert_allclose(batch, [discrete_frechet(p, q) for p, q in zip(a, b)])
    with pytest.raises(ValueError):
        frechet_batch(a, b[:3])


def test_ftd_scores_pool_kept_points_in_frame_units():
    ref = np.stack([LINE, LINE + [0, 10], LINE + [0, 20]])  # [3, 3, 2] px
    gen = ref.copy()
    gen[1] += [0, 5]  # point 1 is 5 px off all along (frame 10 px high: 0.5)
    gen[2] += [0, 99]  # point 2 was lost by one tracking: not counted
    kept = np.array([True, True, False])
    out = ftd_scores(ref, gen, kept, (10, 100), foreground=np.array([True, False, True]))
    assert out["ftd"] == pytest.approx(np.sqrt((0 + 0.5 ** 2) / 2))  # RoPECraft's sqrt(mean(d²))
    assert out["ftd_foreground"] == 0.0 and out["ftd_background"] == pytest.approx(0.5)
    assert out["points"] == {"all": 2, "grid": 3, "foreground": 1, "background": 1}
    assert ftd_scores(ref, gen, np.zeros(3, bool), (10, 100))["ftd"] is None


def test_temporal_consistency_by_hand():
    e = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 2.0]])  # scale does not matter: cosines
    assert temporal_consistency(e) == pytest.approx(0.5)  # (1 + 0) / 2
    assert consistency_with_first(e) == pytest.approx(0.5)
    assert temporal_consistency(np.ones((4, 3))) == pytest.approx(1.0)
    with pytest.raises(InputError):
        temporal_consistency(np.ones((1, 3)))


def test_lost_for_good():
    visible = np.array([[1, 1, 1, 1], [1, 0, 0, 0], [1, 0, 1, 1], [1, 1, 1, 0]], bool)
    # gone for good after frame 0; back after an occlusion; gone only at the last frame (RoPECraft keeps it)
    assert lost_for_good(visible).tolist() == [False, True, False, False]


def test_box_and_mask_parsing(tmp_path):
    assert parse_box("2,3,10,12") == (2, 3, 10, 12) and parse_box("clips/mask.mp4") is None
    for bad in ("2,3,1,12", "1,2,3,x", "1.5,2,3,4", "-1,0,3,4"):
        with pytest.raises(InputError, match="--mask box"):
            parse_box(bad)
    mask = load_mask("2,3,10,12", 16, 20)
    assert mask.shape == (16, 20) and mask.sum() == 8 * 9 and mask[3, 2] and not mask[12, 10]
    with pytest.raises(InputError, match="reaches past"):
        load_mask("0,0,21,4", 16, 20)
    frames = np.zeros((2, 16, 20, 3), np.uint8)
    frames[0, 4:8, 5:9] = (128, 0, 0)  # DAVIS's palette red: foreground
    write_video(frames, tmp_path / "masks", fmt="png")
    assert load_mask(str(tmp_path / "masks"), 16, 20).sum() == 16
    with pytest.raises(InputError, match="is 20x16 but the reference is 24x16"):
        load_mask(str(tmp_path / "masks"), 16, 24)
    assert inside(np.array([[5.4, 4.0], [9.0, 4.0]]), load_mask(str(tmp_path / "masks"), 16, 20)).tolist() == [True, False]


def test_parse_metrics_takes_the_new_names():
    assert parse_metrics("clip,mf,tc,ftd") == ("clip", "mf", "tc", "ftd")
    assert parse_metrics("temporal_consistency") == ("tc",)
    with pytest.raises(InputError, match="clip, mf, tc, ftd"):
        parse_metrics("fvd")
    assert EvalSettings().metrics == ("clip", "mf")  # the new ones are asked for by name


# -- on videos the tests make --------------------------------------------------------------------------
def fade(frames: int = 8, size: int = 48) -> np.ndarray:
    """Texture A cross-fading into texture B: neighbours alike, far frames not."""
    a, b = texture(0, size).astype(np.float32), texture(1, size).astype(np.float32)
    w = np.linspace(0, 1, frames)[:, None, None, None]
    return ((1 - w) * a + w * b).astype(np.uint8)


def test_temporal_consistency_with_a_random_clip(tiny_clip):
    import torch

    torch.manual_seed(0)
    ev = Evaluator(EvalSettings(metrics=("tc",), clip_model=tiny_clip, clip_pretrained=None))
    still = np.repeat(texture(0, 48)[None], 5, axis=0)
    assert ev.score(still, None, None)["temporal_consistency"] == pytest.approx(1.0, abs=1e-5)
    video = fade()
    ordered = ev.score(video, None, None)
    shuffled = ev.score(video[[0, 7, 1, 6, 2, 5, 3, 4]], None, None)
    assert ordered["tc_model"] == f"{tiny_clip}/random" and "unavailable" not in ordered
    assert shuffled["temporal_consistency"] < ordered["temporal_consistency"] <= 1.0
    assert -1.0 <= ordered["temporal_consistency_first"] <= 1.0


def test_all_metrics_offline_with_lk_and_a_random_clip(tiny_clip):
    ev = Evaluator(EvalSettings(metrics=("clip", "mf", "tc", "ftd"), clip_model=tiny_clip, clip_pretrained=None,
                                tracker="lk", grid_size=GRID))
    video = moving(0, 1.3, 0.6)
    result = ev.score(video, video, "a texture")
    assert "unavailable" not in result, result.get("unavailable")
    assert result["motion_fidelity"] > 0.95 and result["ftd"] == 0.0 and result["tracker"] == "lk"
    assert result["temporal_consistency"] > 0 and result["ftd_points"]["all"] > 0.8 * GRID * GRID
    for key in ("mf_masked", "ftd_foreground", "ftd_background"):
        assert key not in result  # no mask


def test_ftd_of_tracked_videos_is_zero_symmetric_and_sees_time():
    ev = Evaluator(EvalSettings(metrics=("ftd",), tracker="lk", grid_size=GRID))
    a, b = moving(0, 1.3, 0.6), moving(0, -0.8, 1.1)
    assert ev.score(a, a, None)["ftd"] == 0.0
    ab, ba = ev.score(a, b, None)["ftd"], ev.score(b, a, None)["ftd"]
    assert ab > 0 and ab == pytest.approx(ba)
    assert ev.score(a[::-1].copy(), a, None)["ftd"] > 0.02  # the same path, walked backwards


def scene(bg_vy: int, frames: int = 8, size: int = 96) -> np.ndarray:
    """A 48 px textured square moving right 2 px/frame over a textured background moving down bg_vy px/frame."""
    bg_tex, fg = texture(3, 160), texture(4, 48)
    out = []
    for t in range(frames):
        y = 20 - bg_vy * t  # the crop moves up, so the content moves down
        frame = bg_tex[y:y + size, 20:20 + size].copy()
        frame[24:72, 16 + 2 * t:64 + 2 * t] = fg
        out.append(frame)
    return np.stack(out)


def test_masked_mf_ignores_motion_outside_the_mask():
    box = "26,34,54,62"  # inside the square at frame 0 (x 16..64, y 24..72), away from its edges
    ev = Evaluator(EvalSettings(metrics=("mf", "ftd"), tracker="lk", grid_size=16, mask=box))
    ref = scene(bg_vy=0)
    same = ev.score(scene(bg_vy=0), ref, None)
    other_background = ev.score(scene(bg_vy=2), ref, None)
    assert same["tracks_in_mask"]["reference"] >= 9 and other_background["tracks_in_mask"]["video"] >= 9
    assert other_background["mf_masked"] == pytest.approx(same["mf_masked"], abs=0.02) and same["mf_masked"] > 0.95
    assert other_background["motion_fidelity"] < same["motion_fidelity"] - 0.05
    assert other_background["ftd_foreground"] == pytest.approx(same["ftd_foreground"], abs=1e-3)
    assert other_background["ftd_background"] > same["ftd_background"] + 0.01


# -- DINO ----------------------------------------------------------------------------------------------
def test_missing_dino_weights_are_one_line_naming_the_repo():
    with pytest.raises(ModelUnavailable) as e:
        load_dino("facebook/dino-vitb16")
    assert "\n" not in str(e.value) and "hf download facebook/dino-vitb16" in str(e.value)
    ev = Evaluator(EvalSettings(metrics=("tc", "mf"), tc_model="dino", tracker="lk", grid_size=GRID))
    video = moving(0, 1.0, 0.0)
    result = ev.score(video, video, None)
    assert result["temporal_consistency"] is None and "facebook/dino-vitb16" in result["unavailable"]["temporal_consistency"]
    assert result["motion_fidelity"] > 0.95


def test_dino_from_a_saved_folder(tmp_path):
    from transformers import BitImageProcessor, Dinov2Config, Dinov2Model

    import torch

    torch.manual_seed(0)
    folder = tmp_path / "tiny-dinov2"
    Dinov2Model(Dinov2Config(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=64,
                             image_size=32, patch_size=16)).save_pretrained(folder)
    BitImageProcessor(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(folder)
    ev = Evaluator(EvalSettings(metrics=("tc",), tc_model="dino", dino_model=str(folder)))
    result = ev.score(np.repeat(texture(0, 48)[None], 4, axis=0), None, None)
    assert result["temporal_consistency"] == pytest.approx(1.0, abs=1e-5) and result["tc_model"] == f"dino:{folder}"


# -- the CLI -------------------------------------------------------------------------------------------
@pytest.fixture
def clips(tmp_path) -> dict[str, Path]:
    paths = {"a": tmp_path / "a", "b": tmp_path / "b"}
    write_video(scene(0), paths["a"], fmt="png")
    write_video(scene(2), paths["b"], fmt="png")
    return paths


def test_cli_eval_new_metrics_and_mask(clips, capsys, monkeypatch):
    code, out, err = run_cli(["eval", str(clips["b"]), "-r", str(clips["a"]), "--metrics", "mf,tc,ftd", "--tracker", "lk",
                              "--grid-size", "16", "--mask", "26,34,54,62"], capsys, monkeypatch)
    assert code == 0, err
    result = json.loads(out)
    assert result["mf_masked"] > 0.95 and result["ftd"] > 0 and result["ftd_background"] > result["ftd_foreground"]
    assert result["temporal_consistency"] is None and "--clip-pretrained" in result["unavailable"]["temporal_consistency"]
    assert "ftd_foreground" in err and "mf_masked" in err


def test_cli_eval_refuses_a_bad_mask(clips, tmp_path, capsys, monkeypatch):
    common = ["eval", str(clips["b"]), "-r", str(clips["a"]), "--metrics", "mf", "--tracker", "lk"]
    for mask, text in (("5,5,2,2", "0 <= x0 < x1"), ("1,2,3", "mask not found"), ("0,0,97,10", "reaches past")):
        code, out, err = run_cli([*common, "--mask", mask], capsys, monkeypatch)
        assert_one_line_error(code, out, err, text, exit_code=2)
    fifo = tmp_path / "mask.fifo"
    os.mkfifo(fifo)
    with deadline():
        code, out, err = run_cli([*common, "--mask", str(fifo)], capsys, monkeypatch)
    assert_one_line_error(code, out, err, "not a regular file", exit_code=2)


def test_cli_eval_missing_dino_is_one_error_line(clips, capsys, monkeypatch):
    code, out, err = run_cli(["eval", str(clips["a"]), "--metrics", "tc", "--tc-model", "dino"], capsys, monkeypatch)
    assert_one_line_error(code, out, err, "hf download facebook/dino-vitb16")
    assert code == ModelUnavailable.exit_code


FAKE_QUERY_HUBCONF = '''
import torch

class Predictor(torch.nn.Module):
    """Stands in for CoTrackerPredictor with queries: each query moves by the bias of `model` every frame; the
    last query disappears after frame 1 for good."""
    def __init__(self):
        super().__init__()
        self.model = torch.nn.Linear(2, 2)

    def forward(self, video, queries=None, grid_size=0):
        t = video.shape[1]
        tracks = queries[:, None, :, 1:] + torch.arange(t)[None, :, None, None] * self.model.bias
        visible = torch.ones(1, t, queries.shape[1], dtype=torch.bool)
        visible[:, 2:, -1] = False
        return tracks.detach(), visible

def cotracker3_offline(*, pretrained=True, **kwargs):
    assert not pretrained
    return Predictor()
'''


def test_ftd_with_cotracker_queries(tmp_path):
    import torch

    (tmp_path / "repo").mkdir()
    (tmp_path / "repo" / "hubconf.py").write_text(FAKE_QUERY_HUBCONF)
    torch.save({"weight": torch.zeros(2, 2), "bias": torch.tensor([1.0, 0.0])}, tmp_path / "ckpt.pth")
    ev = Evaluator(EvalSettings(metrics=("ftd",), tracker="cotracker", grid_size=3, cotracker_repo=str(tmp_path / "repo"),
                                cotracker_checkpoint=str(tmp_path / "ckpt.pth")))
    video = moving(0, 1.0, 0.0, frames=4, size=32)
    result = ev.score(video, video, None)
    assert result["ftd"] == 0.0 and result["tracker"] == "cotracker3"
    assert result["ftd_points"] == {"all": 8, "grid": 9}  # the point lost for good is left out
