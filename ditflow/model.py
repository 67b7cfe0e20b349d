"""The one place the transformer is called (`Model`: a backbone at one geometry), and the block hooks that
keep block features and end a forward early (`BlockTaps`). Family-free: the backbone says where its blocks
are, which module follows them and where a block's output holds the video tokens."""
from __future__ import annotations

import torch


class _Stop(Exception):
    """Raised from a hook to end a forward pass once the last guidance block has run."""


class BlockTaps:
    """Forward hooks that keep the video-token output of some blocks as [F, C, h, w] (MOFT/SMM features)
    and stop the pass after the last of them, so later blocks never run while optimising."""

    def __init__(self, backbone, blocks, grid, *, features: bool, stop: bool):
        self.backbone, self.blocks, self.grid = backbone, sorted(blocks), grid
        self.keeps_features, self.stops = features, stop
        self.features: dict[int, torch.Tensor] = {}

    def __enter__(self):
        self.handles = []
        for expert in self.backbone.experts:  # whichever expert runs (a two-expert model picks by timestep)
            blocks = self.backbone.blocks_of(expert)
            if self.keeps_features:
                for b in self.blocks:
                    self.handles.append(blocks[b].register_forward_hook(self._keep(b)))
            if self.stops:
                last = self.blocks[-1]
                # A pre-hook on the *next* module: the stop never fires inside a checkpointed block's recompute.
                nxt = blocks[last + 1] if last + 1 < len(blocks) else self.backbone.after_blocks_of(expert)
                self.handles.append(nxt.register_forward_pre_hook(self._stop))
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        return exc[0] is _Stop  # swallow our own stop signal

    def _keep(self, b):
        f, h, w = self.grid

        def hook(_module, _inputs, out):
            video = self.backbone.block_video(out)  # [N, C] of the last batch row
            self.features[b] = video.reshape(f, h, w, -1).permute(0, 3, 1, 2)

        return hook

    @staticmethod
    def _stop(_module, _inputs):
        raise _Stop


class Model:
    """A backbone at one geometry, with the run's image condition (image-to-video; None otherwise): the one place
    the transformer is called."""

    def __init__(self, backbone, geo, cond=None):
        self.backbone, self.geo, self.cond = backbone, geo, cond

    def positions(self, emb: torch.Tensor):
        """An optimised embedding as this model's forward takes it."""
        return self.backbone.positions(emb)

    def install(self, taps):
        """Our processors at every block, with these taps (context manager)."""
        return self.backbone.install(taps)

    def forward(self, x, t, text, positions=None, expert: int | None = None, cond=None):
        """The transformer's prediction for latents x at timestep t (a 0-d tensor) with text [B, L, D]
        (`expert`: that transformer of a two-expert model instead of the timestep's; `cond`: another image
        condition than the run's, e.g. the reference's own first frame for its KV-injection pass)."""
        return self.backbone.forward(x, t, text, self.geo, positions, expert, self.cond if cond is None else cond)

    def predict(self, x, t, text, scale: float | None, positions=None):
        """CFG-combined float32 prediction; text [2, L, D] (negative, positive); scale None: positive only."""
        return self.backbone.predict(x, t, text, scale, self.geo, positions, self.cond)
