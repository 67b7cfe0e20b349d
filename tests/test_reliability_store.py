"""The store never serves a wrong result (items 4-9 of the store's reliability issue): publishing races
end in hits, metadata is checked against the hash, one bad object does not break listing, `cache ls`
tells runs apart, `cache export` writes an artifact's video, and an unwritable cache is refused before
any model loads."""
from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest

from helpers import extract_cfg, one_error_line, put, run_cli, snapshot
from ditflow import artifacts, stages
from ditflow.backbones import PRESETS
from ditflow.config import GuideConfig, settings
from ditflow.errors import CorruptArtifact, InputError
from ditflow.store import Store, content_key


def edit_meta(store: Store, h: str, change) -> None:
    path = store.object_path(h) / "meta.json"
    meta = json.loads(path.read_text())
    path.chmod(0o644)
    path.write_text(json.dumps(change(meta) or meta))


def cli(store: Store, capsys, monkeypatch, *argv):
    return run_cli([*argv, "--cache", str(store.root)], capsys, monkeypatch)


# -- 4. identical runs finishing together: the losers are cache hits ------------------------------------
def test_a_writer_that_finds_its_object_published_meanwhile_is_a_hit(store):
    inputs = {"name": "same"}
    h = content_key("amf", inputs)
    with store.writer(h, "amf", inputs) as folder:
        (folder / "data.bin").write_bytes(b"x")
        put(store, "same")  # the identical run that finished first
        first = store.info(h).meta["created"], os.stat(store.object_path(h)).st_ino
    assert (store.info(h).meta["created"], os.stat(store.object_path(h)).st_ino) == first  # theirs was kept
    assert not any(store.tmp.iterdir())


def test_a_writer_replaces_a_corrupt_object_at_its_hash(store):
    h = put(store, "a")
    f = store.object_path(h) / "data.bin"
    f.chmod(0o644)
    f.write_bytes(b"bit rot")
    put(store, "a")
    assert (store.info(h).path / "data.bin").read_bytes() == b"x" and not any(store.tmp.iterdir())


# -- 5. what meta.json says is checked, never just trusted ---------------------------------------------
BAD_METAS = {
    "a list": lambda m: [m],
    "unknown kind": lambda m: {**m, "kind": "../x"},
    "inputs not an object": lambda m: {**m, "inputs": ["name", "a"]},
    "edited inputs": lambda m: {**m, "inputs": {"name": "b"}},
    "parents leading out": lambda m: {**m, "parents": ["../../../etc"]},
    "parents not a list": lambda m: {**m, "parents": "abc"},
    "absolute checksum path": lambda m: {**m, "checksums": {"/etc/passwd": m["checksums"]["data.bin"]}},
    "dotdot checksum path": lambda m: {**m, "checksums": {"../../x": m["checksums"]["data.bin"]}},
    "bad date": lambda m: {**m, "created": "yesterday"},
    "created not a string": lambda m: {**m, "created": 3},
}


@pytest.mark.parametrize("case", sorted(BAD_METAS))
def test_unsound_metadata_is_corrupt(store, case, capsys, monkeypatch):
    h = put(store, "a")
    edit_meta(store, h, BAD_METAS[case])
    with pytest.raises(CorruptArtifact):
        store.info(h, verify=False)
    code, out, err = cli(store, capsys, monkeypatch, "cache", "show", h[:10])
    assert code == 5 and out == "" and f"cache rm {h[:12]}" in one_error_line(err, f"artifact {h[:12]} is corrupt")


def test_an_object_copied_under_another_hash_is_corrupt(store):
    a = put(store, "a")
    other = content_key("amf", {"name": "b"})
    dest = store.object_path(other)
    dest.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(store.object_path(a), dest)
    with pytest.raises(CorruptArtifact, match="its metadata names another hash"):
        store.info(other)
    edit_meta(store, other, lambda m: {k: v for k, v in m.items() if k != "hash"})  # a careful forgery
    with pytest.raises(CorruptArtifact, match="its inputs do not hash to its name"):
        store.info(other)


@pytest.mark.parametrize("how", ["symlink to a copy", "symlinked folder"])
def test_a_payload_symlink_is_corrupt_and_never_followed(store, tmp_path, how):
    h = put(store, "a")
    outside = tmp_path / "user"
    outside.mkdir()
    (outside / "data.bin").write_bytes(b"x")  # same bytes: only the symlink check can tell
    folder = store.object_path(h)
    (folder / "data.bin").unlink()
    if how == "symlink to a copy":
        (folder / "data.bin").symlink_to(outside / "data.bin")
    else:
        edit_meta(store, h, lambda m: {**m, "checksums": {"sub/data.bin": m["checksums"]["data.bin"]}})
        (folder / "sub").symlink_to(outside)
    before = snapshot(outside)
    with pytest.raises(CorruptArtifact, match="is a symlink"):
        store.info(h)
    store.gc(store.gc_plan())  # the object is the store's and goes; what its link pointed at stays
    assert not folder.exists() and snapshot(outside) == before


def _fake_amf(store: Store) -> str:
    inputs = {"model": {"name": "test"}, "model_arg": "5b", "blocks": [1], "frames": 9, "height": 32, "width": 48}
    h = content_key("amf", inputs)
    with store.writer(h, "amf", inputs, extra={"grid": [3, 2, 3]}) as folder:
        (folder / "payload.bin").write_bytes(b"amf")
    return h


def _fake_emb_guide(store: Store, amf: str, cfg: GuideConfig) -> str:
    inputs = {"amf": amf, "model": {"name": "test"}, **settings(cfg)}
    h = content_key("gen", inputs)
    extra = {"settings": settings(cfg), "losses": [], "stage": "guide"}
    with store.writer(h, "gen", inputs, parents=[amf], extra=extra) as folder:
        (folder / "video.safetensors").write_bytes(b"gen")
    return h


def test_inject_replays_the_hashed_inputs_not_the_editable_settings(store, monkeypatch):
    cfg = GuideConfig(prompt="a red circle", opt_mode="emb", seed=3, lr=(0.05, 0.05)).resolve(PRESETS["5b"])
    amf = _fake_amf(store)
    gen = _fake_emb_guide(store, amf, cfg)
    other_amf = put(store, "elsewhere")
    edit_meta(store, gen, lambda m: {**m, "parents": [other_amf],
                                     "settings": {**m["settings"], "seed": 99, "lr": [9, 9], "cfg": 2.0}})
    seen = {}

    def generate(spec, amf_art, gcfg, runtime, progress, replay=None, image=None):
        seen.update(amf=amf_art.hash, cfg=gcfg)
        raise KeyboardInterrupt  # stop before anything would need a model

    monkeypatch.setattr(stages, "_generate", generate)
    monkeypatch.setattr(artifacts.GenArtifact, "embeddings", lambda self: {})
    with pytest.raises(KeyboardInterrupt):
        stages.inject(gen, stages.InjectConfig(prompt="a blue square"), store=store)
    replayed = seen["cfg"]
    assert seen["amf"] == amf and (replayed.seed, replayed.lr, replayed.cfg) == (3, (0.05, 0.05), 7.0)
    assert replayed == GuideConfig(**{**cfg.__dict__, "prompt": "a blue square", "guidance": False})


# -- 6. one bad object never stops ls or gc --------------------------------------------------------------
def test_ls_and_gc_go_on_past_bad_objects(store, capsys, monkeypatch):
    good, listed, dated = put(store, "good"), put(store, "list"), put(store, "date")
    edit_meta(store, listed, lambda m: [m])
    edit_meta(store, dated, lambda m: {**m, "created": "last tuesday"})
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "ls", "--json")
    rows = {r["hash"]: r for r in json.loads(out)}
    assert code == 0 and rows[good]["state"] == "ok"
    assert rows[listed]["state"] == "corrupt" and "not an object" in rows[listed]["reason"]
    assert rows[dated]["state"] == "corrupt" and "ISO date" in rows[dated]["reason"]
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "ls")
    assert code == 0 and good[:12] in out and "corrupt: created is not an ISO date" in out
    code, out, err = cli(store, capsys, monkeypatch, "cache", "gc", "--older-than", "0")
    assert code == 0 and f"corrupt {listed}" in out and f"corrupt {dated}" in out and f"unreferenced {good}" in out
    assert store.hashes() == []


# -- 7. cache ls tells runs apart ------------------------------------------------------------------------
def test_ls_shows_kind_mode_seed_and_sorts_by_date(store, capsys, monkeypatch):
    base = GuideConfig(prompt="a red circle", opt_mode="latent").resolve(PRESETS["5b"])
    amf = _fake_amf(store)
    runs = {"emb": GuideConfig(**{**base.__dict__, "opt_mode": "emb", "seed": 2}),
            "latent": GuideConfig(**{**base.__dict__, "seed": 1}),
            "no-guidance": GuideConfig(**{**base.__dict__, "guidance": False, "seed": 1})}
    hashes = {mode: _fake_emb_guide(store, amf, cfg) for mode, cfg in runs.items()}
    for day, mode in enumerate(["latent", "emb", "no-guidance"], start=2):  # created out of write order
        edit_meta(store, hashes[mode], lambda m: {**m, "created": f"2025-01-0{day}T00:00:00+00:00"})
    edit_meta(store, amf, lambda m: {**m, "created": "2025-01-01T00:00:00+00:00"})
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "ls", "--json")
    rows = json.loads(out)
    assert code == 0 and [r["hash"] for r in rows] == [amf, hashes["latent"], hashes["emb"], hashes["no-guidance"]]
    assert [(r["kind"], r["mode"], r["seed"]) for r in rows] == [
        ("amf", "blocks 1", None), ("gen", "latent", 1), ("gen", "emb", 2), ("gen", "no-guidance", 1)]
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "ls")
    lines = out.splitlines()
    assert lines[0].split()[:5] == ["created", "kind", "hash", "mode", "seed"]
    assert hashes["emb"][:12] in lines[3] and " emb " in lines[3] and "a red circle" in lines[3]


# -- 8. cache export -------------------------------------------------------------------------------------
@pytest.fixture
def gen_with_frames(store):
    import torch

    frames = np.random.default_rng(0).integers(0, 255, (3, 8, 10, 3), dtype=np.uint8)
    inputs = {"name": "video"}
    h = content_key("gen", inputs)
    with store.writer(h, "gen", inputs) as folder:
        artifacts.write_gen(folder, frames=frames, latent=torch.zeros(1, 1, 1, 1, 1), embeddings={})
    return h, frames


def test_export_writes_the_frames_and_prints_the_path(store, gen_with_frames, tmp_path, capsys, monkeypatch):
    from ditflow.video import read_video

    h, frames = gen_with_frames
    out_dir = tmp_path / "frames"
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "export", h[:10], str(out_dir), "--format", "png")
    assert code == 0 and out.strip() == str(out_dir) and np.array_equal(read_video(out_dir), frames)
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "export", h[:10], str(tmp_path / "v.mp4"))
    assert code == 0 and out.strip() == str(tmp_path / "v.mp4") and (tmp_path / "v.mp4").stat().st_size > 0
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "path", h[:10], "--video")
    assert code == 0 and out.strip() == str(store.object_path(h) / "video.safetensors")


def test_export_refuses_an_existing_file_without_overwrite(store, gen_with_frames, tmp_path, capsys, monkeypatch):
    h, _ = gen_with_frames
    target = tmp_path / "v.gif"
    target.write_bytes(b"user's gif")
    code, out, err = cli(store, capsys, monkeypatch, "cache", "export", h[:10], str(target))
    assert code == 2 and out == "" and str(target) in one_error_line(err, "already exists")
    assert target.read_bytes() == b"user's gif"
    code, out, _ = cli(store, capsys, monkeypatch, "cache", "export", h[:10], str(target), "--overwrite")
    assert code == 0 and target.read_bytes() != b"user's gif"


# -- 9. an unwritable cache is refused before any model loads -------------------------------------------
def refuse_models(monkeypatch):
    def refuse(*a, **k):
        raise AssertionError("a model was loaded although the cache cannot be written")

    monkeypatch.setattr(stages, "load_backbone", refuse)


def test_a_file_at_the_cache_path_is_refused_before_the_model_loads(tiny_rope, ref_video, tmp_path, runtime, monkeypatch):
    path = tmp_path / "cache"
    path.write_text("a user's file")
    refuse_models(monkeypatch)
    with pytest.raises(InputError, match=f"cache {path} is not a folder"):
        stages.extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=Store(path))
    assert path.read_text() == "a user's file"


def test_a_read_only_cache_is_refused_before_the_model_loads(tiny_rope, ref_video, store, runtime, monkeypatch):
    amf = stages.extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store)
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode, **k: False if str(p).startswith(str(store.root)) else real_access(p, mode, **k))
    refuse_models(monkeypatch)
    assert stages.extract(ref_video, extract_cfg(tiny_rope), runtime=runtime, store=store).hash == amf.hash  # hits still served
    with pytest.raises(InputError, match="is read-only"):
        stages.extract(ref_video, extract_cfg(tiny_rope, temperature=3.0), runtime=runtime, store=store)
    with pytest.raises(InputError, match="is read-only"):
        stages.guide(amf.hash, GuideConfig(prompt="x", steps=2, guidance_range=(2, 1)), runtime=runtime, store=store)


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_a_chmod_read_only_cache_is_refused(store):
    put(store, "a")
    store.root.chmod(0o555)
    try:
        with pytest.raises(InputError, match="cannot be written"):
            store.check_writable()
    finally:
        store.root.chmod(0o755)


def test_the_cli_reports_an_unwritable_cache_in_one_line(tiny_rope, ref_video, tmp_path, capsys, monkeypatch):
    path = tmp_path / "cache"
    path.write_text("x")
    refuse_models(monkeypatch)
    code, out, err = run_cli(["extract", ref_video, "--model", tiny_rope, "--frames", "9", "--height", "32", "--width", "48",
                              "--blocks", "1", "-q", "--cache", str(path)], capsys, monkeypatch)
    assert code == 2 and out == "" and str(path) in one_error_line(err, "is not a folder")
