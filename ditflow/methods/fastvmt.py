"""FastVMT (ICLR 2026): AdamW on the noisy latent against a local AMF: per tile of patches a centre query
finds where its window goes, attention within that window gives the displacements of frames a few apart
(weighted by distance), plus a loss keeping each tile's window keys alike over time; a full gradient every
few Adam steps, the steps between reuse it. The math is in fastvmt_loss.py, the guide in fastvmt_guide.py
(torch: imported by `build` only, the CLI reads these settings without it)."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import rule
from .base import BuildContext, Method


@dataclass(frozen=True)
class FastVMTSettings:
    window: int = field(default=21, metadata=rule(
        "FastVMT: side, in patches, of the local attention window each tile's queries look in (around where the "
        "tile's centre query went; at most the frame).", ge=1, le=255))
    tile: tuple[int, int] = field(default=(3, 4), metadata=rule(
        "FastVMT: H,W: patches per tile (each tile's centre query places its window).", ge=1, le=64))
    pair_distance: int = field(default=4, metadata=rule(
        "FastVMT: frames each frame is paired with, itself included (the peer's sf): 4 pairs frame i with i..i+3.",
        ge=1, le=64))
    far_weight: float = field(default=0.8, metadata=rule(
        "FastVMT: weight of the farthest frame pair (weights fall linearly from 1 for a frame with itself).",
        ge=0, le=1))
    amf_weight: float = field(default=5.0, metadata=rule(
        "FastVMT: weight of the local AMF's loss (squared L2 over each frame pair's displacements).", ge=0, le=10000))
    window_weight: float = field(default=1.0, metadata=rule(
        "FastVMT: weight of the window loss (mean keys of each tile's window in successive frames).",
        ge=0, le=10000))
    attn_temperature: float = field(default=1.0, metadata=rule(
        "FastVMT: softmax temperature of the local attention, above 0, at most 100.", gt=0, le=100))


class FastVMT(Method):
    name = "fastvmt"
    title = "FastVMT"
    summary = ("the noisy latent against a tiled local AMF and a window loss, AdamW with a full gradient every "
               "third step")
    settings = FastVMTSettings
    published = {"guidance_range": (50, 40), "opt_steps": 10, "lr": (0.003, 0.002), "grad_reuse": 3,
                 "injection": False}
    prompts = ("",)  # the reference's pass: the peer's prompt_null

    def build(self, ctx: BuildContext):
        from .common import reference_condition
        from .fastvmt_guide import FastVMTGuide, FastVMTLoss

        cfg, model = ctx.cfg, ctx.model
        backbone, blocks = model.backbone, tuple(sorted(ctx.amf.blocks))
        own = FastVMTSettings(**cfg.method_settings)
        loss = FastVMTLoss(blocks=blocks, grid=model.geo.grid, tile=tuple(own.tile), window=own.window,
                           pair_distance=own.pair_distance, far_weight=own.far_weight, amf_weight=own.amf_weight,
                           window_weight=own.window_weight, attn_temperature=own.attn_temperature)
        backbone.set_checkpointing(bool(ctx.runtime.gradient_checkpointing))
        # an image-to-video reference is conditioned on its own first frame, as at extraction
        return FastVMTGuide(model, loss, ref_latent=ctx.amf.latent().to(backbone.device, backbone.dtype),
                            noise=ctx.noise, ref_text=ctx.prompts[""],
                            ref_cond=reference_condition(model, ctx.amf, cfg.seed),
                            steps_active=ctx.steps_active, lr=cfg.lr, guidance_range=cfg.guidance_range,
                            opt_steps=cfg.opt_steps, text_pos=ctx.text_pos, injection=ctx.injection,
                            grad_reuse=cfg.grad_reuse, on_loss=ctx.on_loss)


FASTVMT = FastVMT()
