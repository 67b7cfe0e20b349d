"""A model's identity comes from its files' content, read once: a fine-tune saved in place gets a new hash, an
unchanged folder costs a stat per file, a hub blob's name is its digest."""
import os
import time

import pytest

from ditflow.backbones import digests
from ditflow.backbones.digests import DigestMemo, weights_digest
from ditflow.errors import InputError
from helpers import one_error_line, run_cli


def folder_with(tmp_path, name: str, weights: bytes, age_s: float = 3600):
    folder = tmp_path / name
    (folder / "transformer").mkdir(parents=True)
    (folder / "model_index.json").write_text('{"_class_name": "CogVideoXPipeline"}')
    weight = folder / "transformer" / "diffusion_pytorch_model.safetensors"
    weight.write_bytes(weights)
    old = time.time() - age_s
    for p in (weight, folder / "model_index.json"):
        os.utime(p, (old, old))
    return folder, weight


@pytest.fixture
def settled(monkeypatch):
    """An hour from now: files made by the test are past the racy window of their mtime and ctime (a ctime
    cannot be set back, so the memo's clock moves instead)."""
    from types import SimpleNamespace

    now = time.time()
    monkeypatch.setattr(digests, "time", SimpleNamespace(time=lambda: now + 3600))


def no_reads(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("a file's content was read")

    monkeypatch.setattr(digests, "hash_file_into", refuse)


def test_weights_saved_in_place_with_the_same_size_get_a_new_digest(tmp_path, settled):
    folder, weight = folder_with(tmp_path, "m", b"a" * 64)
    memo = DigestMemo(tmp_path / "memo.json")
    before = weights_digest(folder, memo)
    weight.write_bytes(b"b" * 64)  # a fine-tune of the same shapes, saved over the old file
    later = time.time() - 1800
    os.utime(weight, (later, later))
    assert weights_digest(folder, DigestMemo(tmp_path / "memo.json")) != before


def test_an_unchanged_folder_is_not_read_again(tmp_path, monkeypatch, settled):
    folder, _ = folder_with(tmp_path, "m", b"a" * 64)
    first = weights_digest(folder, DigestMemo(tmp_path / "memo.json"))
    no_reads(monkeypatch)
    assert weights_digest(folder, DigestMemo(tmp_path / "memo.json")) == first


def test_a_file_changed_just_now_is_not_remembered(tmp_path, monkeypatch):
    """Within the same timestamp tick a second rewrite would look unchanged (git's racy entries): a file whose
    mtime or ctime is that recent is read again next time; once settled it is remembered."""
    folder, weight = folder_with(tmp_path, "m", b"a" * 64)  # mtime an hour ago, ctime now
    memo = DigestMemo(tmp_path / "memo.json")
    weights_digest(folder, memo)
    assert memo.entries == {}
    from types import SimpleNamespace

    now = time.time()
    monkeypatch.setattr(digests, "time", SimpleNamespace(time=lambda: now + 3600))
    weights_digest(folder, memo)
    assert len(memo.entries) == 2


def test_weights_copied_in_place_with_their_timestamps_kept_get_a_new_digest(tmp_path, settled):
    """`cp -p other.safetensors folder/transformer/` keeps the inode, size and mtime; only the ctime moves."""
    folder, weight = folder_with(tmp_path, "m", b"a" * 64)
    before = weights_digest(folder, DigestMemo(tmp_path / "memo.json"))
    st = weight.stat()
    with open(weight, "r+b") as f:  # in place: the same inode, as cp writes over an existing file
        f.write(b"b" * 64)
    os.utime(weight, ns=(st.st_atime_ns, st.st_mtime_ns))  # -p: the old timestamps back
    after = weight.stat()
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (st.st_ino, st.st_size, st.st_mtime_ns)
    assert weights_digest(folder, DigestMemo(tmp_path / "memo.json")) != before


def test_two_folders_of_other_weights_differ_and_copies_agree(tmp_path):
    a, _ = folder_with(tmp_path, "a", b"a" * 64)
    b, _ = folder_with(tmp_path, "b", b"b" * 64)
    c, _ = folder_with(tmp_path, "c", b"a" * 64)
    memo = DigestMemo(tmp_path / "memo.json")
    assert weights_digest(a, memo) != weights_digest(b, memo) and weights_digest(a, memo) == weights_digest(c, memo)


def hub_snapshot(tmp_path, content: bytes = b"weights"):
    """huggingface_hub's cache layout: snapshots/REV/FILE -> ../../blobs/DIGEST."""
    repo = tmp_path / "hub" / "models--org--name"
    blob = repo / "blobs" / ("ab" * 32)
    blob.parent.mkdir(parents=True)
    blob.write_bytes(content)
    snapshot = repo / "snapshots" / "commit"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(os.path.relpath(blob, snapshot))
    return snapshot


def test_a_hub_blobs_name_is_its_digest(tmp_path, monkeypatch):
    snapshot = hub_snapshot(tmp_path)
    no_reads(monkeypatch)
    assert DigestMemo(tmp_path / "memo.json").digest(snapshot / "model.safetensors") == "ab" * 32


def test_a_folder_linked_to_a_hub_snapshot_keeps_the_shortcut(tmp_path, monkeypatch):
    snapshot = hub_snapshot(tmp_path)
    (tmp_path / "mine").symlink_to(snapshot)
    no_reads(monkeypatch)
    assert DigestMemo(tmp_path / "memo.json").digest(tmp_path / "mine" / "model.safetensors") == "ab" * 32


@pytest.mark.parametrize("where", ["elsewhere/blobs", "models--org--name/other"])
def test_a_link_to_a_hex_named_file_outside_a_hub_cache_is_read(tmp_path, where):
    """The name is trusted only in a hub cache's blobs/: anywhere else it is the file's content that counts."""
    import hashlib

    target = tmp_path / where / ("ab" * 32)
    target.parent.mkdir(parents=True)
    target.write_bytes(b"other weights")
    link = tmp_path / "model" / "model.safetensors"
    link.parent.mkdir()
    link.symlink_to(target)
    assert DigestMemo(tmp_path / "memo.json").digest(link) == hashlib.sha256(b"other weights").hexdigest()


def test_a_fifo_as_the_memo_is_refused_not_waited_on(tiny_rope, tmp_path, ref_video, capsys, monkeypatch):
    from ditflow.backbones.digests import MEMO_ENV

    fifo = tmp_path / "memo.fifo"
    os.mkfifo(fifo)
    monkeypatch.setenv(MEMO_ENV, str(fifo))
    code, out, err = run_cli(["extract", ref_video, "--model", str(tiny_rope), "--cache", str(tmp_path / "c")], capsys, monkeypatch)
    assert code == 2 and out == "" and one_error_line(err, f"${MEMO_ENV} names {fifo}, which is not a regular file")
    assert fifo.exists() and not fifo.is_file()  # left as it was


def test_an_unwritable_memo_never_fails_the_run(tmp_path):
    folder, _ = folder_with(tmp_path, "m", b"a" * 64)
    (tmp_path / "ro").write_text("a file where the memo's folder would be")
    assert len(weights_digest(folder, DigestMemo(tmp_path / "ro" / "memo.json"))) == 16


@pytest.mark.parametrize("text, message", [("{not json", "is not valid JSON"), ("[1, 2]", "must hold a JSON object")])
def test_a_broken_transformer_config_is_one_line_naming_it(tmp_path, text, message, ref_video, capsys, monkeypatch):
    folder, _ = folder_with(tmp_path, "m", b"a" * 64)
    (folder / "transformer" / "config.json").write_text(text)
    code, out, err = run_cli(["extract", ref_video, "--model", str(folder), "--cache", str(tmp_path / "c")], capsys, monkeypatch)
    line = one_error_line(err, message)
    assert code == 2 and out == "" and "transformer/config.json" in line


def test_a_truncated_model_index_says_so(tmp_path):
    from ditflow.backbones import resolve_model

    folder, _ = folder_with(tmp_path, "m", b"a" * 64)
    (folder / "model_index.json").write_text('{"_class_name": "CogVid')
    with pytest.raises(InputError, match="model_index.json is not valid JSON"):
        resolve_model(str(folder))


def test_extract_after_a_fine_tune_saved_in_place_is_a_new_artifact(tiny_rope, ref_video, tmp_path, runtime):
    """The cache never serves the old AMF for new weights of the same shapes in the same folder."""
    import shutil

    from safetensors.torch import load_file, save_file

    from ditflow.stages import extract
    from ditflow.store import Store
    from helpers import extract_cfg

    folder = tmp_path / "model"
    shutil.copytree(tiny_rope, folder)
    weight = next((folder / "transformer").glob("*.safetensors"))
    store = Store(tmp_path / "c")
    old = extract(ref_video, extract_cfg(str(folder)), runtime=runtime, store=store)
    save_file({k: v + 0.01 for k, v in load_file(weight).items()}, weight)  # same names, shapes and size
    new = extract(ref_video, extract_cfg(str(folder)), runtime=runtime, store=store)
    assert new.hash != old.hash and new.inputs["model"] != old.inputs["model"]


def test_a_folder_missing_a_submodel_names_it(tiny_rope, ref_video, tmp_path, capsys, monkeypatch):
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_rope, folder)
    shutil.rmtree(folder / "vae")
    code, out, err = run_cli(["extract", ref_video, "--model", str(folder), "--frames", "9", "--height", "32", "--width", "48",
                              "--blocks", "1", "-q", "--cache", str(tmp_path / "c")], capsys, monkeypatch)
    assert code == 6 and out == "" and one_error_line(err, f"{folder} has no vae/ folder")


def test_a_config_asking_for_more_layers_than_the_weights_hold_is_one_line(tiny_rope, ref_video, tmp_path, capsys, monkeypatch):
    import json
    import shutil

    folder = tmp_path / "model"
    shutil.copytree(tiny_rope, folder)
    config = folder / "transformer" / "config.json"
    config.write_text(json.dumps({**json.loads(config.read_text()), "num_layers": 3}))
    code, out, err = run_cli(["extract", ref_video, "--model", str(folder), "--frames", "9", "--height", "32", "--width", "48",
                              "--blocks", "1", "-q", "--cache", str(tmp_path / "c")], capsys, monkeypatch)
    assert code == 6 and out == "" and one_error_line(err, f"{folder}/transformer: its weights do not hold everything")
