"""What a batch checks before any row runs or any model loads: everything every row shares."""
from __future__ import annotations

import importlib
import importlib.util
import os
import re
from dataclasses import replace
from typing import Any

from ..errors import InputError
from .manifest import Run
from .runner import BatchSettings
from .setups import INJECT, INJECT_SOURCE, all_setups, builtin_names, guide_config

BACKENDS = ("local", "ray")
MAX_WORKERS = 1024  # each worker holds a model: far more than any machine or cluster here runs at once
# What ray.init takes: auto, local, HOST:PORT (a GCS), or ray://HOST[:PORT] (Ray Client); HOST a name, IPv4 or [IPv6]
_HOST = r"(?:\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?)"
_ADDRESS = re.compile(rf"^(?:ray://(?P<client>{_HOST})(?::(?P<client_port>\d+))?|(?P<host>{_HOST}):(?P<port>\d+))$")


def check_backend(backend: str, workers: int | None, address: str | None) -> None:
    if backend not in BACKENDS:
        raise InputError(f"--backend must be one of {', '.join(BACKENDS)}, not {backend!r}")
    if workers is not None and (isinstance(workers, bool) or not isinstance(workers, int) or not 1 <= workers <= MAX_WORKERS):
        raise InputError(f"--workers must be between 1 and {MAX_WORKERS}, got {workers}")
    if address is not None and backend != "ray":
        raise InputError("--address is for --backend ray")
    if backend != "ray":
        return
    if address is not None:
        check_address(address, "--address")
    elif os.environ.get("RAY_ADDRESS"):  # what ray.init falls back to
        check_address(os.environ["RAY_ADDRESS"], "$RAY_ADDRESS")
    _import_ray()


RAY_CLIENT_PORT = 10001  # Ray Client's default, for ray://HOST


def parse_address(address: str) -> tuple[str, int] | None:
    """(host, port) of a Ray address, None for auto and local; ValueError for anything ray.init cannot take."""
    if address in ("auto", "local"):
        return None
    match = _ADDRESS.match(address)
    if match is None:
        raise ValueError(address)
    port = int(match["port"] or match["client_port"] or RAY_CLIENT_PORT)
    if not 1 <= port <= 65535:
        raise ValueError(address)
    return (match["client"] or match["host"]).strip("[]"), port


def check_address(address: str, where: str) -> None:
    """A Ray address ray.init can take, checked now rather than after the manifest is read and Ray starts."""
    try:
        parse_address(address)
    except ValueError:
        raise InputError(f"{where} {address!r} is not a Ray address: give HOST:PORT (what `ray start --head` prints), "
                         f"ray://HOST:PORT or auto")


def _import_ray() -> None:
    """Ray imported now: missing, or installed but broken (a missing shared library, a mismatched dependency),
    is one line before any model loads."""
    if importlib.util.find_spec("ray") is None:
        raise InputError("--backend ray needs Ray: pip install 'ditflow[ray]' (or pip install ray)")
    try:
        importlib.import_module("ray")
    except Exception as e:  # whatever a broken install raises while importing
        reason = (str(e).strip().splitlines() or [""])[0]
        raise InputError(f"--backend ray: Ray is installed but does not import ({type(e).__name__}: {reason}); "
                         f"reinstall it: pip install --force-reinstall 'ditflow[ray]'")


def check_setups(names: list[str], custom: dict[str, Any]) -> None:
    """The --setups names (for rows that name none) against the built-in and custom setups, before any model
    loads: a typo there would otherwise fail every such row."""
    known = set(builtin_names()) | set(custom)
    unknown = [n for n in names if n not in known]
    if unknown:
        raise InputError(f"--setups: unknown setup '{unknown[0]}' (known: {', '.join(sorted(known))})")


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
