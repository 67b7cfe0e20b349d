import json
import os

import pytest

from ditflow.errors import AmbiguousHash, ArtifactNotFound, CorruptArtifact, InputError
from ditflow.store import Store, content_key


def put(store: Store, h: str, payload: bytes = b"x", parents=()):
    with store.writer(h, "amf", {"h": h}, parents=list(parents)) as folder:
        (folder / "data.bin").write_bytes(payload)
    return h


def test_key_is_stable_and_sensitive():
    a = content_key("amf", {"b": 1, "a": [1, 2]})
    assert a == content_key("amf", {"a": (1, 2), "b": 1})
    assert a != content_key("amf", {"b": 2, "a": [1, 2]})
    assert a != content_key("gen", {"b": 1, "a": [1, 2]})


def test_put_then_info_verifies(store):
    h = put(store, "ab" * 32)
    info = store.info(h)
    assert info.kind == "amf" and (info.path / "data.bin").read_bytes() == b"x"
    assert info.meta["checksums"]["data.bin"]


def test_interrupted_write_leaves_nothing(store):
    h = "cd" * 32
    with pytest.raises(KeyboardInterrupt):
        with store.writer(h, "amf", {}) as folder:
            (folder / "half.bin").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not store.exists(h)
    assert store.hashes() == []
    assert not any(store.tmp.iterdir())


def test_prefix_resolution(store):
    a = put(store, "abcdef01" + "0" * 56)
    b = put(store, "abcdef02" + "0" * 56)
    assert store.resolve("abcdef01") == a
    with pytest.raises(AmbiguousHash):
        store.resolve("abcdef")
    with pytest.raises(ArtifactNotFound):
        store.resolve("ffffff")
    with pytest.raises(InputError):
        store.resolve("abc")
    with pytest.raises(InputError):
        store.resolve("zzzzzzzz")
    assert b in store.hashes()


def test_corruption_is_detected_and_collected(store):
    h = put(store, "ef" * 32)
    f = store.object_path(h) / "data.bin"
    os.chmod(f, 0o644)
    f.write_bytes(b"tampered")
    with pytest.raises(CorruptArtifact):
        store.info(h)
    plan = store.gc_plan()
    assert plan.corrupt == [h]
    store.gc(plan)
    assert not store.exists(h)


def test_gc_keeps_referenced_and_sweeps_temporaries(store):
    parent = put(store, "11" * 32)
    child = put(store, "22" * 32, parents=[parent])
    (store.tmp / "leftover").mkdir(parents=True)
    plan = store.gc_plan(older_than_days=0)
    assert plan.unreferenced == [child]  # the parent is referenced by the child
    assert [p.name for p in plan.temporaries] == ["leftover"]
    store.gc(plan)
    assert store.exists(parent) and not store.exists(child)
    assert not (store.tmp / "leftover").exists()


def test_meta_is_json_with_inputs(store):
    h = put(store, "33" * 32)
    meta = json.loads((store.object_path(h) / "meta.json").read_text())
    assert meta["inputs"] == {"h": h} and meta["kind"] == "amf"
