"""The one place the transformer is called (`Model`), the positions a forward takes, and the block hooks
that keep block features and end a forward early (`BlockTaps`)."""
from __future__ import annotations

from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from typing import Iterator

import torch


class _Stop(Exception):
    """Raised from a hook to end a forward pass once the last guidance block has run."""


@dataclass
class Positions:
    """Token positions for one forward: RoPE tables (a (cos, sin) pair or a [2, 2, N, D] q/k tensor) for RoPE
    models, or the sincos embedding of the video tokens [N, dim] for the others. None: the model's own."""

    rope: object = None
    sincos: torch.Tensor | None = None


@contextmanager
def _sincos_replaced(transformer, embedding: torch.Tensor, base: torch.Tensor) -> Iterator[None]:
    """Make the patch embedding add `embedding` instead of `base` to the video tokens (a forward hook)."""
    delta = embedding - base

    def hook(_module, _inputs, out):
        n = delta.shape[0]
        return torch.cat([out[:, :-n], out[:, -n:] + delta.to(out.dtype)], dim=1)

    handle = transformer.patch_embed.register_forward_hook(hook)
    try:
        yield
    finally:
        handle.remove()


class BlockTaps:
    """Forward hooks that keep the video-token output of some blocks as [F, C, h, w] (MOFT/SMM features)
    and stop the pass after the last of them, so later blocks never run while optimising."""

    def __init__(self, transformer, blocks, grid, *, features: bool, stop: bool):
        self.transformer, self.blocks, self.grid = transformer, sorted(blocks), grid
        self.want_features, self.want_stop = features, stop
        self.features: dict[int, torch.Tensor] = {}

    def __enter__(self):
        self.handles = []
        blocks = self.transformer.transformer_blocks
        if self.want_features:
            for b in self.blocks:
                self.handles.append(blocks[b].register_forward_hook(self._keep(b)))
        if self.want_stop:
            last = self.blocks[-1]
            # A pre-hook on the *next* module: the stop never fires inside a checkpointed block's recompute.
            nxt = blocks[last + 1] if last + 1 < len(blocks) else self.transformer.norm_final
            self.handles.append(nxt.register_forward_pre_hook(self._stop))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return exc[0] is _Stop  # swallow our own stop signal

    def _keep(self, b):
        f, h, w = self.grid

        def hook(_module, _inputs, out):
            video = out[0][-1]  # [N, C] of the last batch row
            self.features[b] = video.view(f, h, w, -1).permute(0, 3, 1, 2)

        return hook

    @staticmethod
    def _stop(_module, _inputs):
        raise _Stop


class Model:
    """The one place the transformer is called: positions, processors and hooks for one forward."""

    def __init__(self, backbone, geo):
        self.backbone, self.geo = backbone, geo
        self.transformer = backbone.transformer
        self.default_rope = backbone.rope_tables(geo)
        self.base_sincos = None if backbone.uses_rope else backbone.sincos_embedding(geo)

    def positions(self, emb: torch.Tensor) -> Positions:
        """Optimised embeddings as this model takes them: RoPE tables, or the sincos embedding."""
        return Positions(rope=emb) if self.default_rope is not None else Positions(sincos=emb)

    def forward(self, x, t, text, positions: Positions | None = None):
        """v prediction [B, F, C, h, w] for latents x at timestep t (a 0-d tensor) with text [B, L, D]."""
        positions = positions or Positions()
        rope = positions.rope if positions.rope is not None else self.default_rope
        with ExitStack() as stack:
            if positions.sincos is not None:
                stack.enter_context(_sincos_replaced(self.transformer, positions.sincos, self.base_sincos))
            ts = t.expand(x.shape[0]).to(x.device)
            return self.transformer(hidden_states=x.to(self.backbone.dtype), encoder_hidden_states=text,
                                    timestep=ts, image_rotary_emb=rope, return_dict=False)[0]
