"""Faults while writing (a full disk midway) and inputs that could hang or crash: each is one `error:` line,
leaves no temporary file and changes nothing else."""
from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import numpy as np
import pytest

from helpers import assert_one_line_error, deadline, entries, fake_gen, run_cli, temporaries
from ditflow.errors import InputError, OutputError
from ditflow.video import read_video, write_video

ENOSPC = "No space left on device"


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    return lambda *argv: run_cli([*argv, "--cache", str(tmp_path / "cache")], capsys, monkeypatch)


@pytest.fixture
def fake_guide(monkeypatch):
    import ditflow.stages

    monkeypatch.setattr(ditflow.stages, "guide", lambda *a, **k: fake_gen(value=90))


def full_disk_after(monkeypatch, calls: int):
    """imageio's writer writes a few bytes to its target, then fails as a full disk would, from call `calls` on."""
    import imageio.v3 as iio

    real, count = iio.imwrite, {"n": 0}

    def imwrite(uri, *args, **kwargs):
        count["n"] += 1
        if count["n"] >= calls:
            Path(uri).write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(uri, *args, **kwargs)

    monkeypatch.setattr(iio, "imwrite", imwrite)


# -- 3. write failures ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["new.mp4", "new.gif"])
def test_full_disk_writing_a_video_is_one_line_and_leaves_nothing(cli, fake_guide, tmp_path, monkeypatch, name):
    full_disk_after(monkeypatch, 1)
    out = tmp_path / "videos" / "sub" / name  # folders made for it go again too
    before = entries(tmp_path)
    code, o, err = cli("guide", "--amf", "abc123", "-p", "x", "--out", str(out), "-q")
    assert_one_line_error(code, o, err, f"cannot write {out}: {ENOSPC}", exit_code=7)
    assert entries(tmp_path) == before


def test_full_disk_overwriting_keeps_the_old_video(cli, fake_guide, tmp_path, monkeypatch):
    out = tmp_path / "old.mp4"
    out.write_bytes(b"the old video")
    full_disk_after(monkeypatch, 1)
    before = entries(tmp_path)
    assert_one_line_error(*cli("guide", "--amf", "abc123", "-p", "x", "--out", str(out), "--overwrite", "-q"), ENOSPC, exit_code=7)
    assert entries(tmp_path) == before


def test_full_disk_midway_through_png_frames(tmp_path, monkeypatch):
    full_disk_after(monkeypatch, 2)
    with pytest.raises(OutputError, match=ENOSPC):
        write_video(fake_gen().frames, tmp_path / "frames", fmt="png")
    assert list(tmp_path.iterdir()) == []
    monkeypatch.undo()
    old = write_video(np.zeros((4, 8, 8, 3), np.uint8), tmp_path / "frames", fmt="png")
    before = entries(tmp_path)
    full_disk_after(monkeypatch, 2)
    with pytest.raises(OutputError, match=ENOSPC):
        write_video(fake_gen().frames, old, fmt="png", overwrite=True)
    assert entries(tmp_path) == before  # every old frame intact, no .tmp-*


def test_full_disk_writing_eval_json_and_csv(cli, tmp_path, monkeypatch):
    import csv

    video = write_video(np.random.default_rng(0).integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / "v", fmt="png")
    manifest = tmp_path / "runs.csv"
    manifest.write_text("video,reference,prompt\nv,v,x\nv,v,y\n")
    real_write = Path.write_text

    def write_text(self, text, *a, **k):
        if self.name.startswith(".tmp-"):
            real_write(self, text[:5], *a, **k)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_write(self, text, *a, **k)

    monkeypatch.setattr(Path, "write_text", write_text)
    before = entries(tmp_path)
    target = tmp_path / "scores.json"
    common = ["--metrics", "mf", "--tracker", "lk", "--grid-size", "6"]
    code, out, err = cli("eval", str(video), "-r", str(video), *common, "--json-out", str(target), "-q")
    assert_one_line_error(code, out, err, f"cannot write {target}: {ENOSPC}", exit_code=7)
    real_row = csv.DictWriter.writerow

    def writerow(self, row):
        if row.get("row") == 2:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real_row(self, row)

    monkeypatch.setattr(csv.DictWriter, "writerow", writerow)
    table = tmp_path / "scores.csv"
    code, out, err = cli("eval", "--manifest", str(manifest), *common, "--csv", str(table), "-q")
    assert_one_line_error(code, out, err, f"cannot write {table}: {ENOSPC}", exit_code=7)
    assert entries(tmp_path) == before and temporaries(tmp_path) == []


def test_viz_loss_full_disk(tmp_path, monkeypatch):
    import matplotlib.figure

    from ditflow.viz import plot_losses

    def savefig(self, fname, **k):
        Path(fname).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", savefig)
    with pytest.raises(OutputError, match=ENOSPC):
        plot_losses([{"step": 0, "timestep": 900, "opt_step": 0, "loss": 1.0}], tmp_path / "loss.png")
    assert list(tmp_path.iterdir()) == []


# -- 4. inputs that must not hang or crash ---------------------------------------------------------------
def special_inputs(tmp_path: Path) -> dict[str, Path]:
    fifo = tmp_path / "x.mp4"
    os.mkfifo(fifo)
    zero = tmp_path / "z.mp4"
    zero.symlink_to("/dev/zero")
    return {"fifo": fifo, "zero": zero}


@pytest.mark.parametrize("kind", ["fifo", "zero"])
def test_extract_refuses_a_fifo_or_device_without_opening_it(cli, tiny_rope, tmp_path, kind):
    path = special_inputs(tmp_path)[kind]
    before = entries(tmp_path)
    with deadline():
        code, out, err = cli("extract", str(path), "--model", tiny_rope, "-q")
    assert_one_line_error(code, out, err, f"{path} is not a regular file", exit_code=2)
    assert entries(tmp_path) == before


def test_eval_refuses_a_fifo_without_opening_it(cli, tmp_path):
    inputs = special_inputs(tmp_path)
    with deadline():
        code, out, err = cli("eval", str(inputs["fifo"]), "-r", str(inputs["zero"]), "--metrics", "mf")
    assert_one_line_error(code, out, err, "is not a regular file", exit_code=2)


def test_a_fifo_among_the_frames_is_refused(tmp_path):
    from ditflow.stages import video_digest

    folder = write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "frames", fmt="png")
    os.mkfifo(folder / "0002.png")
    with deadline():
        video_digest(folder)  # hashes the regular files only
        with pytest.raises(InputError, match="0002.png is not a regular file"):
            read_video(folder)


def non_utf8_folder(tmp_path: Path, good: int = 2) -> Path:
    """Frames named with bytes that are no UTF-8 (b'\\xff0.png'...), as a camera or an old archive may leave."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for i in range(good):
        from PIL import Image

        Image.fromarray(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)).save(os.fsencode(folder) + b"/\xff%d.png" % i, format="PNG")
    return folder


def test_non_utf8_frame_names_are_read_hashed_and_scored(cli, tmp_path):
    from ditflow.stages import video_digest

    folder = non_utf8_folder(tmp_path)
    assert read_video(folder).shape == (2, 16, 16, 3) and len(video_digest(folder)) == 64
    code, out, err = cli("eval", str(folder), "-r", str(folder), "--metrics", "mf", "--tracker", "lk", "--grid-size", "4")
    assert code == 0 and json.loads(out)["frames"] == 2


def test_an_unreadable_non_utf8_frame_is_one_printable_line(cli, tiny_rope, tmp_path):
    folder = non_utf8_folder(tmp_path)
    Path(os.fsdecode(os.fsencode(folder) + b"/\xff9.png")).write_bytes(b"not a png")
    code, out, err = cli("extract", str(folder), "--model", tiny_rope, "--frames", "3", "-q")
    assert_one_line_error(code, out, err, "cannot read frame", exit_code=2)
    assert "\\xff9.png" in err


def test_frames_of_different_sizes_name_the_odd_one(cli, tmp_path):
    from PIL import Image

    folder = tmp_path / "frames"
    folder.mkdir()
    Image.new("RGB", (16, 16)).save(folder / "0000.png")
    Image.new("RGB", (16, 12)).save(folder / "0001.png")
    code, out, err = cli("eval", str(folder), "-r", str(folder), "--metrics", "mf")
    assert_one_line_error(code, out, err, "do not all have the same size: 0001.png is 16x12, 0000.png 16x16", exit_code=2)


def test_an_image_named_folder_among_frames_is_refused(tmp_path):
    folder = write_video(np.zeros((2, 8, 8, 3), np.uint8), tmp_path / "frames", fmt="png")
    (folder / "0005.png").mkdir()
    with pytest.raises(InputError, match="0005.png is not a regular file"):
        read_video(folder)
