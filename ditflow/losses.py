"""Guidance losses: pure functions (generated, reference) -> scalar.

Shapes: AMF [F, F, P, 2] (see amf.py); block features [F, C, h, w] (a block's output for the video tokens).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def amf_loss(generated: torch.Tensor, reference: torch.Tensor, threshold: bool = True,
             weight: torch.Tensor | None = None, moving: torch.Tensor | None = None) -> torch.Tensor:
    """MSE between the generated (soft) AMF and the reference AMF (argmax, as the paper, or soft), both
    [F, F, P, 2]. With `threshold`, only where the reference moves: `moving` [F, F, P] bool, by default where
    the reference displacement is non-zero (the paper's thresholded loss; a soft reference passes its argmax's).
    With `weight` [F, F, P] (e.g. the reference's attention confidence), a weighted mean over those entries,
    so arbitrary argmaxes of flat attention count little."""
    reference = reference.to(generated.dtype)
    mask = (reference.norm(dim=-1) > 0) if moving is None else moving.bool()
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


def appearance_saliency(latent: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """How far each patch's appearance lies from its frame's typical patch: latent [F, C, H, W] (the
    reference's clean latent), grid (F, h, w) in patches -> [F, h*w] in [0, 1], 1 for the most distinct patch
    of each frame. An object over a plain or gradient background scores high and the background low, also when
    the whole scene moves with it (a pan), where motion alone cannot tell them apart."""
    f, h, w = grid
    x = F.adaptive_avg_pool2d(latent.float(), (h, w)).flatten(2)  # [F, C, P]
    d = (x - x.median(dim=2, keepdim=True).values).norm(dim=1)  # [F, P]
    return d / d.amax(dim=1, keepdim=True).clamp_min(1e-12)


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
