import json
import os

import pytest

from ditflow.errors import AmbiguousHash, ArtifactNotFound, CorruptArtifact, InputError
from ditflow.store import content_key
from fakes import put, twin_names

# Objects are named content_key(kind, inputs) and verified against it, so these tests name their fake
# objects by their inputs (`put(store, "name")`) instead of choosing hashes.


def test_key_is_stable_and_sensitive():
    a = content_key("amf", {"b": 1, "a": [1, 2]})
    assert a == content_key("amf", {"a": (1, 2), "b": 1})
    assert a != content_key("amf", {"b": 2, "a": [1, 2]})
    assert a != content_key("gen", {"b": 1, "a": [1, 2]})


def test_put_then_info_verifies(store):
    h = put(store, "a")
    info = store.info(h)
    assert info.kind == "amf" and (info.path / "data.bin").read_bytes() == b"x"
    assert info.meta["checksums"]["data.bin"]


def test_interrupted_write_leaves_nothing(store):
    h = content_key("amf", {})
    with pytest.raises(KeyboardInterrupt):
        with store.writer(h, "amf", {}) as folder:
            (folder / "half.bin").write_bytes(b"partial")
            raise KeyboardInterrupt
    assert not store.exists(h)
    assert store.hashes() == []
    assert not any(store.tmp.iterdir())


def test_prefix_resolution(store):
    first, second, prefix = twin_names()
    a, b = put(store, first), put(store, second)
    assert store.resolve(a[:12]) == a
    with pytest.raises(AmbiguousHash):
        store.resolve(prefix)
    with pytest.raises(ArtifactNotFound):
        store.resolve(next(p for p in ("ffffff", "eeeeee") if not a.startswith(p) and not b.startswith(p)))
    with pytest.raises(InputError):
        store.resolve("abc")
    with pytest.raises(InputError):
        store.resolve("zzzzzzzz")
    assert b in store.hashes()


def test_corruption_is_detected_and_collected(store):
    h = put(store, "e")
    f = store.object_path(h) / "data.bin"
    os.chmod(f, 0o644)
    f.write_bytes(b"tampered")
    with pytest.raises(CorruptArtifact):
        store.info(h)
    plan = store.gc_plan()
    assert plan.corrupt == [h]
    store.gc(plan)
    assert not store.exists(h)


def test_gc_keeps_referenced_and_leaves_foreign_temporaries(store):
    parent = put(store, "parent")
    child = put(store, "child", parents=[parent])
    (store.tmp / "leftover").mkdir(parents=True)  # not named by the store, no marker: not the store's
    plan = store.gc_plan(older_than_days=0)
    assert plan.unreferenced == [child]  # the parent is referenced by the child
    assert plan.temporaries == [] and plan.foreign == [store.tmp / "leftover"]
    store.gc(plan)
    assert store.exists(parent) and not store.exists(child)
    # Before, gc emptied tmp/ of anything in it; now what the store did not make is left alone
    # (stale entries of killed writers are swept: tests/test_reliability_data_loss.py).
    assert (store.tmp / "leftover").exists()


def test_meta_is_json_with_inputs(store):
    h = put(store, "m")
    meta = json.loads((store.object_path(h) / "meta.json").read_text())
    assert meta["inputs"] == {"name": "m"} and meta["kind"] == "amf" and h == content_key("amf", meta["inputs"])
