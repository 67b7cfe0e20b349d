"""NaN and infinities in what a stage computes: refused before anything is published.

A NaN latent decodes to black frames (NaN casts to 0 in uint8), which would be cached and served as a success;
every check here raises `NonFiniteResult` instead, one line naming what went wrong.
"""
from __future__ import annotations

from typing import Any

import numpy as np

from .errors import NonFiniteResult

WEIGHTS = "float32 weights (extract --dtype float32) avoid an overflow in half precision"


def all_finite(values: Any) -> bool:
    """Every element of a torch tensor or numpy array is finite (no NaN, no +-inf)."""
    if isinstance(values, np.ndarray):
        return bool(np.isfinite(values).all())
    import torch

    return bool(torch.isfinite(values).all())


def check_finite(what: str, *values: Any, hint: str = WEIGHTS) -> None:
    """Raise if any of `values` (tensors or arrays) holds NaN or inf; `what` names them ("the reference's
    AMF"), `hint` says what to change."""
    if not all(all_finite(v) for v in values):
        raise NonFiniteResult(f"{what} holds NaN or infinite values: nothing was written; {hint}")


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """Decoded float frames in [0, 1] -> uint8, refusing NaN and inf (np.clip keeps NaN; uint8 makes it 0)."""
    check_finite("the decoded video", frames)
    return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)
