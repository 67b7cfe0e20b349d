"""FastVMT's guide: AdamW on the noisy latent against the tiled AMF of the guidance block(s) (fastvmt_loss.py),
a full forward+backward every `grad_reuse`-th Adam step and the last gradient reused between (ditflow.guides
.Guide's loop). At each guided step the reference's tiled AMF comes first, from one no-grad forward of the
reference latent noised to the step's timestep with an empty prompt, as the peer's `guidance_step` does."""
from __future__ import annotations

from dataclasses import dataclass, field

import torch

from ..guides import LatentGuide
from ..model import BlockTaps, Model
from ..processors import QKRecorder
from .fastvmt_loss import TiledAMF, fastvmt_loss, pair_weight_vector, tiled_amf


@dataclass
class FastVMTLoss:
    """The guide's loss (`blocks`, `needs_qk`, `block_loss`, as ditflow.losses'): the generated video's tiled AMF
    at block b against `reference[b]` (the reference's [pairs, P, 2], set before each guided step) plus the
    window loss. Settings as FastVMTSettings."""

    blocks: tuple[int, ...]
    grid: tuple[int, int, int]
    tile: tuple[int, int]
    window: int
    pair_distance: int
    far_weight: float
    amf_weight: float
    window_weight: float
    attn_temperature: float
    reference: dict[int, torch.Tensor] = field(default_factory=dict)
    needs_qk = True

    def amf(self, q: torch.Tensor, k: torch.Tensor) -> TiledAMF:
        return tiled_amf(q, k, self.grid, tile=self.tile, window=self.window, pair_distance=self.pair_distance,
                         temperature=self.attn_temperature)

    def block_loss(self, b: int, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q, k: [H, N, D] post-RoPE video tokens of block b."""
        weights = pair_weight_vector(self.grid[0], self.pair_distance, self.far_weight).to(q.device)
        return fastvmt_loss(self.amf(q, k), self.reference[b], weights, self.amf_weight, self.window_weight)


class FastVMTGuide(LatentGuide):
    """LatentGuide with AdamW, the reference's tiled AMF recomputed at each guided step's timestep. ref_latent:
    the reference's clean latent; noise: what noises it (the run's initial noise, as KV injection's pass);
    ref_text [1, L, D]: the empty prompt; ref_cond: an image-to-video model's reference condition (its own
    first frame) or None."""

    def __init__(self, model: Model, loss: FastVMTLoss, *, ref_latent: torch.Tensor, noise: torch.Tensor,
                 ref_text: torch.Tensor, ref_cond=None, **kw):
        super().__init__(model, loss, optimizer=torch.optim.AdamW, **kw)  # the peer's: defaults, weight decay 0.01
        self.ref_latent, self.noise, self.ref_text, self.ref_cond = ref_latent, noise, ref_text, ref_cond

    @torch.no_grad()
    def reference_flows(self, t) -> dict[int, torch.Tensor]:
        """The reference's tiled AMF at the guidance blocks: block -> [pairs, P, 2]."""
        backbone = self.model.backbone
        noisy = backbone.add_noise(self.ref_latent, self.noise, t)
        recorders = {b: QKRecorder() for b in self.blocks}
        with backbone.install(recorders), BlockTaps(backbone, self.blocks, self.model.geo.grid, features=False,
                                                    stop=self.stop_early):
            self.model.forward(noisy, t, self.ref_text, cond=self.ref_cond)
        return {b: self.loss_fn.amf(r.q, r.k).flows for b, r in recorders.items()}

    def _optimise(self, x, i, t):
        self.loss_fn.reference = self.reference_flows(t)
        return super()._optimise(x, i, t)

    def result(self, x, var, t):
        # AdamW's weight decay moves every entry, gradient or not: an image-to-video model's picture frame
        # (which guided_latent keeps out of the gradient) is put back exactly.
        backbone = self.model.backbone
        if backbone.needs_image:
            var.detach().narrow(backbone.frame_axis, 0, 1).copy_(x.narrow(backbone.frame_axis, 0, 1))
        return super().result(x, var, t)
