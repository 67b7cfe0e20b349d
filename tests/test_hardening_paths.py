"""Paths on `batch`, `report`, `eval` and `--config`: a file input that is a FIFO, device or folder is refused by
name without being opened; a manifest's image cell takes what `--image` takes and refuses what it refuses; an
output is never a row's image, and one that appears while the command works is kept, not replaced."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from helpers import deadline, one_error_line, run_cli
from ditflow.batch.manifest import read_manifest

MANIFEST = "video,prompt\nv.gif,a red circle\n"


def special(path: Path, kind: str) -> Path:
    """`path` made a FIFO, a folder, or a link to a device that never ends."""
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "folder":
        path.mkdir()
    else:
        path.symlink_to("/dev/zero")
    return path


# (argv with {x} for the odd path, its file name, the input's name in the message)
INPUTS = {
    "batch manifest": (["batch", "{x}"], "x.csv", "manifest"),
    "batch --config": (["batch", "{ok}", "--config", "{x}"], "c.toml", "config file"),
    "batch --setups-file": (["batch", "{ok}", "--setups-file", "{x}"], "s.toml", "--setups-file"),
    "report results": (["report", "{x}"], "r.json", "results"),
    "eval --manifest": (["eval", "--manifest", "{x}"], "e.csv", "manifest"),
}


@pytest.mark.parametrize("kind", ["fifo", "folder", "device"])
@pytest.mark.parametrize("case", list(INPUTS))
def test_a_file_input_that_is_no_regular_file_is_refused_by_name(case, kind, tmp_path, capsys, monkeypatch, no_model):
    argv, name, what = INPUTS[case]
    x = special(tmp_path / name, kind)
    (tmp_path / "ok.csv").write_text(MANIFEST)
    args = [a.format(x=x, ok=tmp_path / "ok.csv") for a in argv] + ["--cache", str(tmp_path / "cache")]
    with deadline():
        code, out, err = run_cli(args, capsys, monkeypatch)
    reason = "is a folder; give a file" if kind == "folder" else "is not a regular file (a device, FIFO or socket)"
    assert code == 2 and out == "" and f"{what} {x} {reason}" in one_error_line(err)


def test_a_missing_file_input_is_still_not_found(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["report", str(tmp_path / "gone.json")], capsys, monkeypatch)
    assert code == 2 and f"results not found: {tmp_path / 'gone.json'}" in one_error_line(err)


# -- a manifest's image cell ----------------------------------------------------------------------------------
def test_a_manifest_image_may_be_a_folder_of_frames_as_image_takes(tmp_path, ref_video):
    from ditflow.image import read_picture
    from ditflow.video import write_video

    write_video(read_picture(ref_video).pixels[None], tmp_path / "frames", fmt="png")
    (tmp_path / "runs.csv").write_text(f"video,prompt,image\n{ref_video},p,frames\n")
    [run] = read_manifest(tmp_path / "runs.csv", setups=["backbone"], seeds=[1]).runs
    assert run.error is None and run.image_path == str(tmp_path / "frames")


@pytest.mark.parametrize("kind", ["fifo", "device"])
def test_a_fifo_or_device_image_cell_fails_its_row_by_name(kind, tmp_path, ref_video):
    special(tmp_path / "x.png", kind)
    (tmp_path / "runs.csv").write_text(f"video,prompt,image\n{ref_video},p,x.png\n{ref_video},p,\n")
    with deadline():
        bad, fine = read_manifest(tmp_path / "runs.csv", setups=["backbone"], seeds=[1]).runs
    assert bad.error == ("image x.png is not a regular file (a device, FIFO or socket); give a picture, a video or a "
                         "folder of frames") and fine.error is None


# -- outputs ------------------------------------------------------------------------------------------------------
def test_results_never_replace_a_rows_image_even_with_overwrite(tmp_path, ref_video, capsys, monkeypatch, no_model):
    picture = tmp_path / "pic.png"
    picture.write_bytes(b"the picture")
    (tmp_path / "runs.csv").write_text(f"video,prompt,image\n{ref_video},p,pic.png\n")
    code, out, err = run_cli(["batch", str(tmp_path / "runs.csv"), "--csv", str(picture), "--overwrite",
                              "--cache", str(tmp_path / "cache")], capsys, monkeypatch)
    assert code == 2 and "is the image of row 1, which this run reads" in one_error_line(err)
    assert picture.read_bytes() == b"the picture"


def appears(path: Path, then=None):
    """A stand-in for a command's long step: `path` appears meanwhile (another run's file), then `then` runs."""
    def step(*args, **kwargs):
        path.write_text("precious")
        return then(*args, **kwargs) if then else []
    return step


@pytest.mark.parametrize("overwrite", [False, True])
def test_batch_results_that_appear_while_it_runs_are_kept(overwrite, tmp_path, ref_video, capsys, monkeypatch):
    (tmp_path / "runs.csv").write_text(f"video,prompt\n{ref_video},p\n")
    csv_out, json_out = tmp_path / "out.csv", tmp_path / "out.json"
    monkeypatch.setattr("ditflow.batch.run_batch", appears(csv_out))
    code, out, err = run_cli(["batch", str(tmp_path / "runs.csv"), "--csv", str(csv_out), "--json-out", str(json_out),
                              "--cache", str(tmp_path / "cache"), "-q"] + ["--overwrite"] * overwrite, capsys, monkeypatch)
    if overwrite:  # asked for: replaced as usual
        assert code == 0 and csv_out.read_text().startswith("video,prompt") and json.loads(json_out.read_text()) == []
        return
    line = one_error_line(err, f"{csv_out} already exists; choose another --csv or pass --overwrite")
    assert code == 2 and "it appeared while the batch ran" in line
    assert csv_out.read_text() == "precious" and not json_out.exists()


def test_report_files_that_appear_while_it_is_made_are_kept(tmp_path, capsys, monkeypatch):
    from ditflow.batch import report

    row = {"video": "v.gif", "prompt": "p", "setup": "backbone", "seed": 1, "motion_fidelity": 0.5, "status": "ok", "row": 1}
    (tmp_path / "r.json").write_text(json.dumps([row]))
    md, page = tmp_path / "r.md", tmp_path / "r.html"
    monkeypatch.setattr(report, "markdown", appears(md, report.markdown))
    code, out, err = run_cli(["report", str(tmp_path / "r.json"), "--md", str(md), "--html", str(page)], capsys, monkeypatch)
    assert code == 2 and "it appeared while the report was made" in one_error_line(err, f"{md} already exists")
    assert md.read_text() == "precious" and not page.exists()


def test_eval_results_that_appear_while_it_scores_are_kept(tmp_path, ref_video, capsys, monkeypatch):
    import ditflow.eval

    out_json = tmp_path / "scores.json"
    monkeypatch.setattr(ditflow.eval, "evaluate", appears(out_json, ditflow.eval.evaluate))
    code, out, err = run_cli(["eval", ref_video, "-r", ref_video, "--metrics", "mf", "--tracker", "lk", "--grid-size", "4",
                              "--json-out", str(out_json), "--cache", str(tmp_path / "cache"), "-q"], capsys, monkeypatch)
    assert code == 2 and "it appeared while the videos were scored" in one_error_line(err, f"{out_json} already exists")
    assert out_json.read_text() == "precious"
