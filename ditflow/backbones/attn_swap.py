"""Our attention processors in place of a transformer's own for the length of a block (`processors_at`)."""
from __future__ import annotations

from contextlib import contextmanager
from typing import Callable, Iterator, Mapping, Sequence


@contextmanager
def processors_at(transformers: Sequence, taps: Mapping[int, object], num_blocks: int, where: str,
                  make: Callable) -> Iterator[None]:
    """`make(tap)` as the processor at `where.format(b=b)` of every block b of each transformer (a block without a
    tap in `taps` gets a plain `Tap`); every transformer's old processors come back on exit."""
    from ..processors import Tap

    bad = [b for b in taps if not 0 <= b < num_blocks]
    if bad:
        raise ValueError(f"the transformer has no block {bad[0]} ({num_blocks} blocks)")
    olds = [dict(t.attn_processors) for t in transformers]
    for t, old in zip(transformers, olds):
        new = dict(old)
        for b in range(num_blocks):
            new[where.format(b=b)] = make(taps.get(b, Tap()))
        t.set_attn_processor(new)  # consumes the dict it is given: `old` stays intact
    try:
        yield
    finally:
        for t, old in zip(transformers, olds):
            t.set_attn_processor(dict(old))
