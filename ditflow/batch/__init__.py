"""Batch runs over a manifest: extract -> guide (-> inject) -> eval for every row, on one machine or Ray.

    manifest = read_manifest("runs.csv", setups=["ditflow-latent"], seeds=[1])
    results = run_batch(manifest.runs, BatchSettings(cache=..., extract=ExtractConfig(model="5b")))

manifest.py reads and checks the manifest, setups.py names the paper's setups, runner.py runs one row
(cache first), executors.py places rows on workers, results.py writes them, report*.py tabulates them.
"""
from __future__ import annotations

from typing import Any

from ..fileio import printable
from ..progress import Progress
from .executors import ordered, run_inline, run_processes, run_ray, worker_devices
from .manifest import Manifest, Run, read_manifest
from .preflight import BACKENDS, check_backend, check_setups, preflight
from .runner import BatchSettings, run_row


def run_batch(runs: list[Run], settings: BatchSettings, *, backend: str = "local", workers: int | None = None,
              address: str | None = None, quiet: bool = False) -> list[dict[str, Any]]:
    """Every run's result (results.COLUMNS), in manifest order; a failed row is a result, never an exception.
    Local: `workers` processes (default one per visible GPU, one on a CPU; one runs in this process). What every
    row shares is checked first (`preflight`), before any row runs."""
    check_backend(backend, workers, address)
    settings = preflight(settings, runs)
    progress = Progress(quiet)
    results: list[dict[str, Any]] = []

    def on_result(result: dict[str, Any]) -> None:
        results.append(result)
        what = f"{printable(result['video'])} | {printable(result['setup'])} | seed {result['seed']}"
        if result["status"] != "ok":
            progress.log(f"row {result['row']} failed ({what}): {printable(result['error'])}")
        progress.advance(f"{what}: {'cached' if result.get('cached') else result['status']}")

    with progress.task("batch", total=len(runs)):
        if backend == "ray":
            run_ray(runs, settings, on_result, address=address, workers=workers)
        else:
            devices = worker_devices(workers, settings.runtime.device)
            if len(devices) == 1:
                run_inline(runs, settings.on_device("cuda:" + devices[0] if devices[0] else None), on_result)
            else:
                run_processes(runs, settings, devices, on_result)
    return list(ordered(results))


__all__ = ["BACKENDS", "BatchSettings", "Manifest", "Run", "check_backend", "check_setups", "preflight", "read_manifest", "run_batch",
           "run_row"]
