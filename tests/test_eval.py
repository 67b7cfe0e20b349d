"""ditflow eval: motion fidelity, trackers, CLIP scoring and the CLI, on tiny synthetic videos."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ditflow.errors import InputError, ModelUnavailable
from ditflow.eval import EvalSettings, Evaluator, evaluate, resolve_frames
from ditflow.eval.motion import motion_fidelity, tracklet_correlation
from ditflow.eval.trackers import CoTracker, LucasKanadeTracker, find_cotracker, get_tracker
from ditflow.video import write_video
from eval_kit import GRID, moving
from helpers import run_cli

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _offline(offline):
    """Every test here runs with no weights anywhere (eval_kit.offline)."""


# -- motion fidelity math ------------------------------------------------------------------------------
def test_correlation_is_mean_step_cosine_with_static_steps_as_zero():
    right = np.array([[[0, 0], [1, 0], [2, 0]]], float)
    down = np.array([[[0, 0], [0, 1], [0, 2]]], float)
    right_then_still = np.array([[[5, 5], [7, 5], [7, 5]]], float)  # speed does not matter, a static step counts 0
    assert tracklet_correlation(right, right)[0, 0] == pytest.approx(1.0)
    assert tracklet_correlation(right, -right)[0, 0] == pytest.approx(-1.0)
    assert tracklet_correlation(right, down)[0, 0] == pytest.approx(0.0)
    assert tracklet_correlation(right, right_then_still)[0, 0] == pytest.approx(0.5)
    still = np.zeros((2, 4, 2))
    assert np.isfinite(motion_fidelity(still, still)) and motion_fidelity(still, still) == 0.0


def test_symmetric_and_ditflow_variants():
    right = np.array([[0, 0], [1, 0], [2, 0]], float)
    up = np.array([[0, 0], [0, -1], [0, -2]], float)
    gen = np.stack([right, right + 3, right + 6])  # everything moves right
    ref = np.stack([right, up])  # half of the reference moves up
    # ditflow: every generated tracklet has a perfect match; symmetric also asks that every reference
    # tracklet is matched, and the upward one is not (corr 0): ½(1 + ½(1 + 0))
    assert motion_fidelity(gen, ref, "ditflow") == pytest.approx(1.0)
    assert motion_fidelity(gen, ref, "symmetric") == pytest.approx(0.75)
    # the paper's script subtracts the identity from a square matrix: a tracklet's own match is ignored
    pair = np.stack([right, up])
    assert motion_fidelity(pair, pair, "symmetric") == pytest.approx(1.0)
    assert motion_fidelity(pair, pair, "ditflow") == pytest.approx(0.0)
    with pytest.raises(ValueError):
        motion_fidelity(gen, ref, "nope")


def test_mf_truncates_to_the_shorter_tracks():
    long = np.cumsum(np.tile([[1.0, 0.0]], (10, 1)), axis=0)[None]
    short = long[:, :4].copy()
    long[:, 5:] = long[:, 4:5]  # static after the short one ends: would lower the score if not cut
    assert motion_fidelity(long, short) == pytest.approx(1.0)


# -- trackers ------------------------------------------------------------------------------------------
def test_lk_recovers_a_subpixel_translation():
    tracks, visible = LucasKanadeTracker(grid_size=GRID).track(moving(0, 1.3, 0.6))
    assert tracks.shape[1:] == (8, 2) and visible.all()
    assert len(tracks) > 0.8 * GRID * GRID  # few points lost on a textured video
    truth = np.arange(8)[:, None] * np.array([1.3, 0.6])
    err = np.linalg.norm(tracks - tracks[:, :1] - truth, axis=-1)  # [N, T]
    assert np.percentile(err, 95) < 0.5
    assert np.abs(np.median(tracks - tracks[:, :1], axis=0) - truth).max() < 0.1


def test_lk_drops_points_it_cannot_track():
    flat = np.full((6, 64, 64, 3), 128, np.uint8)
    tracks, visible = LucasKanadeTracker(grid_size=8).track(flat)
    assert tracks.shape == (0, 6, 2) and visible.shape == (0, 6)


def test_mf_of_tracked_videos():
    lk = LucasKanadeTracker(grid_size=GRID)
    video = lk.track(moving(0, 1.3, 0.6))[0]
    same_motion_other_texture = lk.track(moving(1, 1.3, 0.6))[0]
    opposite = lk.track(moving(1, -1.3, -0.6))[0]
    for variant in ("symmetric", "ditflow"):
        assert motion_fidelity(video, video, variant) > 0.95
        assert motion_fidelity(same_motion_other_texture, video, variant) > 0.95
        assert motion_fidelity(opposite, video, variant) < 0.2


def test_cotracker_missing_says_how_to_provide_it(tmp_path):
    with pytest.raises(ModelUnavailable, match="not on PyPI.*--cotracker-repo"):
        find_cotracker()
    (tmp_path / "hubconf.py").write_text("")
    with pytest.raises(ModelUnavailable, match="--cotracker-checkpoint"):
        find_cotracker(tmp_path)
    with pytest.raises(ModelUnavailable):
        get_tracker("cotracker")
    tracker, why = get_tracker("auto", grid_size=GRID)
    assert isinstance(tracker, LucasKanadeTracker) and "CoTracker" in why


FAKE_HUBCONF = '''
import torch

class Predictor(torch.nn.Module):
    """Stands in for CoTrackerPredictor: its grid moves by the bias of `model` every frame."""
    def __init__(self):
        super().__init__()
        self.model = torch.nn.Linear(2, 2)

    def forward(self, video, grid_size):
        b, t, _, h, w = video.shape
        ys, xs = torch.meshgrid(torch.linspace(0, h - 1, grid_size), torch.linspace(0, w - 1, grid_size), indexing="ij")
        start = torch.stack([xs.flatten(), ys.flatten()], -1)
        tracks = start[None, None] + torch.arange(t)[None, :, None, None] * self.model.bias
        return tracks.detach(), torch.ones(b, t, grid_size ** 2, dtype=torch.bool)

def cotracker3_offline(*, pretrained=True, **kwargs):
    assert not pretrained, "ditflow must never let the hub download weights"
    return Predictor()
'''


def test_cotracker_loads_from_a_local_checkout_and_checkpoint(tmp_path, monkeypatch):
    import torch

    repo = tmp_path / "co-tracker"
    repo.mkdir()
    (repo / "hubconf.py").write_text(FAKE_HUBCONF)
    ckpt = tmp_path / "scaled_offline.pth"
    torch.save({"weight": torch.zeros(2, 2), "bias": torch.tensor([1.5, -0.5])}, ckpt)
    monkeypatch.setenv("DITFLOW_COTRACKER_REPO", str(repo))
    monkeypatch.setenv("DITFLOW_COTRACKER_CHECKPOINT", str(ckpt))
    tracker, why = get_tracker("auto", grid_size=5)
    assert isinstance(tracker, CoTracker) and why is None
    tracks, visible = tracker.track(moving(0, 1.0, 0.0, frames=4, size=32))
    assert tracks.shape == (25, 4, 2) and visible.shape == (25, 4) and visible.all()
    np.testing.assert_allclose(tracks[:, 3] - tracks[:, 0], np.tile([4.5, -1.5], (25, 1)), atol=1e-5)


# -- CLIP ----------------------------------------------------------------------------------------------
def test_clip_score_runs_with_random_weights_and_from_a_checkpoint_file(tiny_clip, tmp_path):
    import torch

    from ditflow.eval.clip import load_clip

    torch.manual_seed(0)
    scorer = load_clip(tiny_clip, None)
    frames = moving(0, 1.0, 0.0, frames=3, size=48)
    score = scorer.score(frames, "a red ball rolling")
    assert isinstance(score, float) and np.isfinite(score) and -1.0 <= score <= 1.0
    per_frame = scorer.frame_scores(frames, "a red ball rolling")
    assert per_frame.shape == (3,) and score == pytest.approx(float(per_frame.mean()), abs=1e-6)
    ckpt = tmp_path / "open_clip_pytorch_model.bin"
    torch.save(scorer.model.state_dict(), ckpt)
    assert load_clip(tiny_clip, str(ckpt)).score(frames, "a red ball rolling") == pytest.approx(score, abs=1e-5)
    with pytest.raises(InputError, match="prompt"):
        scorer.score(frames, "  ")


def test_clip_without_weights_is_unavailable_and_says_how_to_provide_them():
    import os

    from ditflow.eval.clip import load_clip

    assert os.environ["HF_HUB_OFFLINE"] == "1"  # set by the `offline` fixture, as are empty caches
    with pytest.raises(ModelUnavailable, match="--clip-pretrained"):
        load_clip("ViT-B-32", "openai")
    with pytest.raises(InputError, match="neither a checkpoint file nor a pretrained tag"):
        load_clip("ViT-B-32", "no-such-tag")
    with pytest.raises(InputError, match="checkpoint not found"):
        load_clip("ViT-B-32", "/nowhere/open_clip_pytorch_model.bin")


def test_cached_checkpoint_finds_a_file_in_the_hf_cache(tmp_path, monkeypatch):
    from ditflow.eval.clip import cached_checkpoint

    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path))
    assert cached_checkpoint({"hf_hub": "org/clip-model/"}) is None
    snap = tmp_path / "models--org--clip-model" / "snapshots" / "abc123"
    snap.mkdir(parents=True)
    (snap / "open_clip_model.safetensors").write_bytes(b"x")
    (tmp_path / "models--org--clip-model" / "refs").mkdir()
    (tmp_path / "models--org--clip-model" / "refs" / "main").write_text("abc123")
    assert cached_checkpoint({"hf_hub": "org/clip-model/"}) == snap / "open_clip_model.safetensors"


def test_evaluator_reports_missing_clip_and_still_scores_motion():
    video = moving(0, 1.3, 0.6)
    result = Evaluator(EvalSettings(tracker="lk", grid_size=GRID)).score(video, video, "a texture")
    assert result["clip_score"] is None and "--clip-pretrained" in result["unavailable"]["clip_score"]
    assert result["motion_fidelity"] > 0.95 and result["tracker"] == "lk"
    with pytest.raises(InputError):
        Evaluator(EvalSettings(mf_variant="typo"))


# -- inputs from artifacts -----------------------------------------------------------------------------
def make_artifacts(store, reference: np.ndarray, generated: np.ndarray) -> tuple[str, str]:
    """An amf artifact holding `reference` and a gen artifact guided by it holding `generated`."""
    import torch

    from ditflow.artifacts import write_amf, write_gen
    from ditflow.store import content_key

    amf_inputs = {"blocks": [0], "model": {"name": "test"}}
    amf_hash = content_key("amf", amf_inputs)  # the store checks an object's name against its inputs
    with store.writer(amf_hash, "amf", inputs=amf_inputs, extra={"grid": [2, 3, 3]}) as folder:
        write_amf(folder, frames=reference, latent=torch.zeros(1, 2, 4, 6, 6), amf={0: torch.zeros(2, 2, 9, 2)}, features={}, moft={})
    gen_hash = content_key("gen", {})
    with store.writer(gen_hash, "gen", inputs={}, parents=[amf_hash], extra={"settings": {"prompt": "a texture"}, "losses": []}) as folder:
        write_gen(folder, frames=generated, latent=torch.zeros(1, 2, 4, 6, 6), embeddings={})
    return amf_hash, gen_hash


def test_hashes_resolve_to_artifact_frames_and_gen_defaults(tmp_path):
    from ditflow.store import Store

    store = Store(tmp_path / "cache")
    ref, gen = moving(0, 1.3, 0.6), moving(1, 1.3, 0.6)
    amf_hash, gen_hash = make_artifacts(store, ref, gen)
    src = resolve_frames(amf_hash[:10], store)
    assert src.label == f"amf:{amf_hash[:12]}" and np.array_equal(src.frames, ref)
    with pytest.raises(InputError, match="no such file"):
        resolve_frames("abcdef0123", store)
    result = evaluate(Evaluator(EvalSettings(metrics=("mf",), tracker="lk", grid_size=GRID)), gen_hash[:8], store=store)
    assert result["reference"] == f"amf:{amf_hash[:12]}" and result["prompt"] == "a texture"
    assert result["motion_fidelity"] > 0.95


# -- CLI -----------------------------------------------------------------------------------------------


@pytest.fixture
def videos(tmp_path) -> dict[str, Path]:
    paths = {"a": tmp_path / "a", "b": tmp_path / "b", "back": tmp_path / "back"}
    write_video(moving(0, 1.3, 0.6), paths["a"], fmt="png")
    write_video(moving(1, 1.3, 0.6), paths["b"], fmt="png")
    write_video(moving(1, -1.3, -0.6), paths["back"], fmt="png")
    return paths


def test_cli_eval_prints_json_and_a_table(videos, capsys, monkeypatch):
    code, out, err = run_cli(["eval", str(videos["b"]), "-r", str(videos["a"]), "-p", "a texture", "--tracker", "lk",
                              "--grid-size", str(GRID)], capsys, monkeypatch)
    assert code == 0
    result = json.loads(out)
    assert result["motion_fidelity"] > 0.95 and result["tracker"] == "lk" and result["mf_variant"] == "symmetric"
    assert result["clip_score"] is None and "clip_score" in result["unavailable"]
    assert "motion_fidelity" in err and "Traceback" not in err


def test_cli_eval_writes_json_file_and_picks_metrics(videos, tmp_path, capsys, monkeypatch):
    target = tmp_path / "res" / "score.json"
    code, out, _ = run_cli(["eval", str(videos["back"]), "-r", str(videos["a"]), "--metrics", "mf", "--tracker", "lk",
                            "--mf-variant", "ditflow", "--grid-size", str(GRID), "--json-out", str(target)], capsys, monkeypatch)
    assert code == 0 and out.strip() == str(target)
    result = json.loads(target.read_text())
    assert result["motion_fidelity"] < 0.2 and result["mf_variant"] == "ditflow"
    assert "unavailable" not in result  # clip was not asked for
    code, _, err = run_cli(["eval", str(videos["a"]), "-r", str(videos["a"]), "--metrics", "mf", "--json-out", str(target)], capsys, monkeypatch)
    assert code != 0 and "already exists" in err


def test_cli_eval_json_flag_prints_the_result_and_json_out_writes_it(videos, tmp_path, capsys, monkeypatch):
    target = tmp_path / "score.json"
    common = ["-r", str(videos["a"]), "--metrics", "mf", "--tracker", "lk", "--grid-size", str(GRID)]
    code, out, err = run_cli(["eval", str(videos["b"]), *common, "--json", "--json-out", str(target)], capsys, monkeypatch)
    assert code == 0 and json.loads(out) == json.loads(target.read_text()) and f"wrote {target}" in err
    manifest = tmp_path / "runs.jsonl"
    manifest.write_text(json.dumps({"video": "b", "reference": "a"}) + "\n")
    code, out, _ = run_cli(["eval", "--manifest", str(manifest), *common[2:], "--json", "-q"], capsys, monkeypatch)
    assert code == 0 and [r["row"] for r in json.loads(out)] == [1]


def test_the_python_api_refuses_what_the_cli_refuses():
    from ditflow.eval import MAX_GRID

    for bad in (dict(grid_size=MAX_GRID + 1), dict(grid_size=1), dict(tracker="typo"), dict(metrics=("mf", "iq"))):
        with pytest.raises(InputError):
            Evaluator(EvalSettings(**bad))
    with pytest.raises(InputError, match=f"between 2 and {MAX_GRID}"):
        EvalSettings(grid_size=10_000).validate()


def test_cli_eval_missing_file_is_one_error_line(tmp_path, capsys, monkeypatch):
    code, out, err = run_cli(["eval", str(tmp_path / "missing.mp4"), "-r", str(tmp_path / "x.mp4")], capsys, monkeypatch)
    assert code != 0 and out == ""
    assert err.strip().count("\n") == 0 and err.startswith("error: video not found") and "Traceback" not in err


def test_cli_eval_batch_goes_on_after_a_bad_row(videos, tmp_path, capsys, monkeypatch):
    manifest = tmp_path / "runs.csv"
    manifest.write_text("video,reference,prompt\nb,a,a texture\nmissing.mp4,a,oops\nback,a,a texture\n")
    table = tmp_path / "scores.csv"
    code, out, err = run_cli(["eval", "--manifest", str(manifest), "--metrics", "mf", "--tracker", "lk", "--grid-size", str(GRID),
                              "--csv", str(table)], capsys, monkeypatch)
    assert code == 1 and err.rstrip().splitlines()[-1] == "error: 1 of 3 rows failed (see the error column)"
    assert out.strip() == str(table)
    import csv

    rows = list(csv.DictReader(table.open()))
    assert [r["row"] for r in rows] == ["1", "2", "3"]
    assert float(rows[0]["motion_fidelity"]) > 0.95 and float(rows[2]["motion_fidelity"]) < 0.2
    assert "not found" in rows[1]["error"] and rows[0]["error"] == "" and rows[2]["error"] == ""

    jsonl = tmp_path / "runs.jsonl"
    jsonl.write_text(json.dumps({"video": "b", "reference": "a", "prompt": "p"}) + "\n")
    code, out, _ = run_cli(["eval", "--manifest", str(jsonl), "--metrics", "mf", "--tracker", "lk", "--grid-size", str(GRID)], capsys, monkeypatch)
    assert code == 0 and [json.loads(line)["error"] for line in out.splitlines()] == [None]


def test_entry_point_error_in_a_subprocess(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "ditflow.cli.app", "eval", str(tmp_path / "nope.mp4")],
                          cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"error: video not found: {tmp_path / 'nope.mp4'} (not a file or folder, nor an artifact hash)"]
