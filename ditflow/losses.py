"""Guidance losses: pure functions (generated, reference) -> scalar, and one object per loss of the
guide (`FlowLoss`, `MoftLoss`, `SmmLoss`) built from the AMF artifact, which says what it needs from a
forward pass: q/k of the guidance blocks (`needs_qk`) or their video-token features.

Shapes: AMF [F, F, P, 2] (see ditflow.amf); block features [F, C, h, w] (a block's output for the video tokens).
Adding a loss is one class with `blocks`, `needs_qk` and `block_loss`, and one entry in `LOSSES`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .amf import Window, attention_confidence, attention_motion_flow, window_mask


def amf_loss(generated: torch.Tensor, reference: torch.Tensor, threshold: bool = True,
             weight: torch.Tensor | None = None, moving: torch.Tensor | None = None,
             valid: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the generated (soft) AMF and the reference AMF (argmax, as the paper, or soft), both
    [F, F, P, 2]. With `threshold`, only where the reference moves: `moving` [F, F, P] bool, by default where
    the reference displacement is non-zero (the paper's thresholded loss; a soft reference passes its argmax's).
    With `weight` [F, F, P] (e.g. the reference's attention confidence), a weighted mean over those entries,
    so arbitrary argmaxes of flat attention count little. `valid` [F, F, P] bool: the only entries that may
    count (a windowed AMF's reach, see amf.window_mask)."""
    reference = reference.to(generated.dtype)
    mask = (reference.norm(dim=-1) > 0) if moving is None else moving.bool()
    if valid is not None:
        generated, reference, mask = generated[valid], reference[valid], mask[valid]
        weight = None if weight is None else weight[valid]
    if weight is not None:
        w = weight.to(generated.dtype)
        if threshold and mask.any():
            w = w * mask
        err = ((generated - reference) ** 2).mean(dim=-1)
        return (w * err).sum() / w.sum().clamp_min(1e-12)
    if threshold:
        if not mask.any():  # a static reference: fall back to every entry rather than a NaN
            return F.mse_loss(generated, reference)
        return F.mse_loss(generated[mask], reference[mask])
    return F.mse_loss(generated, reference)


def moft_channels(reference: torch.Tensor, fraction: float = 0.04) -> torch.Tensor:
    """MOFT's motion channels of a reference's features [F, C, h, w]: the `fraction` of channels with the
    largest weight in the first principal direction of the temporally-centred features. Returns [K]."""
    centred = reference - reference.mean(dim=0, keepdim=True)
    f, c, h, w = centred.shape
    _, _, vt = torch.linalg.svd(centred.permute(0, 2, 3, 1).reshape(-1, c).float(), full_matrices=False)
    k = max(1, int(fraction * c))
    return vt[0].abs().argsort(descending=True)[:k]


def moft_loss(generated: torch.Tensor, reference: torch.Tensor, channels: torch.Tensor) -> torch.Tensor:
    """MOFT: 1 - cosine (over the motion channels) between the temporally-centred features of each frame,
    averaged over positions and frames. generated, reference: [F, C, h, w]; channels: [K]."""
    gen = generated - generated.mean(dim=0, keepdim=True)
    ref = (reference - reference.mean(dim=0, keepdim=True)).to(gen.dtype)
    cos = F.cosine_similarity(gen[:, channels], ref[:, channels], dim=1)  # [F, h, w]
    return (1 - cos.mean(dim=(1, 2))).mean()


def smm_loss(generated: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """Spatial marginal mean loss: the spatial mean of each frame minus that of an anchor frame, for every
    anchor, compared by cosine along time per channel (as the paper's DiT version). Each video is measured
    against its own anchor (the paper's code used the reference's anchor for both). [F, C, h, w] each."""
    gen = generated.mean(dim=(-1, -2))  # [F, C]
    ref = reference.mean(dim=(-1, -2)).to(gen.dtype)
    gen_d = gen.unsqueeze(0) - gen.unsqueeze(1)  # [anchor, F, C]
    ref_d = ref.unsqueeze(0) - ref.unsqueeze(1)
    cos = F.cosine_similarity(gen_d, ref_d, dim=1)  # [anchor, C]
    return (1 - cos.mean(dim=1)).mean()


# ------------------------------------------------------------------------------------- the guide's losses
@dataclass
class FlowLoss:
    """DiTFlow's AMF loss: the generated video's soft AMF against the reference's, per guidance block.

    amf: block -> [F, F, P, 2] reference argmax AMF (its non-zero entries are the moving ones); target:
    block -> [F, F, P, 2] soft AMF to aim at instead (`reference_flow="soft"`); weight: block -> [F, F, P]
    reference attention confidence (`loss_weighting` confidence or mutual); mutual: also weight by the
    generated video's own confidence, so guidance does not ask a plain background to move; window: fast
    mode's local AMF (`amf.Window`), scored on the entries it reaches (None, or one covering the grid: the full AMF)."""

    amf: dict[int, torch.Tensor]
    grid: tuple[int, int, int]
    temperature: float
    threshold: bool = True
    target: dict[int, torch.Tensor] = field(default_factory=dict)
    weight: dict[int, torch.Tensor] = field(default_factory=dict)
    mutual: bool = False
    window: Window | None = None
    needs_qk = True

    def __post_init__(self):
        if self.window is not None:  # limits that cover the grid change nothing: dropped once, here
            self.window = self.window.for_grid(self.grid)
        self.valid = {} if self.window is None else {
            b: window_mask(self.grid, self.window, a).to(a.device) for b, a in self.amf.items()}

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(sorted(self.amf))

    @classmethod
    def from_artifact(cls, art, cfg, device) -> "FlowLoss":
        blocks = art.blocks
        weighted = cfg.loss_weighting in ("confidence", "mutual")
        return cls(amf={b: art.amf(b).to(device) for b in blocks}, grid=art.grid, temperature=art.temperature,
                   window=Window(cfg.amf_window, cfg.amf_frame_distance), threshold=cfg.threshold_loss,
                   mutual=cfg.loss_weighting == "mutual",
                   target={b: art.soft_amf(b).to(device) for b in blocks} if cfg.reference_flow == "soft" else {},
                   weight={b: art.confidence(b).to(device) for b in blocks} if weighted else {})

    def block_loss(self, b: int, q: torch.Tensor, k: torch.Tensor) -> torch.Tensor:
        """q, k: [H, N, D] post-RoPE video tokens of block b."""
        q, k = q.float(), k.float()
        flow = attention_motion_flow(q, k, self.grid, self.temperature, mode="soft", window=self.window)
        weight = self.weight.get(b)
        if self.mutual and weight is not None:
            weight = weight * attention_confidence(q.detach(), k.detach(), self.grid, self.temperature, window=self.window)
        # the soft target, where given, is scored on the entries the argmax AMF marks moving
        target, moving = self.target.get(b, self.amf[b]), self.amf[b].norm(dim=-1) > 0
        return amf_loss(flow, target, self.threshold, weight, moving, self.valid.get(b))


@dataclass
class MoftLoss:
    """MOFT: the generated features' motion channels against the reference's. features: block -> [F, C, h, w];
    channels: block -> [K] (chosen at extraction)."""

    features: dict[int, torch.Tensor]
    channels: dict[int, torch.Tensor]
    needs_qk = False

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(sorted(self.features))

    @classmethod
    def from_artifact(cls, art, cfg, device) -> "MoftLoss":
        return cls(features={b: art.features(b).to(device) for b in art.blocks},
                   channels={b: art.moft_channels(b).to(device) for b in art.blocks})

    def block_loss(self, b: int, features: torch.Tensor) -> torch.Tensor:
        return moft_loss(features.float(), self.features[b], self.channels[b])


@dataclass
class SmmLoss:
    """Spatial marginal mean loss against the reference's block features: block -> [F, C, h, w]."""

    features: dict[int, torch.Tensor]
    needs_qk = False

    @property
    def blocks(self) -> tuple[int, ...]:
        return tuple(sorted(self.features))

    @classmethod
    def from_artifact(cls, art, cfg, device) -> "SmmLoss":
        return cls(features={b: art.features(b).to(device) for b in art.blocks})

    def block_loss(self, b: int, features: torch.Tensor) -> torch.Tensor:
        return smm_loss(features.float(), self.features[b])


LOSSES = {"flow": FlowLoss, "moft": MoftLoss, "smm": SmmLoss}
