"""What ditflow writes and says: --out checked before any model loads, png folders never lose a user's files,
input fitting said on stderr, eval's nothing-to-score / few-tracks cases, model-missing hints, make transfer."""
from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

from _reliability import assert_one_line_error, fake_gen, snapshot, temporaries
from conftest import FRAMES, HEIGHT, WIDTH, run_cli
from ditflow.errors import InputError, ModelUnavailable
from ditflow.video import check_output, crop_box, fit_frames, fit_note, read_video, resize_frames, write_video

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    return lambda *argv: run_cli([*argv, "--cache", str(tmp_path / "cache")], capsys, monkeypatch)


@pytest.fixture
def fake_guide(monkeypatch):
    """guide and inject return a small fake artifact at once: the CLI's writing, without a model."""
    import ditflow.stages

    monkeypatch.setattr(ditflow.stages, "guide", lambda *a, **k: fake_gen())
    monkeypatch.setattr(ditflow.stages, "inject", lambda *a, **k: fake_gen())


@pytest.fixture
def stage_forbidden(monkeypatch):
    """Any stage call fails the test: the check must come before the model would load."""
    import ditflow.stages

    def forbidden(*a, **k):
        raise AssertionError("the stage ran although --out was unusable")

    for name in ("guide", "inject", "extract"):
        monkeypatch.setattr(ditflow.stages, name, forbidden)


def frame_folder(path: Path, n: int, value: int = 50) -> Path:
    write_video(np.full((n, 8, 8, 3), value, np.uint8), path, fmt="png")
    return path


# -- 1. png --out folders ------------------------------------------------------------------------------
def test_png_overwrite_refuses_a_folder_holding_other_files(cli, fake_guide, tmp_path):
    out = frame_folder(tmp_path / "frames", 2)
    (out / "notes.txt").write_text("mine")
    (out / "sub").mkdir()
    (out / "sub" / "0000.png").write_bytes(b"keep")
    before = snapshot(tmp_path)
    code, o, err = cli("guide", "--amf", "abc123", "-p", "x", "--format", "png", "--out", str(out), "--overwrite", "-q")
    assert_one_line_error(code, o, err, "holds files other than ditflow's frames", exit_code=2)
    assert snapshot(tmp_path) == before


def test_png_overwrite_of_the_parent_folder_deletes_nothing(cli, fake_guide, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    (work / "script.sh").write_text("echo hi")
    (tmp_path / "notes.txt").write_text("mine")
    monkeypatch.chdir(work)
    before = snapshot(tmp_path)
    code, o, err = cli("guide", "--amf", "abc123", "-p", "x", "--format", "png", "--out", "..", "--overwrite", "-q")
    assert_one_line_error(code, o, err, "holds files other than ditflow's frames")
    assert snapshot(tmp_path) == before


def test_png_overwrite_replaces_only_frames_and_keeps_the_folder_mode(cli, fake_guide, tmp_path):
    out = frame_folder(tmp_path / "frames", 5)
    out.chmod(0o751)
    code, o, _ = cli("guide", "--amf", "abc123", "-p", "x", "--format", "png", "--out", str(out), "--overwrite", "-q")
    assert code == 0 and o.strip() == "ab" * 32
    assert sorted(p.name for p in out.iterdir()) == ["0000.png", "0001.png", "0002.png"]  # stale 0003, 0004 gone
    assert np.array_equal(read_video(out), fake_gen().frames)
    assert (out.stat().st_mode & 0o777) == 0o751 and temporaries(tmp_path) == []


def test_new_png_folder_gets_the_umask_permissions(tmp_path):
    old = os.umask(0o027)
    try:
        write_video(fake_gen().frames, tmp_path / "new" / "frames", fmt="png")
    finally:
        os.umask(old)
    for folder in (tmp_path / "new", tmp_path / "new" / "frames"):
        assert (folder.stat().st_mode & 0o777) == 0o750  # not mkdtemp's 0700


# -- 2. --out checked before the model loads -------------------------------------------------------------
@pytest.mark.parametrize("case, flags, text", [
    ("taken", ["--out", "{taken}"], "already exists"),
    ("folder-for-mp4", ["--out", "{folder}", "--overwrite"], "is a folder"),
    ("file-for-png", ["--out", "{taken}", "--format", "png", "--overwrite"], "is a file"),
    ("unknown-format", ["--out", "{new}", "--format", "avi"], "unknown output format"),
    ("parent-is-a-file", ["--out", "{taken}/x.mp4"], "is a file, not a folder"),
])
def test_unusable_out_fails_before_the_stage_runs(cli, stage_forbidden, tmp_path, case, flags, text):
    taken = tmp_path / "taken.mp4"
    taken.write_bytes(b"old video")
    (tmp_path / "folder").mkdir()
    names = {"taken": str(taken), "folder": str(tmp_path / "folder"), "new": str(tmp_path / "new.avi")}
    argv = [f.format(**names) for f in flags]
    before = snapshot(tmp_path)
    for command in (["guide", "--amf", "abc123"], ["inject", "--emb", "abc123"]):
        start = time.perf_counter()
        code, o, err = cli(*command, "-p", "x", *argv, "-q")
        assert time.perf_counter() - start < 5  # a model load takes far longer
        assert_one_line_error(code, o, err, text, exit_code=2)
    assert snapshot(tmp_path) == before


def test_eval_and_viz_check_their_outputs_before_reading_videos(cli, tmp_path, monkeypatch):
    import ditflow.eval

    def forbidden(*a, **k):
        raise AssertionError("scored or read although the output was taken")

    monkeypatch.setattr(ditflow.eval, "evaluate", forbidden)
    monkeypatch.setattr(ditflow.eval, "resolve_frames", forbidden)
    taken = tmp_path / "scores.json"
    taken.write_text("{}")
    before = snapshot(tmp_path)
    assert_one_line_error(*cli("eval", "a.mp4", "-r", "b.mp4", "--json-out", str(taken)), "already exists; choose another --json-out")
    assert_one_line_error(*cli("eval", "--manifest", "m.csv", "--csv", str(taken)), "already exists; choose another --csv")
    assert_one_line_error(*cli("viz", "compare", "a.mp4", "b.mp4", "--out", str(taken / "x.gif")),
                          "is a file, not a folder")
    assert snapshot(tmp_path) == before


def test_check_output_is_pure_and_resolves_the_format(tmp_path):
    assert check_output(tmp_path / "a" / "b.gif") == (tmp_path / "a" / "b.gif", "gif")
    assert check_output(tmp_path / "frames") == (tmp_path / "frames", "png")
    assert not (tmp_path / "a").exists()
    fifo = tmp_path / "pipe.mp4"
    os.mkfifo(fifo)
    with pytest.raises(InputError, match="not a regular file"):
        check_output(fifo, overwrite=True)


# -- 5. fitting the input to the model, said on stderr ---------------------------------------------------
def test_fit_note_says_resize_aspect_and_cut():
    note = fit_note((17, 480, 720), 24, 64, 64)
    assert note == "resized 720x480 -> 64x64 (aspect 1.50 -> 1.00; --crop center keeps it); used the first 17 of 24 frames"
    assert fit_note((17, 480, 720), 17, 32, 48) == "resized 720x480 -> 48x32"
    assert fit_note((9, 32, 48), 9, 32, 48) is None
    assert fit_note((9, 480, 720), None, 64, 64, "center") == "cropped 720x480 to its centre 480x480; resized 480x480 -> 64x64"


def test_center_crop_keeps_the_middle_at_the_target_aspect():
    frames = np.zeros((2, 40, 60, 3), np.uint8)
    frames[:, :, 10:50] = 255  # the centred 40x40 region
    assert crop_box(40, 60, 8, 8) == (0, 10, 40, 40) and crop_box(60, 40, 8, 16) == (20, 0, 20, 40)
    assert (fit_frames(frames, 8, 8, "center") == 255).all()
    assert (fit_frames(frames, 8, 8, "none") == 0).any()
    with pytest.raises(InputError, match="--crop must be"):
        fit_frames(frames, 8, 8, "diagonal")


@pytest.mark.parametrize("height, width", [(0, 8), (8, -4), (-1, -1)])
def test_resize_refuses_sizes_that_are_not_positive(height, width):
    with pytest.raises(InputError, match="sizes must be positive") as e:
        resize_frames(np.zeros((1, 4, 4, 3), np.uint8), height, width)
    assert "\n" not in str(e.value)


def test_extract_notes_the_fitting_and_crop_changes_the_hash(cli, tiny_rope, tmp_path):
    square = np.zeros((FRAMES + 3, 40, 40, 3), np.uint8)
    for t in range(len(square)):  # moving: a gif keeps identical frames as one
        square[t, 10:30, t:t + 20] = 255
    video = write_video(square, tmp_path / "square.gif")
    flags = ["--model", tiny_rope, "--frames", str(FRAMES), "--height", str(HEIGHT), "--width", str(WIDTH), "--blocks", "1"]
    code, out, err = cli("extract", str(video), *flags)
    note = f"note: resized 40x40 -> {WIDTH}x{HEIGHT} (aspect 1.00 -> 1.50; --crop center keeps it); used the first {FRAMES} of {FRAMES + 3} frames"
    assert code == 0 and note in err
    plain = out.strip()
    code, out, err = cli("extract", str(video), *flags)  # a cache hit says it again
    assert code == 0 and out.strip() == plain and note in err
    code, out, err = cli("extract", str(video), *flags, "--crop", "center")
    assert code == 0 and out.strip() != plain and "cropped 40x40 to its centre 40x27" in err
    assert_one_line_error(*cli("extract", str(video), *flags, "--crop", "diagonal"), "--crop must be one of 'none', 'center'")


# -- 6. eval -------------------------------------------------------------------------------------------
@pytest.fixture
def offline(tmp_path_factory, monkeypatch):
    home = tmp_path_factory.mktemp("home")
    for var, value in {"HOME": home, "HF_HOME": home / "hf", "XDG_CACHE_HOME": home / "cache", "TORCH_HOME": home / "torch",
                       "HF_HUB_OFFLINE": "1"}.items():
        monkeypatch.setenv(var, str(value))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)


def sparse_texture(frames: int = 6, size: int = 160, patch: int = 6) -> np.ndarray:
    """A flat grey video with one small textured patch moving right: only the points on it can be tracked."""
    rng = np.random.default_rng(0)
    tex = rng.integers(0, 255, (patch, patch, 3), dtype=np.uint8)
    out = np.full((frames, size, size, 3), 128, np.uint8)
    for t in range(frames):
        out[t, 80:80 + patch, 20 + t:20 + t + patch] = tex
    return out


def test_eval_with_nothing_to_compute_is_one_error_line(cli, offline, tmp_path):
    video = write_video(sparse_texture(), tmp_path / "v.gif")
    before = snapshot(tmp_path / "v.gif")
    code, out, err = cli("eval", str(video), "-p", "a patch", "--json-out", str(tmp_path / "s.json"))
    assert_one_line_error(code, out, err, "nothing to score: clip_score: CLIP weights", exit_code=6)
    assert "motion_fidelity: no reference video given" in err
    assert_one_line_error(*cli("eval", str(video), "--metrics", "mf"), "nothing to score", exit_code=2)
    assert not (tmp_path / "s.json").exists() and snapshot(tmp_path / "v.gif") == before


def test_mf_from_few_tracks_warns_and_labels_the_counts(cli, tmp_path):
    video = write_video(sparse_texture(), tmp_path / "v", fmt="png")  # lossless: a gif's dither is texture
    code, out, err = cli("eval", str(video), "-r", str(video), "--metrics", "mf", "--tracker", "lk", "--grid-size", "16")
    assert code == 0
    result = json.loads(out)
    tracks = result["tracks"]
    assert 0 < tracks["video"] < 10 and tracks["grid"] == 256 and result["motion_fidelity"] is not None
    assert len(result["warnings"]) == 2 and "treat it as unreliable" in result["warnings"][0]
    assert sum(line.startswith("warning: motion fidelity rests on only") for line in err.splitlines()) == 2
    from ditflow.cli.eval import _tracks_note

    assert "tracks: video" in err  # the table's note (folded to the column's width)
    assert _tracks_note(result) == f"tracks: video {tracks['video']}, reference {tracks['reference']} of 256 grid points (few: see the warning)"


def test_many_tracks_give_no_warning():
    from ditflow.eval import few_tracks_warning

    assert few_tracks_warning(2, 3025, "generated video").startswith("motion fidelity rests on only 2 of 3025")
    assert few_tracks_warning(30, 3025, "reference") is not None  # under 1% of 55x55
    assert few_tracks_warning(31, 3025, "reference") is None and few_tracks_warning(10, 16, "reference") is None


# -- 7. model-missing hints ---------------------------------------------------------------------------
def test_missing_model_path_says_no_folder_and_an_id_says_hf_download(offline, tmp_path, monkeypatch):
    from ditflow.backbone import looks_like_path, resolve_folder

    monkeypatch.chdir(tmp_path)
    (tmp_path / "models").mkdir()
    for path in ("./nope", "/nonexistent/model", "~/no-model", "models/nope"):
        assert looks_like_path(path)
        with pytest.raises(ModelUnavailable, match="^no model folder at "):
            resolve_folder(path)
    assert not looks_like_path("THUDM/CogVideoX-5b") and not looks_like_path("5b")
    with pytest.raises(ModelUnavailable, match=r"`hf download THUDM/CogVideoX-5b`"):
        resolve_folder("5b")


def test_cli_missing_model_path_is_one_line(cli, offline, ref_video, tmp_path):
    assert_one_line_error(*cli("extract", ref_video, "--model", str(tmp_path / "no-model"), "-q"),
                          f"no model folder at {tmp_path / 'no-model'}", exit_code=6)


# -- 8. make transfer ----------------------------------------------------------------------------------
def test_make_transfer_defaults_to_the_toy_model_and_writes_a_video():
    proc = subprocess.run(["make", "-n", "transfer"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    extract, guide = [line for line in proc.stdout.splitlines() if " extract " in line or " guide " in line]
    assert "--model toy" in extract and "--frames" not in extract and "--height" not in extract
    assert "--out out/transfer.mp4 --overwrite" in guide
