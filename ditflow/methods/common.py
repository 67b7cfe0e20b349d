"""The math the methods share, as pure functions of tensors: a prediction's clean latent in the family's own
parameterisation (the adapter's `x0_coefficients`: v-prediction on CogVideoX, flow matching on Wan) and its
inverse, the prediction that reaches a given clean latent."""
from __future__ import annotations

import torch


def x0_from(backbone, x: torch.Tensor, prediction: torch.Tensor, t) -> torch.Tensor:
    """x̂₀ = a·x_t − b·prediction at timestep t (shapes as x)."""
    a, b = backbone.x0_coefficients(t)
    return a * x - b * prediction


def prediction_for(backbone, x: torch.Tensor, x0: torch.Tensor, t) -> torch.Tensor:
    """The prediction that would take x_t to clean latent x0: (a·x_t − x0) / b, the inverse of `x0_from`."""
    a, b = backbone.x0_coefficients(t)
    return (a * x - x0) / b


def channel_axis(backbone) -> int:
    """The channel axis of the transformer's latent: the other of axes 1, 2 than `frame_axis` ([B, F, C, h, w] or
    [B, C, F, h, w])."""
    return 3 - backbone.frame_axis


def noise_coefficients(backbone, t, like: torch.Tensor) -> tuple[float, float]:
    """(α_t, σ_t) with x_t = α_t·x0 + σ_t·noise, read off the adapter's own `add_noise` on one-element tensors of
    `like`'s device and rank (so a method needs no family's formula): √ᾱ, √(1−ᾱ) on CogVideoX, 1−σ, σ on Wan."""
    one = like.new_ones((1,) * like.dim(), dtype=torch.float32)
    return float(backbone.add_noise(one, 0 * one, t)), float(backbone.add_noise(0 * one, one, t))


def flow_coordinates(x: torch.Tensor, x0: torch.Tensor, alpha: float, sigma: float):
    """x_t = α·x̂₀ + σ·ε̂ seen as rectified flow: (y, s, u) with y = x_t/(α+σ) = (1−s)·x̂₀ + s·ε̂ at flow time
    s = σ/(α+σ) and velocity u = ε̂ − x̂₀, so x̂₀ = y − s·u. On a flow-matching family (α = 1 − σ) it is the
    identity (y = x_t, s = σ, u its velocity); deterministic DDIM is exactly Euler in (y, s). Shapes as x."""
    k = alpha + sigma
    eps = (x - alpha * x0) / sigma
    return x / k, sigma / k, eps - x0


def reference_condition(model, amf, seed: int):
    """What the reference's own passes are conditioned on: on a run that animates an image, the reference's first
    frame, drawn as at extraction (its seed); else None (as stages._generate builds KV injection's)."""
    if model.cond is None:
        return None
    gen = torch.Generator().manual_seed(amf.inputs.get("seed", seed))
    return model.backbone.condition(amf.frames[0], model.geo, gen)
