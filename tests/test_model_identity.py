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


def no_reads(monkeypatch):
    def refuse(*_, **__):
        raise AssertionError("a file's content was read")

    monkeypatch.setattr(digests, "hash_file_into", refuse)


def test_weights_saved_in_place_with_the_same_size_get_a_new_digest(tmp_path):
    folder, weight = folder_with(tmp_path, "m", b"a" * 64)
    memo = DigestMemo(tmp_path / "memo.json")
    before = weights_digest(folder, memo)
    weight.write_bytes(b"b" * 64)  # a fine-tune of the same shapes, saved over the old file
    later = time.time() - 1800
    os.utime(weight, (later, later))
    assert weights_digest(folder, DigestMemo(tmp_path / "memo.json")) != before


def test_an_unchanged_folder_is_not_read_again(tmp_path, monkeypatch):
    folder, _ = folder_with(tmp_path, "m", b"a" * 64)
    first = weights_digest(folder, DigestMemo(tmp_path / "memo.json"))
    no_reads(monkeypatch)
    assert weights_digest(folder, DigestMemo(tmp_path / "memo.json")) == first


def test_a_file_changed_just_now_is_not_remembered(tmp_path):
    """Within the same mtime tick a second rewrite would look unchanged (git's racy entries): read it again."""
    folder, weight = folder_with(tmp_path, "m", b"a" * 64)
    now = time.time()
    os.utime(weight, (now, now))
    memo = DigestMemo(tmp_path / "memo.json")
    weights_digest(folder, memo)
    st = weight.stat()
    assert len(memo.entries) == 1  # model_index.json, an hour old
    assert f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}" not in memo.entries


def test_two_folders_of_other_weights_differ_and_copies_agree(tmp_path):
    a, _ = folder_with(tmp_path, "a", b"a" * 64)
    b, _ = folder_with(tmp_path, "b", b"b" * 64)
    c, _ = folder_with(tmp_path, "c", b"a" * 64)
    memo = DigestMemo(tmp_path / "memo.json")
    assert weights_digest(a, memo) != weights_digest(b, memo) and weights_digest(a, memo) == weights_digest(c, memo)


def test_a_hub_blobs_name_is_its_digest(tmp_path, monkeypatch):
    blob = tmp_path / "blobs" / ("ab" * 32)
    blob.parent.mkdir()
    blob.write_bytes(b"weights")
    snapshot = tmp_path / "snapshots" / "commit"
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").symlink_to(blob)
    no_reads(monkeypatch)
    assert DigestMemo(tmp_path / "memo.json").digest(snapshot / "model.safetensors") == "ab" * 32


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
