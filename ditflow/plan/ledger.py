"""What a run holds and does, counted op by op under fake tensors (`Ledger`, a TorchDispatchMode).

Memory: the bytes of every live storage an op created (weights, registered up front, are counted apart), their
peak within a window. A storage is freed when its last tensor is (a weak reference's callback), as the CUDA
caching allocator frees its block, so the peak is what `torch.cuda.max_memory_allocated` would see above the
weights, less fragmentation and workspaces (a stated margin, `plan.estimate`).

Time: per op its FLOPs (torch.utils.flop_counter's formulas: matmuls, convolutions, attention) and the bytes
it reads and writes; a roofline bound of each op on a GPU is max(FLOPs / peak FLOP/s, bytes / bandwidth).

A fake tensor has no values: an op that reads one back (`.item()`, a bool, `allclose`) gets `PLACEHOLDER` (true),
so loss records, finite checks and similar bookkeeping run as they would (a test of values picks its first branch,
of the same shapes); nothing the plan reports depends on it. A
boolean mask (`nonzero`) selects every entry: the most memory the selection can take.
"""
from __future__ import annotations

import weakref
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Iterator

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves
from torch.utils.flop_counter import flop_registry

PLACEHOLDER = 1
_READS = {torch.ops.aten._local_scalar_dense.default, torch.ops.aten.allclose.default, torch.ops.aten.equal.default}
_NO_TRAFFIC = {torch.ops.aten.view.default, torch.ops.aten._unsafe_view.default, torch.ops.aten.t.default,
               torch.ops.aten.transpose.int, torch.ops.aten.permute.default, torch.ops.aten.expand.default,
               torch.ops.aten.slice.Tensor, torch.ops.aten.select.int, torch.ops.aten.unsqueeze.default,
               torch.ops.aten.squeeze.dim, torch.ops.aten.detach.default, torch.ops.aten.alias.default,
               torch.ops.aten.as_strided.default, torch.ops.aten.split.Tensor, torch.ops.aten.chunk.default,
               torch.ops.aten.unbind.int, torch.ops.aten.split_with_sizes.default, torch.ops.aten.reshape.default}


@dataclass
class Window:
    """One phase's figures: `start` bytes live when it began (besides weights), `peak` the most live within it,
    `end` when it ended; `ops` the (FLOPs, bytes moved) of each op it ran."""

    start: int = 0
    peak: int = 0
    end: int = 0
    ops: list[tuple[float, float]] = field(default_factory=list)

    @property
    def flops(self) -> float:
        return sum(f for f, _ in self.ops)

    def seconds(self, flops_per_s: float, bytes_per_s: float) -> float:
        """The roofline bound: each op limited by compute or by memory traffic, whichever is slower."""
        return sum(max(f / flops_per_s, b / bytes_per_s) for f, b in self.ops)


def _masks(indices) -> bool:
    return any(i is not None and i.dtype == torch.bool for i in indices)


def _selection(func, args):
    """The result of an op selecting by a boolean mask, as if the mask selected every entry (None: another op)."""
    if func is torch.ops.aten.nonzero.default:
        x = args[0]
        return torch.empty((x.numel(), x.dim()), dtype=torch.long, device=x.device)
    if func is torch.ops.aten.index.Tensor and _masks(args[1]):
        x, (mask, *rest) = args
        if rest or mask is None or mask.dtype != torch.bool:
            raise NotImplementedError("the planner selects by one leading boolean mask only")
        return torch.empty((mask.numel(), *x.shape[mask.dim():]), dtype=x.dtype, device=x.device)
    if func in (torch.ops.aten.index_put.default, torch.ops.aten._index_put_impl_.default,
                torch.ops.aten.index_put_.default) and _masks(args[1]):
        return args[0] if func is not torch.ops.aten.index_put.default else torch.empty_like(args[0])
    return None


class Ledger(TorchDispatchMode):
    """Counts live storages and op costs of everything run under it (enter it inside a FakeTensorMode)."""

    def __init__(self, fake: bool = True, costs: bool = True) -> None:
        super().__init__()
        self.fake = fake  # on real tensors (a measurement) values are read and masks select as they say
        self.costs = costs  # count each op's FLOPs and bytes (the time estimate; a sixth of a simulation's time)
        self._live: dict[int, tuple[weakref.ref, int]] = {}
        self._weights: set[int] = set()
        self.current = 0
        self._window: Window | None = None
        self.ops_seen: set[str] = set()  # op names, e.g. which attention kernel ran

    def weights(self, *modules: torch.nn.Module) -> int:
        """Mark the modules' parameters and buffers as weights (never counted as run memory); their bytes."""
        total = 0
        for m in modules:
            for t in [*m.parameters(), *m.buffers()]:
                st = t.untyped_storage()
                if id(st) not in self._weights:
                    self._weights.add(id(st))
                    total += st.nbytes()
        return total

    def _track(self, t: torch.Tensor) -> None:
        st = t.untyped_storage()
        key = id(st)
        if key in self._live or key in self._weights:
            return
        n = st.nbytes()

        def freed(_ref, key=key, n=n):
            if self._live.pop(key, None) is not None:
                self.current -= n

        self._live[key] = (weakref.ref(st, freed), n)
        self.current += n
        if self._window is not None and self.current > self._window.peak:
            self._window.peak = self.current

    @contextmanager
    def window(self) -> Iterator[Window]:
        """Measure what runs in the block: its peak live bytes and its ops."""
        outer = self._window
        w = Window(start=self.current, peak=self.current)
        self._window = w
        try:
            yield w
        finally:
            w.end = self.current
            self._window = outer
            if outer is not None:
                outer.peak = max(outer.peak, w.peak)
                outer.ops.extend(w.ops)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if self.fake and func in _READS:  # a fake tensor's value: there is none
            return PLACEHOLDER
        out = _selection(func, args) if self.fake else None
        if out is None:
            out = func(*args, **kwargs)
        self.ops_seen.add(func.__name__)
        tensors = [t for t in tree_leaves(out) if isinstance(t, torch.Tensor)]
        for t in tensors:
            self._track(t)
        if self.costs and self._window is not None and func not in _NO_TRAFFIC:
            count = flop_registry.get(func._overloadpacket)
            flops = count(*args, **kwargs, out_val=out) if count is not None else 0
            moved = sum(t.numel() * t.element_size() for t in [*tree_leaves(args), *tree_leaves(kwargs), *tensors]
                        if isinstance(t, torch.Tensor))
            self._window.ops.append((float(flops), float(moved)))
        return out
