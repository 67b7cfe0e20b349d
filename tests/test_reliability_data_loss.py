"""The store never deletes what it cannot prove is its own (items 1-3 of the store's reliability issue):
a folder that is not a marked ditflow cache, entries in tmp/ it did not make, a live writer's temporary;
and an object left without its metadata neither blocks its hash nor hides from gc and rm."""
from __future__ import annotations

import multiprocessing
import os
import shutil

import pytest

from helpers import one_error_line, put, run_cli, snapshot
from ditflow.errors import CorruptArtifact, InputError
from ditflow.store import Store, content_key
from ditflow.store.root import TAG
from ditflow.store.tmp import MARKER


@pytest.fixture
def user_home(tmp_path):
    """A user's folder with a ~/tmp of their own, as DITFLOW_CACHE=$HOME would point at."""
    home = tmp_path / "home"
    (home / "tmp" / "project").mkdir(parents=True)
    (home / "tmp" / "project" / "draft.txt").write_text("three weeks of work")
    (home / "tmp" / "notes.txt").write_text("keep me")
    (home / "objects").mkdir()  # even a folder named like the store's is not enough
    (home / "photo.jpg").write_bytes(b"\xff\xd8")
    return home


# -- 1. only a marked cache is ever swept --------------------------------------------------------------
@pytest.mark.parametrize("argv", [["cache", "gc"], ["cache", "gc", "--older-than", "0"], ["cache", "rm", "abcdef"]])
def test_gc_and_rm_refuse_a_folder_that_is_not_a_cache(user_home, argv, capsys, monkeypatch):
    before = snapshot(user_home)
    code, out, err = run_cli([*argv, "--cache", str(user_home)], capsys, monkeypatch)
    assert code == 2 and out == ""
    assert str(user_home) in one_error_line(err, "is not a ditflow cache")
    assert snapshot(user_home) == before


def test_gc_refuses_a_mistyped_cache_that_does_not_exist(tmp_path, capsys, monkeypatch):
    code, _, err = run_cli(["cache", "gc", "--cache", str(tmp_path / "cahce")], capsys, monkeypatch)
    assert code == 2 and "no such folder" in one_error_line(err, "is not a ditflow cache")
    assert not (tmp_path / "cahce").exists()


def test_the_first_write_marks_the_cache_root(store):
    assert not store.root.exists()
    put(store, "a")
    tag = (store.root / TAG).read_text()
    assert tag.startswith("Signature: 8a477f597d28d172789f06886806bc55") and "ditflow" in tag.splitlines()[1]
    assert store.is_cache()


def test_the_store_never_claims_a_folder_holding_other_files(user_home):
    before = snapshot(user_home)
    store = Store(user_home)
    with pytest.raises(InputError, match="is not a ditflow cache"):
        put(store, "a")
    assert snapshot(user_home) == before  # no CACHEDIR.TAG: backup tools would skip the user's folder


@pytest.mark.parametrize("argv", [["cache", "gc"], ["cache", "rm"]])
def test_a_folder_laid_out_like_a_cache_but_untagged_is_not_one(store, argv, capsys, monkeypatch):
    """Only the tag makes a cache: objects/ and tmp/ without it are refused by removals and writers alike,
    and the folder is left exactly as it was (no tag written, nothing removed)."""
    h = put(store, "a")
    (store.root / TAG).unlink()
    (store.root / ".ditflow.lock").unlink()
    before = snapshot(store.root)
    assert not store.is_cache()
    code, out, err = run_cli([*argv, *([h[:12]] if argv[-1] == "rm" else []), "--cache", str(store.root)], capsys, monkeypatch)
    assert code == 2 and out == "" and str(store.root) in one_error_line(err, "is not a ditflow cache")
    with pytest.raises(InputError, match="is not a ditflow cache"):
        store.gc_plan()
    with pytest.raises(InputError, match="is not a ditflow cache"):
        put(store, "b")
    assert snapshot(store.root) == before and not store.is_cache()


def test_gc_sweeps_only_the_stores_own_temporaries(store, tmp_path, capsys, monkeypatch):
    put(store, "a")
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "data.txt").write_text("not the cache's")
    foreign = {
        "notes": lambda p: (p.mkdir(), (p / "a.txt").write_text("mine")),
        "w-0123456789ab-0123456789abcdef": lambda p: p.mkdir(),  # the store's name, but no marker
        "unmarked.bin": lambda p: p.write_bytes(b"1"),
        "link": lambda p: p.symlink_to(outside),
        "marked-but-misnamed": lambda p: (p.mkdir(), (p / MARKER).write_text("{}")),
    }
    for name, make in foreign.items():
        make(store.tmp / name)
    stale = _killed_writer_entry(store)
    kept = snapshot(store.tmp / "notes"), snapshot(outside)
    code, out, err = run_cli(["cache", "gc", "--cache", str(store.root)], capsys, monkeypatch)
    assert code == 0 and out.splitlines() == [f"temporary {stale}"]
    assert sorted(p.name for p in store.tmp.iterdir()) == sorted(foreign)
    assert all(f"not ditflow's, left alone: {store.tmp / n}" in err for n in foreign)
    assert (snapshot(store.tmp / "notes"), snapshot(outside)) == kept


def _die_while_writing(root: str) -> None:
    store = Store(root)
    with store.writer(content_key("amf", {"killed": 1}), "amf", {"killed": 1}) as folder:
        (folder / "half.bin").write_bytes(b"partial")
        os._exit(9)  # as SIGKILL: no cleanup runs, the lock dies with the process


def _killed_writer_entry(store: Store):
    p = multiprocessing.get_context("fork").Process(target=_die_while_writing, args=(str(store.root),))
    p.start()
    p.join(30)
    assert p.exitcode == 9
    (entry,) = [e for e in store.tmp.iterdir() if (e / MARKER).is_file() and e.name.startswith("w-")]
    return entry


# -- 2. a live writer's temporary is never swept, and nothing partial is published ---------------------
def test_gc_leaves_a_live_writers_temporary_alone(store, capsys, monkeypatch):
    inputs = {"live": 1}
    h = content_key("amf", inputs)
    put(store, "other")
    with store.writer(h, "amf", inputs) as folder:
        (folder / "data.bin").write_bytes(b"payload")
        code, out, err = run_cli(["cache", "gc", "--cache", str(store.root)], capsys, monkeypatch)
        assert code == 0 and out == "" and f"in use, left alone: {folder.parent}" in err
        assert (folder / "data.bin").read_bytes() == b"payload"
    assert store.info(h).kind == "amf" and not any(store.tmp.iterdir())


def test_a_killed_writers_temporary_is_swept(store):
    stale = _killed_writer_entry(store)
    plan = store.gc_plan()
    assert plan.temporaries == [stale] and plan.in_use == []
    store.gc(plan)
    assert not stale.exists() and store.hashes() == []


@pytest.mark.parametrize("damage", ["whole entry removed", "marker removed", "payload file removed"])
def test_a_writer_whose_folder_was_damaged_publishes_nothing(store, damage):
    inputs = {"damaged": damage}
    h = content_key("amf", inputs)
    with pytest.raises(CorruptArtifact, match="removed or changed while it was written; nothing was published"):
        with store.writer(h, "amf", inputs) as folder:
            (folder / "a.bin").write_bytes(b"a")
            (folder / "b.bin").write_bytes(b"b")
            if damage == "whole entry removed":
                shutil.rmtree(folder.parent)  # what a gc blind to locks would do to a live writer
            elif damage == "marker removed":  # a slow delete caught half-way
                (folder.parent / MARKER).unlink()
                (folder / "a.bin").unlink()
            else:  # deleted while checksumming: simulated by a payload file that cannot be read
                (folder / "b.bin").unlink()
                (folder / "b.bin").symlink_to(folder / "missing")
    assert not store.object_path(h).exists() and not any(store.tmp.iterdir())


# -- 3. an object without its metadata is incomplete: listed, removable, replaceable --------------------
def _make_incomplete(store: Store, name: str) -> str:
    h = put(store, name)
    (store.object_path(h) / "meta.json").unlink()  # an interrupted copy, a manual delete
    return h


def test_gc_lists_and_removes_an_incomplete_object(store, capsys, monkeypatch):
    h, good = _make_incomplete(store, "a"), put(store, "b")
    code, out, _ = run_cli(["cache", "gc", "--dry-run", "--cache", str(store.root)], capsys, monkeypatch)
    assert code == 0 and out.strip() == f"incomplete {h} (no meta.json)"
    code, out, _ = run_cli(["cache", "ls", "--json", "--cache", str(store.root)], capsys, monkeypatch)
    assert '"state": "incomplete"' in out and good in out
    code, _, _ = run_cli(["cache", "gc", "--cache", str(store.root)], capsys, monkeypatch)
    assert code == 0 and not store.object_path(h).exists() and store.hashes() == [good]


def test_cache_rm_can_name_an_incomplete_object(store, capsys, monkeypatch):
    h = _make_incomplete(store, "a")
    code, out, err = run_cli(["cache", "rm", h[:10], "--cache", str(store.root)], capsys, monkeypatch)
    assert code == 0 and out.strip() == h and not store.object_path(h).exists()


def test_cache_show_of_an_incomplete_object_is_one_line(store, capsys, monkeypatch):
    h = _make_incomplete(store, "a")
    code, out, err = run_cli(["cache", "show", h[:10], "--cache", str(store.root)], capsys, monkeypatch)
    assert code == 5 and out == "" and f"cache rm {h[:12]}" in one_error_line(err, "is incomplete (no meta.json)")


@pytest.mark.parametrize("leftover", ["payload without meta.json", "empty folder"])
def test_a_writer_replaces_an_incomplete_object(store, leftover):
    h = _make_incomplete(store, "a")
    if leftover == "empty folder":
        (store.object_path(h) / "data.bin").unlink()
    assert not store.exists(h)  # so a stage recomputes it...
    put(store, "a", payload=b"fresh")  # ...and publishing it replaces what was there instead of failing
    assert (store.info(h).path / "data.bin").read_bytes() == b"fresh"
    assert not any(store.tmp.iterdir())
