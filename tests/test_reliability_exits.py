"""The README's exit codes where they used to go wrong: a cache that cannot be written (7), bad batch settings
caught before any model loads (2), a closed stdout (141, silently), outputs that are the run's own inputs (2),
a truncated payload listed as corrupt, and an eval of videos of different lengths (a warning)."""
from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from helpers import entries, one_error_line, put, run_cli
from ditflow import artifacts
from ditflow.errors import OutputError
from ditflow.store import Store, content_key
from ditflow.video import write_video

ENOSPC = os.strerror(errno.ENOSPC)
EROFS = os.strerror(errno.EROFS)


def cli(capsys, monkeypatch, *argv):
    return run_cli(list(argv), capsys, monkeypatch)


def fails(result, code: int, text: str) -> None:
    """Exit `code`, nothing on stdout, one `error:` line holding `text`."""
    rc, out, err = result
    assert rc == code and out == "", (rc, out, err)
    one_error_line(err, text)


def left_nothing(store: Store) -> None:
    assert store.hashes() == [] and list(store.tmp.iterdir()) == []


# -- a cache that cannot be written: exit 7, one line naming the cache, nothing published ----------------------
def _full_disk(monkeypatch, where: str) -> None:
    """The disk fills (or turns read-only) at one step of a write into the cache."""
    real_write, real_rename = Path.write_text, os.rename

    def write_bytes(self, data):  # the payload, as a stage's writer fills it
        raise OSError(errno.ENOSPC, ENOSPC)

    def write_text(self, text, *a, **k):
        if self.name == "meta.json":
            raise OSError(errno.ENOSPC, ENOSPC)
        return real_write(self, text, *a, **k)

    def rename(src, dst, *a, **k):
        if "objects" in Path(dst).parts:  # the publishing rename into objects/
            raise OSError(errno.EROFS, EROFS)
        return real_rename(src, dst, *a, **k)

    target, name, fake = {"payload": (Path, "write_bytes", write_bytes), "meta": (Path, "write_text", write_text),
                          "publish": (os, "rename", rename)}[where]
    monkeypatch.setattr(target, name, fake)


@pytest.mark.parametrize("where", ["payload", "meta", "publish"])
def test_a_full_disk_in_the_cache_is_an_output_error_and_publishes_nothing(store, monkeypatch, where):
    put(store, "warm")  # the cache exists: the failure is the write's, not the first mkdir's
    before = store.hashes()
    _full_disk(monkeypatch, where)
    with pytest.raises(OutputError, match=f"cannot write to cache {store.root}: .*nothing was published"):
        put(store, "new")
    assert store.hashes() == before and list(store.tmp.iterdir()) == []


def test_safetensors_io_error_in_the_cache_is_an_output_error(store, monkeypatch):
    import safetensors.numpy
    import torch
    from safetensors import SafetensorError

    def save_file(*a, **k):
        raise SafetensorError(f"Error while serializing: I/O error: {ENOSPC} (os error 28) at path \"x\"")

    monkeypatch.setattr(safetensors.numpy, "save_file", save_file)
    inputs = {"name": "gen"}
    with pytest.raises(OutputError, match=f"cannot write to cache {store.root}: {ENOSPC}; nothing was published"):
        with store.writer(content_key("gen", inputs), "gen", inputs) as folder:
            artifacts.write_gen(folder, frames=np.zeros((2, 4, 4, 3), np.uint8), latent=torch.zeros(1), embeddings={})
    left_nothing(store)


def test_the_cli_reports_a_full_cache_as_exit_7(store, ref_video, capsys, monkeypatch):
    import ditflow.stages

    monkeypatch.setattr(ditflow.stages, "extract", lambda *a, **k: put(Store(k["store"].root), "amf"))
    _full_disk(monkeypatch, "payload")
    fails(cli(capsys, monkeypatch, "extract", ref_video, "--cache", str(store.root)), 7, f"cannot write to cache {store.root}")
    left_nothing(store)


# -- cache rm ------------------------------------------------------------------------------------------------
def test_cache_rm_on_a_read_only_cache_is_exit_7_and_removes_nothing(store, capsys, monkeypatch):
    h = put(store, "kept")
    before = entries(store.root)
    root = str(store.root)
    real_open, real_mkdir, real_rename = os.open, os.mkdir, os.rename

    def refuse(path) -> None:  # a read-only mount: no write anywhere under the cache (as root, chmod would not do)
        if os.fsdecode(path).startswith(root):
            raise OSError(errno.EROFS, EROFS)

    def open_(path, flags, *a, **k):
        if flags & (os.O_WRONLY | os.O_RDWR | os.O_CREAT):
            refuse(path)
        return real_open(path, flags, *a, **k)

    def mkdir(path, *a, **k):
        refuse(path)
        return real_mkdir(path, *a, **k)

    def rename(src, dst, *a, **k):
        refuse(src)
        return real_rename(src, dst, *a, **k)

    monkeypatch.setattr(os, "open", open_)
    monkeypatch.setattr(os, "mkdir", mkdir)
    monkeypatch.setattr(os, "rename", rename)
    fails(cli(capsys, monkeypatch, "cache", "rm", h[:8], "--cache", root), 7, f"cannot remove {h[:12]} from cache")
    monkeypatch.undo()
    assert entries(store.root) == before


def test_cache_rm_of_one_hash_named_twice_removes_it_once(store, capsys, monkeypatch):
    h, other = put(store, "twice"), put(store, "other")
    rc, out, err = cli(capsys, monkeypatch, "cache", "rm", h, h[:8], "--cache", str(store.root))
    assert (rc, out, err) == (0, h + "\n", "")
    assert store.hashes() == [other]


# -- cache ls sees a truncated payload ---------------------------------------------------------------------------
def _gen(store: Store) -> str:
    import torch

    inputs = {"name": "video"}
    h = content_key("gen", inputs)
    with store.writer(h, "gen", inputs) as folder:
        artifacts.write_gen(folder, frames=np.full((3, 8, 10, 3), 7, np.uint8), latent=torch.zeros(1, 1, 1, 1, 1), embeddings={})
    return h


def _ls(store: Store, capsys, monkeypatch) -> dict:
    rc, out, _ = cli(capsys, monkeypatch, "cache", "ls", "--json", "--cache", str(store.root))
    assert rc == 0
    return {r["hash"]: r for r in json.loads(out)}


def test_ls_marks_a_truncated_payload_corrupt_as_export_does(store, tmp_path, capsys, monkeypatch):
    h = _gen(store)
    payload = store.object_path(h) / "video.safetensors"
    size = payload.stat().st_size
    payload.chmod(0o644)
    os.truncate(payload, size - 10)
    row = _ls(store, capsys, monkeypatch)[h]
    assert (row["state"], row["kind"]) == ("corrupt", "gen")  # the metadata is sound: its kind is still shown
    assert row["reason"] == f"video.safetensors is truncated ({size - 10} of {size} bytes)"
    fails(cli(capsys, monkeypatch, "cache", "export", h[:8], str(tmp_path / "x.mp4"), "--cache", str(store.root)), 5,
          "is corrupt")


def test_ls_hashes_an_object_published_before_sizes_were_recorded(store, capsys, monkeypatch):
    h = _gen(store)
    folder = store.object_path(h)
    meta = json.loads((folder / "meta.json").read_text())
    assert set(meta["sizes"]) == set(meta["checksums"])
    del meta["sizes"]
    (folder / "meta.json").chmod(0o644)
    (folder / "meta.json").write_text(json.dumps(meta))
    assert _ls(store, capsys, monkeypatch)[h]["state"] == "ok"
    payload = folder / "video.safetensors"
    payload.chmod(0o644)
    data = bytearray(payload.read_bytes())
    data[-1] ^= 1  # same size: only the hash can tell
    payload.write_bytes(bytes(data))
    assert _ls(store, capsys, monkeypatch)[h]["reason"] == "video.safetensors changed"


# -- batch settings refused before any model loads -------------------------------------------------------------
@pytest.fixture
def manifest(tmp_path) -> Path:
    (tmp_path / "v.mp4").write_bytes(b"not read before the checks")
    path = tmp_path / "runs.csv"
    path.write_text("video,prompt\nv.mp4,a cat\n")
    return path


def batch(capsys, monkeypatch, manifest: Path, *argv):
    return cli(capsys, monkeypatch, "batch", str(manifest), "--cache", str(manifest.parent / "cache"), *argv)


@pytest.mark.parametrize("argv, text", [
    (["--backend", "ray", "--address", "not an address"], "--address 'not an address' is not a Ray address"),
    (["--backend", "ray", "--address", "head:99999"], "is not a Ray address"),
    (["--setups", "ditflow-latent,nosuch"], "--setups: unknown setup 'nosuch' (known: "),
])
def test_bad_batch_settings_are_exit_2_before_any_model_loads(manifest, no_model, capsys, monkeypatch, argv, text):
    before = entries(manifest.parent)
    fails(batch(capsys, monkeypatch, manifest, *argv), 2, text)
    assert entries(manifest.parent) == before


def test_a_file_as_the_batch_cache_is_exit_2_up_front(manifest, no_model, capsys, monkeypatch):
    (manifest.parent / "cache").write_text("a file")
    before = entries(manifest.parent)
    fails(batch(capsys, monkeypatch, manifest), 2, "is not a folder (a file is in the way)")
    assert entries(manifest.parent) == before


def test_a_broken_ray_install_is_exit_2_in_one_line(manifest, no_model, tmp_path, capsys, monkeypatch):
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('libray.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(fake.parent))
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    fails(batch(capsys, monkeypatch, manifest, "--backend", "ray"), 2,
          "Ray is installed but does not import (ImportError: libray.so: cannot open shared object file)")


def test_a_custom_setup_counts_as_known():
    from ditflow.batch import check_setups

    check_setups(["ditflow-latent", "inject", "mine"], {"mine": {"loss": "smm"}})


# -- a closed stdout ---------------------------------------------------------------------------------------------
def test_batch_into_a_closed_pipe_exits_141_silently(tmp_path):
    """`ditflow batch ... | true`: the reader is gone before the rows are printed (a row that fails before any
    model loads: the toy model is only resolved)."""
    manifest = tmp_path / "runs.csv"
    manifest.write_text("video,prompt\nmissing.mp4,a cat\n")
    proc = subprocess.Popen([sys.executable, "-m", "ditflow.cli.app", "batch", str(manifest), "--model", "toy", "-q",
                             "--cache", str(tmp_path / "cache")], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            env={**os.environ, "DITFLOW_DEBUG": ""})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141, err
    assert "error" not in err and "Traceback" not in err


def test_help_into_a_closed_pipe_exits_141_silently():
    """`ditflow --help | true`: rich points stdout at /dev/null and exits 1 itself; we say 141, as for rows."""
    proc = subprocess.Popen([sys.executable, "-m", "ditflow.cli.app", "--help"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env={**os.environ, "COLUMNS": "80"})
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and err == "", err


# -- outputs that are the run's inputs, the cache or each other: exit 2 even with --overwrite -----------------
@pytest.mark.parametrize("case", ["manifest", "video", "hard link", "both outputs", "in the cache"])
def test_batch_refuses_an_output_that_is_an_input(manifest, no_model, capsys, monkeypatch, case):
    folder = manifest.parent
    os.link(manifest, folder / "link.csv")
    (folder / "cache").mkdir()
    argv, text = {
        "manifest": (["--csv", str(manifest)], f"--csv {manifest} is the manifest, which this run reads"),
        "video": (["--json-out", str(folder / "v.mp4")], "is the video of row 1, which this run reads"),
        "hard link": (["--csv", str(folder / "link.csv")], "is the manifest"),
        "both outputs": (["--csv", str(folder / "r"), "--json-out", str(folder / "r")], "--csv and --json-out are the same file"),
        "in the cache": (["--csv", str(folder / "cache" / "r.csv")], "is inside the cache"),
    }[case]
    before = entries(folder)
    fails(batch(capsys, monkeypatch, manifest, *argv, "--overwrite"), 2, text)
    assert entries(folder) == before


def test_eval_and_report_refuse_an_output_that_is_an_input(tmp_path, capsys, monkeypatch):
    video = tmp_path / "v.gif"
    video.write_bytes(b"gif")
    rows = tmp_path / "rows.csv"
    rows.write_text("video,reference,prompt\nv.gif,ref.gif,x\n")
    (tmp_path / "ref.gif").write_bytes(b"gif")
    (tmp_path / "results.json").write_text("[]")
    before = entries(tmp_path)
    fails(cli(capsys, monkeypatch, "eval", str(video), "--json-out", str(video), "--overwrite"), 2, "is VIDEO, which this run reads")
    fails(cli(capsys, monkeypatch, "eval", "--manifest", str(rows), "--json-out", str(tmp_path / "ref.gif"), "--overwrite"),
          2, "is the reference of row 1")
    fails(cli(capsys, monkeypatch, "report", str(tmp_path / "results.json"), "--md", str(tmp_path / "results.json"),
              "--overwrite"), 2, "is RESULTS, which this run reads")
    assert entries(tmp_path) == before


# -- eval of videos of different lengths ----------------------------------------------------------------------------
def test_eval_of_videos_of_different_lengths_warns(tmp_path, capsys, monkeypatch):
    rng = np.random.default_rng(0)
    gen = write_video(rng.integers(0, 255, (4, 32, 32, 3), dtype=np.uint8), tmp_path / "gen", fmt="png")
    ref = write_video(rng.integers(0, 255, (6, 32, 32, 3), dtype=np.uint8), tmp_path / "ref", fmt="png")
    rc, out, err = cli(capsys, monkeypatch, "eval", str(gen), "-r", str(ref), "--metrics", "mf", "--tracker", "lk",
                       "--grid-size", "6")
    note = "the generated video has 4 frames and the reference 6: motion fidelity compares the first 4 of each"
    assert rc == 0 and note in json.loads(out)["warnings"]
    assert f"warning: {note}" in err


def test_viz_refuses_an_output_inside_the_cache(amf_cache, capsys, monkeypatch):
    from helpers import one_error_line, run_cli

    cache, amf = amf_cache
    code, out, err = run_cli(["viz", "amf", amf, "--out", str(cache / "a.gif"), "--cache", str(cache)], capsys, monkeypatch)
    assert code == 2 and out == "" and "is inside the cache" in one_error_line(err) and not (cache / "a.gif").exists()


def test_an_output_inside_a_frame_folder_the_run_reads_is_refused(tmp_path):
    """A new file among a reference's frames would be read as one more frame next time."""
    from ditflow.errors import InputError
    from ditflow.fileio import check_not_inputs

    frames = tmp_path / "frames"
    frames.mkdir()
    (frames / "0000.png").write_bytes(b"png")
    with pytest.raises(InputError, match="r.csv is inside the video of row 1, which this run reads"):
        check_not_inputs({"--csv": frames / "r.csv"}, [("the video of row 1", frames)])
    check_not_inputs({"--csv": tmp_path / "r.csv"}, [("the video of row 1", frames)])  # beside it is fine
