"""Several processes writing one cache, with a `gc` running among them: identical writers end with one
verified object and no error (the losers are cache hits), different ones all publish, gc removes nothing
live, and no temporary is left."""
from __future__ import annotations

import multiprocessing
import time

from ditflow.store import Store, content_key

SAME, DIFFERENT = ["same"] * 6, ["d0", "d1", "d2"]


def _write(root: str, name: str, barrier, results) -> None:
    try:
        inputs = {"name": name}
        barrier.wait(30)
        with Store(root).writer(content_key("amf", inputs), "amf", inputs) as folder:
            for i in range(4):  # a few files with pauses, so gc passes run while the writers are live
                (folder / f"part{i}.bin").write_bytes(name.encode() * 1000)
                time.sleep(0.02)
        results.put(("writer", name, "ok"))
    except BaseException as e:  # any failure is reported, not raised in the child
        results.put(("writer", name, f"{type(e).__name__}: {e}"))


def _collect(root: str, barrier, stop, results) -> None:
    try:
        store, passes, seen = Store(root), 0, []
        barrier.wait(30)
        while not stop.is_set() or passes < 3:
            plan = store.gc_plan()
            seen += plan.corrupt + plan.incomplete  # a published object is never half there
            store.gc(plan)
            passes += 1
        results.put(("gc", passes, "ok" if not seen else f"saw broken objects {seen}"))
    except BaseException as e:
        results.put(("gc", 0, f"{type(e).__name__}: {e}"))


def test_concurrent_writers_and_gc(tmp_path):
    ctx = multiprocessing.get_context("fork")
    root = str(tmp_path / "cache")
    Store(root).check_writable()
    names = SAME + DIFFERENT
    barrier, stop, results = ctx.Barrier(len(names) + 1), ctx.Event(), ctx.Queue()
    from helpers import put

    put(Store(root), "seed")  # gc needs a marked cache from the start
    writers = [ctx.Process(target=_write, args=(root, n, barrier, results)) for n in names]
    gc = ctx.Process(target=_collect, args=(root, barrier, stop, results))
    for p in [*writers, gc]:
        p.start()
    for p in writers:
        p.join(60)
    stop.set()
    gc.join(60)
    reports = [results.get(timeout=10) for _ in range(len(names) + 1)]
    assert all(p.exitcode == 0 for p in [*writers, gc])
    assert [r for r in reports if r[2] != "ok"] == []
    store = Store(root)
    expected = sorted({content_key("amf", {"name": n}) for n in [*names, "seed"]})
    assert store.hashes() == expected
    for h in expected:
        store.info(h)  # verifies
    assert list(store.tmp.iterdir()) == []
