import ast
import graphlib
import json
import os
from pathlib import Path

import pytest

import ditflow.store
from ditflow.errors import AmbiguousHash, ArtifactNotFound, CorruptArtifact, InputError
from ditflow.store import content_key
from helpers import put, twin_names

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
    # what the store did not make is left alone (stale entries of killed writers are swept:
    # tests/test_reliability_data_loss.py)
    assert (store.tmp / "leftover").exists()


def test_meta_is_json_with_inputs(store):
    h = put(store, "m")
    meta = json.loads((store.object_path(h) / "meta.json").read_text())
    assert meta["inputs"] == {"name": "m"} and meta["kind"] == "amf" and h == content_key("amf", meta["inputs"])


# -- the package's import graph -------------------------------------------------------------------------
STORE = Path(ditflow.store.__file__).parent
MODULES = {p.stem for p in STORE.glob("*.py")}


def _is_store_module(name: str) -> bool:
    return name == "ditflow.store" or name.removeprefix("ditflow.store.") in MODULES


def _store_imports(path: Path) -> list[tuple[str, bool]]:
    """(module of ditflow/store/ that `path` imports, '__init__' for the package itself; whether the import
    is at module level) for every import of the store in `path`."""
    tree = ast.parse(path.read_text(), filename=str(path))
    top = {id(n) for n in tree.body}
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = (node.module or "") if node.level == 0 else ".".join(["ditflow", "store"][: 3 - node.level])
            mod = f"{base}.{node.module}" if node.level and node.module else base
            names = [mod + "." + a.name if _is_store_module(mod + "." + a.name) else mod for a in node.names]
        else:
            continue
        for name in names:
            if name == "ditflow.store" or name.startswith("ditflow.store."):
                found.append((name.removeprefix("ditflow.store").lstrip(".").split(".")[0] or "__init__", id(node) in top))
    return found


def test_the_store_package_imports_form_a_dag_with_keys_as_a_leaf():
    graph = {m: {t for t, _ in _store_imports(STORE / f"{m}.py")} - {m} for m in MODULES}
    assert {"keys", "meta", "tmp", "root", "gc"} <= graph["__init__"]  # the parser sees the package's imports
    assert graph["keys"] == set()
    for m in MODULES - {"__init__"}:
        assert "__init__" not in graph[m], f"{m}.py imports the package: a circle through ditflow.store"
        late = [t for t, at_top in _store_imports(STORE / f"{m}.py") if not at_top]
        assert late == [], f"{m}.py imports {late} inside a function or block"
    list(graphlib.TopologicalSorter(graph).static_order())  # CycleError on a circle
