"""A per-process cache of the loaded pipeline, so that a batch worker loads its model once for all its rows.

    with keep_loaded():          # a batch worker's life
        extract(...); guide(...) # the second load_backbone of the same model is the same object

Outside `keep_loaded` every `load_backbone` loads afresh. Inside, the process holds at most one
backbone: asking for another model (or dtype, device, memory options) drops the held one first, so two
copies of the same weights are never in memory at once. The scheduler is not part of the key: it depends
on the run, not the weights, and `Backbone.start_run` gives every run a fresh one.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping

if TYPE_CHECKING:
    from ..config import RuntimeOptions
    from .base import Backbone

_depth = 0  # nested keep_loaded() blocks
_held: tuple[tuple, "Backbone"] | None = None
_loads = 0  # real loads in this process (what the batch's tests count)


def loads() -> int:
    """How many times this process has loaded a model's weights."""
    return _loads


@contextmanager
def keep_loaded() -> Iterator[None]:
    """Reuse the loaded model across stage calls for the life of the block; released at its end."""
    global _depth
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        if _depth == 0:
            release()


def release() -> None:
    """Drop the held backbone (and the GPU memory it holds)."""
    global _held
    if _held is None:
        return
    _held = None
    import gc

    gc.collect()
    import torch

    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def key_of(folder: str, dtype: str, runtime: "RuntimeOptions") -> tuple:
    """What decides the loaded weights and their placement; not the scheduler nor gradient checkpointing (each a
    run's choice, set per run)."""
    import torch

    from ..config import DTYPES

    device = runtime.device or ("cuda" if torch.cuda.is_available() else "cpu")
    text = "cpu" if runtime.text_encoder == "cpu" else "device"  # auto, where no plan decided: the device
    return (folder, DTYPES.get(dtype, dtype), device, bool(runtime.cpu_offload), runtime.vae_slicing,
            bool(runtime.vae_tiling), text)


def backbone(key: tuple, family: Mapping[str, Any], keeps_latent: bool, load: Callable[[], "Backbone"]) -> "Backbone":
    """The backbone for `key`, readied for a run (`Backbone.start_run`): `load()` outside keep_loaded or when
    another is held, else the held one."""
    global _held, _loads
    if _depth and _held is not None and _held[0] == key:
        made = _held[1]
    else:
        if _depth:
            release()  # never two models' weights at once
        made = load()
        _loads += 1
        if _depth:
            _held = (key, made)
    made.start_run(family, keeps_latent)
    return made
