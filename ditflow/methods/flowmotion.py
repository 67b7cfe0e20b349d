"""FlowMotion (CVPR 2026): Adam on the noisy latent with no backpropagation through the transformer. The
reference's predicted clean latent (its latent noised to t, denoised once with an empty prompt) is the motion
representation; the generation's is formed from x_t and its velocity computed without gradient, so the
gradient reaches x_t only through x̂₀'s x_t term and a guided step costs forward passes only."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import rule
from .base import BuildContext, Method


@dataclass(frozen=True)
class FlowMotionSettings:
    alpha: float = field(default=20.0, metadata=rule(
        "FlowMotion: weight of the MSE between the reference's and the generation's predicted clean latents.",
        ge=0, le=10000))
    beta: float = field(default=5.0, metadata=rule(
        "FlowMotion: weight of the MSE between their latent frame differences (consecutive frames and every "
        "pair).", ge=0, le=10000))
    gamma: float = field(default=0.1, metadata=rule(
        "FlowMotion: velocity regulation, the scale of the generation's velocity component orthogonal to its "
        "running mean velocity from the initial noise (1: off; 0: only the component along it; none at the first "
        "step).", ge=0, le=10))
    source_latent: str = field(default="noised", metadata=rule(
        "FlowMotion: the reference's motion: its latent noised to t and denoised once, the predicted clean latent "
        "(noised, the paper's) or its clean latent itself (clean, their clean_latent variant).",
        choices=("noised", "clean")))


class FlowMotion(Method):
    name = "flowmotion"
    title = "FlowMotion"
    summary = ("the noisy latent, against the reference's predicted clean latent and its frame differences, "
               "with no backpropagation through the transformer")
    settings = FlowMotionSettings
    published = {"guidance_range": (50, 40), "opt_steps": 3, "lr": (0.003, 0.003), "injection": False}
    prompts = ("",)  # the reference's pass: an empty prompt

    def build(self, ctx: BuildContext):
        from .flowmotion_guide import FlowMotionGuide

        return FlowMotionGuide(ctx)


FLOWMOTION = FlowMotion()
