"""What a batch checks before any row runs or any model loads: everything every row shares."""
from __future__ import annotations

import importlib.util
from dataclasses import replace

from ..errors import InputError
from .manifest import Run
from .runner import BatchSettings
from .setups import INJECT, INJECT_SOURCE, all_setups, guide_config

BACKENDS = ("local", "ray")


def check_backend(backend: str, workers: int | None, address: str | None) -> None:
    if backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or workers < 1):
        raise InputError(f"--workers must be at least 1, got {workers}")
    if address is not None and backend != "ray":
        raise InputError("--address is for --backend ray")
    if backend == "ray" and importlib.util.find_spec("ray") is None:
        raise InputError("--backend ray needs Ray: pip install 'ditflow[ray]' (or pip install ray)")


def preflight(settings: BatchSettings, runs: list[Run]) -> BatchSettings:
    """The settings checked as every row would check them, with the model resolved once (the returned settings
    carry it to every worker): the model, its sizes and blocks, the shared guide settings under each setup the
    runs use (its family's settings, its guidance range)."""
    from ..stages import check_extract

    settings.runtime.validate()
    _, model = check_extract(settings.extract, settings.model)
    table = all_setups(settings.setups)
    for name in sorted({r.setup for r in runs if r.error is None}):
        try:
            cfg = model.guide_config(guide_config(settings.guide, table[INJECT_SOURCE if name == INJECT else name], "x", 1))
            model.check_blocks(cfg.injection_blocks, "--injection-blocks")
        except InputError as e:
            raise InputError(f"setup {name}: {e}")
    return replace(settings, model=model)
