"""Where a batch's rows run: in this process, in local worker processes (one per GPU), or on a Ray cluster.

Every worker keeps its model loaded across its rows (`backbones.loaded.keep_loaded`) and writes to the one
shared cache; artifacts are content-addressed and published by an atomic rename, so two workers making the
same artifact both end with the same verified object (the later publish is a cache hit) and a manifest
gives the same hashes whichever executor runs it. Rows run in two waves: the inject rows last, so the
ditflow-emb runs they replay are already in the cache (were they computed twice, the store would still
keep one copy).
"""
from __future__ import annotations

import atexit
import os
from typing import Any, Callable, Iterable, Iterator

from .manifest import Run
from .runner import BatchSettings, base_result, run_row
from .setups import INJECT

OnResult = Callable[[dict[str, Any]], None]


def waves(runs: list[Run]) -> list[list[Run]]:
    """The guide rows, then the inject rows (which read the guide rows' embeddings)."""
    first = [r for r in runs if r.setup != INJECT]
    second = [r for r in runs if r.setup == INJECT]
    return [w for w in (first, second) if w]


def visible_gpus() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def worker_devices(workers: int | None, device: str | None) -> list[str | None]:
    """One entry per local worker: a GPU index ("0", "1"...) it is pinned to, or None (the given --device, or
    the CPU). Default: one worker per visible GPU, else one on the CPU."""
    gpus = 0 if device is not None else visible_gpus()
    n = workers or max(gpus, 1)
    return [str(i % gpus) if gpus else None for i in range(n)]


def run_inline(runs: list[Run], settings: BatchSettings, on_result: OnResult) -> None:
    """Every row in this process, one model load for all."""
    from ..backbones.loaded import keep_loaded

    with keep_loaded():
        for wave in waves(runs):
            for run in wave:
                on_result(run_row(run, settings))


# ------------------------------------------------------------------------------------ local processes
_worker: dict[str, Any] = {}  # this worker process's settings and held model


def _init_worker(settings: BatchSettings, devices, threads: int) -> None:
    """A worker process's start: pin it to its GPU (CUDA_VISIBLE_DEVICES, before torch sees a GPU) or share
    the CPU cores, and keep its model loaded for its whole life."""
    gpu = devices.get()
    if gpu is not None:
        os.environ["CUDA_VISIBLE_DEVICES"] = gpu
        settings = settings.on_device("cuda")
    import torch

    from ..backbones.loaded import keep_loaded

    torch.set_num_threads(threads)
    held = keep_loaded()
    held.__enter__()
    atexit.register(held.__exit__, None, None, None)  # released before the interpreter tears down its imports
    _worker.update(settings=settings, held=held)


def _work(run: Run) -> dict[str, Any]:
    return run_row(run, _worker["settings"])


WORKER_DIED = "its worker died twice (killed, or out of memory?); the other rows ran"


def _failed_as_dead(settings: BatchSettings, on_result: OnResult) -> Callable[[Run], None]:
    """Report a row whose worker died twice as a failed result."""
    return lambda run: on_result({**base_result(run, settings.extract.model, settings.cache), "error": WORKER_DIED})


def retrying(rows: list[Run], attempt: Callable[[list[Run]], list[Run]], on_failed: Callable[[Run], None]) -> None:
    """Run `rows` through `attempt` (which returns the rows whose worker died under them); each such row is
    tried once more on fresh workers, then failed, so one dead worker never loses the batch."""
    retried: set[int] = set()
    while rows:
        lost = attempt(rows)
        for run in lost:
            if id(run) in retried:
                on_failed(run)
        rows = [r for r in lost if id(r) not in retried]
        retried |= {id(r) for r in rows}


def run_processes(runs: list[Run], settings: BatchSettings, devices: list[str | None], on_result: OnResult) -> None:
    """The rows on len(devices) worker processes (spawned: no CUDA state is forked). A row whose worker dies
    (killed, out of memory) is run once more on a fresh pool; if that dies too the row fails, the rest run."""
    import multiprocessing as mp
    from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
    from concurrent.futures.process import BrokenProcessPool

    ctx = mp.get_context("spawn")
    threads = max(1, (os.cpu_count() or 1) // len(devices))
    pools: list[ProcessPoolExecutor] = []  # the live pool, kept across waves (each start loads the model again)

    def pool() -> ProcessPoolExecutor:
        if not pools:
            queue = ctx.Queue()
            for d in devices:
                queue.put(d)
            pools.append(ProcessPoolExecutor(len(devices), mp_context=ctx, initializer=_init_worker,
                                             initargs=(settings, queue, threads)))
        return pools[0]

    def attempt(rows: list[Run]) -> list[Run]:
        lost: list[Run] = []
        pending = {pool().submit(_work, r): r for r in rows}
        while pending:
            done, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in done:
                run = pending.pop(future)
                try:
                    result = future.result()
                except BrokenProcessPool:
                    lost.append(run)
                else:
                    on_result(result)
        if lost:  # a worker died: the pool is broken, its rows go to a fresh one
            pools.pop().shutdown(wait=True, cancel_futures=True)
        return lost

    try:
        for wave in waves(runs):
            retrying(wave, attempt, _failed_as_dead(settings, on_result))
    finally:
        for p in pools:
            p.shutdown(wait=True, cancel_futures=True)


# ----------------------------------------------------------------------------------------------- Ray
class RayWorker:
    """A Ray actor: one model held for all the rows it is given."""

    def __init__(self, settings: BatchSettings):
        from ..backbones.loaded import keep_loaded

        self.settings = settings
        self.held = keep_loaded()
        self.held.__enter__()

    def run(self, run: Run) -> dict[str, Any]:
        return run_row(run, self.settings)


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster's host:port (or ray://host:port) answers within `timeout` s: Ray itself retries a dead address
    for minutes."""
    import socket

    from ..errors import InputError
    from .preflight import parse_address

    try:
        where = parse_address(address)
    except ValueError:
        raise InputError(f"--address {address!r} is not HOST:PORT (or ray://HOST:PORT, or auto)")
    if where is None:  # auto, local: Ray finds or starts its own
        return
    try:
        socket.create_connection(where, timeout=timeout).close()
    except OSError as e:
        raise InputError(f"no Ray cluster answers at --address {address} ({e.strerror or e}); start one with "
                         f"`ray start --head` or leave --address out to run a local one")


def run_ray(runs: list[Run], settings: BatchSettings, on_result: OnResult, *, address: str | None = None,
            workers: int | None = None) -> None:
    """The rows on Ray actors, one GPU each where the cluster has GPUs (else one CPU each): `address` is
    an existing cluster's (`ray start --head` prints it; "auto" finds a local one); without it, and with
    no RAY_ADDRESS and no Ray already started in this process, Ray starts a local one. An actor runs one row
    at a time, so a dead actor loses exactly its row: that row runs once more on fresh actors."""
    import ray
    from ray.exceptions import RayActorError

    if not ray.is_initialized():
        if address is not None:
            check_reachable(address)
        ray.init(address=address, include_dashboard=False, log_to_driver=False)
    gpus = int(ray.cluster_resources().get("GPU", 0))
    n = workers or max(gpus, 1)
    actor = ray.remote(num_gpus=1, num_cpus=1)(RayWorker) if gpus else ray.remote(num_cpus=1)(RayWorker)

    actors: list = []  # the live actors, kept across waves (each start loads the model again)

    def attempt(rows: list[Run]) -> list[Run]:
        actors.extend(actor.remote(settings) for _ in range(n - len(actors)))  # replacing any that died
        idle, queue, running, lost = list(actors), list(rows), {}, []
        while queue or running:
            while idle and queue:
                a, run = idle.pop(), queue.pop(0)
                running[a.run.remote(run)] = (a, run)
            if not running:  # every actor died: the rest wait for fresh ones
                lost += queue
                break
            [ref], _ = ray.wait(list(running), num_returns=1)
            a, run = running.pop(ref)
            try:
                result = ray.get(ref)
            except RayActorError:
                lost.append(run)  # that actor is gone: it takes no more rows
                actors.remove(a)
            else:
                idle.append(a)
                on_result(result)
        return lost

    try:
        for wave in waves(runs):
            retrying(wave, attempt, _failed_as_dead(settings, on_result))
    finally:
        for a in actors:
            ray.kill(a)


def ordered(results: Iterable[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Results in manifest order (workers finish in any order)."""
    return iter(sorted(results, key=lambda r: r["row"]))
