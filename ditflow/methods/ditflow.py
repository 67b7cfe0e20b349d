"""DiTFlow (CVPR 2025): Adam on the noisy latent (latent mode) or the positional embeddings (emb mode) against
the AMF loss of the guidance blocks (or MOFT's, SMM's), with KV injection; the model's preset holds its
defaults. Its guides are ditflow.guides'."""
from __future__ import annotations

from .base import BuildContext, Method


class DiTFlow(Method):
    name = "ditflow"
    title = "DiTFlow"
    summary = ("the noisy latent (--opt-mode latent) or the positional embeddings (emb) against the reference's "
               "attention motion flow (--loss flow; or MOFT's, SMM's), with KV injection")

    def build(self, ctx: BuildContext):
        from ..guides import make_guide
        from ..losses import LOSSES

        cfg, model = ctx.cfg, ctx.model
        loss = LOSSES[cfg.loss].from_artifact(ctx.amf, cfg, model.backbone.device)
        model.backbone.set_checkpointing(bool(ctx.runtime.gradient_checkpointing))
        return make_guide(model, loss, cfg.opt_mode, angles=cfg.emb_param == "angle", steps_active=ctx.steps_active,
                          lr=cfg.lr, guidance_range=cfg.guidance_range, opt_steps=cfg.opt_steps, text_pos=ctx.text_pos,
                          injection=ctx.injection, grad_reuse=cfg.grad_reuse, on_loss=ctx.on_loss)

    def replayable(self, cfg) -> bool:
        return cfg.opt_mode == "emb"


DITFLOW = DiTFlow()
