"""RoPECraft (NeurIPS 2025): the RoPE tables rebuilt at token positions displaced by the reference's optical
flow, then an additive delta on them optimised (AdamW, one delta per guided step, summed) so the model's
prediction matches the one that would move x_t to the reference latent: L1 on the phase of their 3D FFTs plus a
small MSE. It backpropagates through the transformer; `inject` replays its tables. The flow is
ropecraft_flow's, the tables, loss and guide ropecraft_guide's."""
from __future__ import annotations

from dataclasses import dataclass, field

from ..checks import rule
from .base import Method

FLOWS = ("dis", "raft")


@dataclass(frozen=True)
class RoPECraftSettings:
    flow: str = field(default="dis", metadata=rule(
        "RoPECraft: the reference's optical flow: OpenCV's DIS (dis, no weights) or torchvision's RAFT-small "
        "(raft, its weights in the torch cache; RoPECraft's own).", choices=FLOWS))
    flow_smoothing: float = field(default=11.0, metadata=rule(
        "RoPECraft: sigma, in tokens, of the Gaussian (21x21 taps, zero padding) smoothing the flow on the token "
        "grid (0: none); theirs is 11, at their 30x52 tokens.", ge=0, le=100))
    mse_weight: float = field(default=0.1, metadata=rule(
        "RoPECraft: weight of the MSE term beside the L1 of the FFT phases.", ge=0, le=10000))


class RoPECraft(Method):
    name = "ropecraft"
    title = "RoPECraft"
    summary = ("a delta on RoPE tables built at positions warped by the reference's optical flow, against the "
               "phase of the prediction that reaches the reference latent")
    settings = RoPECraftSettings
    opt_mode = "emb"
    published = {"guidance_range": (50, 40), "opt_steps": 5, "lr": (0.001, 0.001), "injection": False}

    def check(self, cfg, model) -> None:
        """A model without RoPE (CogVideoX 2B's sincos embedding) has no tables to warp; --flow raft needs
        RAFT-small's weights in the torch cache. From config files and the cache alone: before any weights load."""
        from ..errors import InputError, ModelUnavailable

        super().check(cfg, model)
        try:
            rope = model.adapter.config_uses_rope(model.transformer_config)
        except ModelUnavailable:
            rope = True  # no files yet: loading says what is missing, and `build` checks the loaded model
        if not rope:
            raise InputError(f"--method ropecraft warps RoPE tables, and {model.arg} has none (its positions are a "
                             f"3D sincos embedding); use a RoPE model (5b, 1.5-5b, a Wan model)")
        if (cfg.method_settings.get("flow") or RoPECraftSettings.flow) == "raft":
            from .ropecraft_flow import check_raft_weights

            check_raft_weights()

    def build(self, ctx):
        """The guide (ropecraft_guide) from the reference's flow (cached), the warped tables and the reference
        latent, with checkpointing through every block (the loss backpropagates through the whole model)."""
        import torch

        from ..errors import InputError
        from ..progress import Progress
        from .ropecraft_flow import reference_flow
        from .ropecraft_guide import RoPECraftGuide, warped_tables

        cfg, model = ctx.cfg, ctx.model
        backbone, geo = model.backbone, model.geo
        if not backbone.config_uses_rope(dict(backbone.transformer.config)):
            raise InputError(f"--method ropecraft warps RoPE tables; {backbone.model.arg} has none (a sincos embedding)")
        settings = RoPECraftSettings(**cfg.method_settings)
        displacement = reference_flow(ctx.amf, settings.flow, settings.flow_smoothing, geo, backbone.device,
                                      log=Progress(ctx.runtime.quiet).log, store=ctx.store)
        tables = warped_tables(backbone.emb_variable(geo, False), geo.grid, displacement)
        backbone.set_checkpointing(bool(ctx.runtime.gradient_checkpointing))
        z_ref = ctx.amf.latent().to(backbone.device, torch.float32)
        return RoPECraftGuide(model, tables, z_ref, text=ctx.text, steps_active=ctx.steps_active, lr=cfg.lr,
                              guidance_range=cfg.guidance_range, opt_steps=cfg.opt_steps,
                              mse_weight=settings.mse_weight, grad_reuse=cfg.grad_reuse, injection=ctx.injection,
                              on_loss=ctx.on_loss)

    def replayable(self, cfg) -> bool:
        return True


ROPECRAFT = RoPECraft()
