"""The denoising loop and the guides, in the shape of k-diffusion's samplers.

`sample()` is the loop; `Denoiser` is one CFG prediction (KV injection lives in the processors it runs
with); a guide (`Guide`) optimises the latent or the positional embeddings at the guidance steps and
keeps the embeddings it produced per timestep, which `ReplayGuide` feeds back for zero-shot injection.
"""
from __future__ import annotations

import math
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from typing import Callable, Iterator

import numpy as np
import torch

from . import amf as amf_lib
from . import losses
from .processors import Attention, KVInjector, KVRecorder, QKRecorder, QKRecorderInjector, installed


class _Stop(Exception):
    """Raised from a hook to end a forward pass once the last guidance block has run."""


# --------------------------------------------------------------------------------------------- model calls
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


# ----------------------------------------------------------------------------------------------- the loop
def scheduler_step(scheduler, v, x0_prev, t, t_prev, x, extra):
    """One step of either CogVideoX scheduler; returns (x_next, x0). DPM also needs the previous x0."""
    from diffusers import CogVideoXDPMScheduler

    if isinstance(scheduler, CogVideoXDPMScheduler):
        x_next, x0 = scheduler.step(v, x0_prev, t, t_prev, x, **extra, return_dict=False)
    else:
        out = scheduler.step(v, t, x, **extra, return_dict=True)
        x_next, x0 = out.prev_sample, out.pred_original_sample
    return x_next, x0


@torch.no_grad()
def sample(denoise, x, timesteps, scheduler, extra, *, guide=None, callback=None):
    x0 = None
    for i, t in enumerate(timesteps):
        positions = None
        if guide is not None and guide.active(i):
            x, positions = guide(x, i, t)  # grad only inside the guide; detached out
        v = denoise(x, i, t, positions)
        x_next, x0 = scheduler_step(scheduler, v, x0, t, timesteps[i - 1] if i > 0 else None, x, extra)
        x = x_next.to(x.dtype)
        if callback is not None:
            callback(i=i, t=t, x=x, x0=x0)
    return x


class Denoiser:
    """Classifier-free guided prediction, with KV injection at the steps where `injection` is active."""

    def __init__(self, model: Model, text_cfg, cfg: float, dynamic_cfg: bool, steps: int, injection=None):
        self.model, self.text, self.cfg, self.dynamic, self.steps = model, text_cfg, cfg, dynamic_cfg, steps
        self.injection = injection

    def scale(self, t) -> float:
        if not self.dynamic:
            return self.cfg
        # CogVideoX's dynamic CFG (the diffusers pipeline's use_dynamic_cfg), as the paper's 5B runs use
        return 1 + self.cfg * ((1 - math.cos(math.pi * ((self.steps - t.item()) / self.steps) ** 5.0)) / 2)

    def __call__(self, x, i, t, positions=None):
        cfg_on = self.cfg > 1.0
        inp = torch.cat([x, x]) if cfg_on else x
        text = self.text if cfg_on else self.text[-1:]
        with ExitStack() as stack:
            if self.injection is not None and self.injection.active(i):
                self.injection.record(i, t)
                stack.enter_context(self.injection.installed({}))
            elif positions is not None:
                stack.enter_context(installed(self.model.transformer, {}, default=Attention()))
            v = self.model.forward(inp, t, text, positions).float()
        if cfg_on:
            uncond, cond = v.chunk(2)
            v = uncond + self.scale(t) * (cond - uncond)
        return v


class KVInjection:
    """KV injection: at an active step, record the reference's k/v (noised to t with the run's own initial
    noise) at the injection blocks, then attend with them in every forward of that step."""

    def __init__(self, model: Model, blocks, ref_latent, noise, text_pos, scheduler, steps_active: set[int]):
        self.model, self.blocks, self.ref, self.noise = model, tuple(blocks), ref_latent, noise
        self.text, self.scheduler, self.steps = text_pos, scheduler, steps_active
        self.banks = {b: KVRecorder() for b in self.blocks}
        self._recorded_for: int | None = None

    def active(self, i: int) -> bool:
        return bool(self.blocks) and i in self.steps

    def record(self, i: int, t) -> None:
        if self._recorded_for == i:
            return
        noisy = self.scheduler.add_noise(self.ref, self.noise, t.reshape(1))
        noisy = self.scheduler.scale_model_input(noisy, t)
        with torch.no_grad(), installed(self.model.transformer, self.banks, default=Attention()):
            self.model.forward(noisy, t, self.text)
        self._recorded_for = i

    def installed(self, extra: dict):
        """Injectors at the injection blocks, plus `extra` processors (which wrap injection if they share a block)."""
        procs = {b: KVInjector(self.banks[b]) for b in self.blocks}
        procs.update(extra)
        return installed(self.model.transformer, procs, default=Attention())


# --------------------------------------------------------------------------------------------- the guides
@dataclass
class Reference:
    """What the losses compare against, from an AMF artifact."""

    amf: dict[int, torch.Tensor]  # block -> [F, F, P, 2]
    features: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [F, C, h, w]
    moft_channels: dict[int, torch.Tensor] = field(default_factory=dict)
    weight: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [F, F, P] AMF loss weight
    soft: dict[int, torch.Tensor] = field(default_factory=dict)  # block -> [F, F, P, 2]: the target instead of amf


def guidance_steps(steps: int, guidance_range: tuple[int, int]) -> range:
    """Step indices with guidance: the paper's range (50, 40) of 50 steps is steps 0..9."""
    hi, lo = guidance_range
    return range(max(steps - hi, 0), max(steps - lo, 0))


def normalized_gradient(grad: torch.Tensor) -> torch.Tensor:
    """grad scaled to unit RMS (any shape): an SGD step of lr then moves entries by lr on average, as Adam's
    first step does, but in proportion to their gradient."""
    return grad / grad.pow(2).mean().sqrt().clamp_min(1e-12)


def blurred_gradient(grad: torch.Tensor, sigma: float) -> torch.Tensor:
    """grad [..., H, W] blurred over H and W by a Gaussian of `sigma` pixels (reflect padding); sigma 0 returns
    it unchanged. A latent-mode step then holds no pattern finer than sigma: no patch grid, no speckle."""
    if sigma <= 0:
        return grad
    from torchvision.transforms.functional import gaussian_blur

    size = min(2 * math.ceil(2 * sigma) + 1, 2 * min(grad.shape[-2:]) - 1)  # reflect padding needs pad < side
    flat = grad.reshape(-1, 1, *grad.shape[-2:])
    return gaussian_blur(flat, [size, size], [sigma, sigma]).reshape(grad.shape)


def coarse_offset(latent: torch.Tensor, stride: int) -> torch.Tensor:
    """A zero offset for `latent` [B, F, C, H, W] on a grid `stride` times coarser in H and W:
    [B, F, C, ceil(H/stride), ceil(W/stride)]."""
    b, f, c, h, w = latent.shape
    return latent.new_zeros(b, f, c, -(-h // stride), -(-w // stride))


def upsampled(offset: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """offset [B, F, C, h, w] -> [B, F, C, *size], bilinearly: the smooth field the coarse entries span."""
    flat = offset.flatten(0, 1)
    out = torch.nn.functional.interpolate(flat, size=size, mode="bilinear", align_corners=False)
    return out.unflatten(0, offset.shape[:2])


class Guide:
    """Adam (or normalised gradient descent) on the latent (`latent` mode) or on the positional embeddings
    (`emb` mode) at each guidance step, against the AMF, MOFT or SMM loss, with the lr interpolated across the
    guidance range."""

    def __init__(self, model: Model, reference: Reference, *, mode: str, loss: str, blocks, steps_active: range,
                 lr: tuple[float, float], guidance_range: tuple[int, int], opt_steps: int, text_pos,
                 temperature: float, threshold: bool, injection: KVInjection | None = None,
                 on_loss: Callable | None = None, emb_param: str = "table", emb_after: str = "restore",
                 optimizer: str = "adam", grad_blur: float = 0.0, mutual: bool = False, latent_stride: int = 1):
        self.model, self.ref, self.mode, self.loss_name = model, reference, mode, loss
        self.angles = emb_param == "angle" and model.default_rope is not None
        self.carry = emb_after == "carry" and mode == "emb"
        self.blocks, self.steps_active, self.opt_steps = tuple(sorted(blocks)), steps_active, opt_steps
        self.text, self.temperature, self.threshold = text_pos, temperature, threshold
        self.injection, self.on_loss, self.optimizer = injection, on_loss, optimizer
        self.grad_blur = grad_blur if mode == "latent" else 0.0
        # latent mode on a coarser grid: Adam moves every variable by about the lr on its first step, so
        # optimising each latent pixel paints pixel-scale texture; an offset per stride x stride block, spread
        # bilinearly, moves the latent smoothly
        self.latent_stride = latent_stride if mode == "latent" else 1
        self.mutual = mutual
        hi, lo = guidance_range
        self.lrs = np.linspace(lr[0], lr[1], hi - lo + 1)
        self.embeddings: dict[int, torch.Tensor] = {}  # timestep -> optimised embedding (emb mode)
        self.losses: list[dict] = []
        self._emb: torch.Tensor | None = None  # carried across guidance steps, as the paper's code does

    def active(self, i: int) -> bool:
        if self.carry and self._emb is not None:
            return i >= self.steps_active.start
        return i in self.steps_active

    def initial_embedding(self) -> torch.Tensor:
        """The variable emb mode optimises: q and k RoPE tables [2, 2, N, D] (q/k, cos/sin), their rotation
        angles [2, N, D] with `emb_param="angle"`, or the sincos embedding [N, dim]."""
        if self.model.default_rope is not None:
            cos, sin = self.model.default_rope
            if self.angles:
                angle = torch.atan2(sin.float(), cos.float())
                return torch.stack([angle, angle])
            pair = torch.stack([cos, sin]).float()
            return torch.stack([pair, pair])  # separate q and k tables, as the paper
        return self.model.base_sincos.float().clone()

    def embedding(self, var: torch.Tensor) -> torch.Tensor:
        """What the model takes (and `inject` replays) from the optimised variable."""
        if self.angles:
            return torch.stack([var.cos(), var.sin()], dim=1)  # [q/k, cos/sin, N, D]
        return var

    def _latent(self, base: torch.Tensor, var: torch.Tensor) -> torch.Tensor:
        """The latent latent mode scores: the variable itself, or the base plus the upsampled coarse offset."""
        return var if self.latent_stride == 1 else base + upsampled(var, base.shape[-2:])

    def _processors(self, i):
        """Recorders at the guidance blocks (wrapping injection where a block does both), installed for the
        whole step: backward recomputes checkpointed blocks and must see the same processors."""
        want_qk = self.loss_name == "flow"
        active = self.injection is not None and self.injection.active(i)
        banks = self.injection.banks if active else {}
        recorders = {b: (QKRecorderInjector(banks[b]) if b in banks else QKRecorder()) for b in self.blocks} if want_qk else {}
        ctx = self.injection.installed(recorders) if active else installed(self.model.transformer, recorders, default=Attention())
        return ctx, recorders

    def loss(self, x, t, positions, recorders) -> torch.Tensor:
        grid = self.model.geo.grid
        with BlockTaps(self.model.transformer, self.blocks, grid, features=not recorders, stop=True) as taps:
            self.model.forward(x, t, self.text, positions)
        total = 0.0
        for b in self.blocks:
            if recorders:
                q, k = recorders[b].q.float(), recorders[b].k.float()
                flow = amf_lib.attention_motion_flow(q, k, grid, self.temperature, mode="soft")
                weight = self.ref.weight.get(b)
                if self.mutual and weight is not None:  # flat attention in the generated video counts little too
                    weight = weight * amf_lib.attention_confidence(q.detach(), k.detach(), grid, self.temperature)
                # the soft target, where given, is scored on the entries the argmax AMF marks moving
                target, moving = self.ref.soft.get(b, self.ref.amf[b]), self.ref.amf[b].norm(dim=-1) > 0
                total = total + losses.amf_loss(flow, target, self.threshold, weight, moving)
            elif self.loss_name == "moft":
                total = total + losses.moft_loss(taps.features[b].float(), self.ref.features[b], self.ref.moft_channels[b])
            else:
                total = total + losses.smm_loss(taps.features[b].float(), self.ref.features[b])
        return total / len(self.blocks)

    def __call__(self, x, i, t):
        if self.injection is not None and self.injection.active(i):
            self.injection.record(i, t)
        if i not in self.steps_active:  # past the range with emb_after="carry": keep the last embedding
            emb = self.embedding(self._emb)
            self.embeddings[int(t)] = emb.clone()
            return x, self.model.positions(emb)
        lr = float(self.lrs[min(i - self.steps_active.start, len(self.lrs) - 1)])
        ctx, recorders = self._processors(i)
        with torch.enable_grad(), ctx:
            base = x.detach().float()
            if self.mode == "latent":
                var = (base.clone() if self.latent_stride == 1 else coarse_offset(base, self.latent_stride)).requires_grad_(True)
            else:
                var = (self._emb if self._emb is not None else self.initial_embedding()).detach().clone().requires_grad_(True)
            # Adam moves every entry by ~lr on its first step whatever its gradient, so a latent drifts
            # everywhere; normalised steps move entries in proportion to their gradient
            opt = torch.optim.Adam([var], lr=lr) if self.optimizer == "adam" else torch.optim.SGD([var], lr=lr)
            for s in range(self.opt_steps):
                opt.zero_grad(set_to_none=True)
                if self.mode == "latent":
                    value = self.loss(self._latent(base, var), t, None, recorders)
                else:
                    value = self.loss(x, t, self.model.positions(self.embedding(var)), recorders)
                value.backward()
                var.grad = blurred_gradient(var.grad, self.grad_blur)
                if self.optimizer == "normalized":
                    var.grad = normalized_gradient(var.grad)
                opt.step()
                record = {"step": i, "timestep": int(t), "opt_step": s, "lr": lr, "loss": float(value.detach())}
                self.losses.append(record)
                if self.on_loss is not None:
                    self.on_loss(record)
        if self.mode == "latent":
            return self._latent(base, var).detach().to(x.dtype), None
        self._emb = var.detach()
        emb = self.embedding(self._emb)
        self.embeddings[int(t)] = emb.clone()
        return x, self.model.positions(emb)


class ReplayGuide:
    """Zero-shot injection: the embeddings a `Guide` optimised, fed back at their timesteps."""

    def __init__(self, model: Model, embeddings: dict[int, torch.Tensor], injection: KVInjection | None = None):
        self.model, self.embeddings, self.injection = model, embeddings, injection

    def active(self, i: int) -> bool:
        return True

    def __call__(self, x, i, t):
        if self.injection is not None and self.injection.active(i):
            self.injection.record(i, t)
        emb = self.embeddings.get(int(t))
        if emb is None:
            return x, None
        return x, self.model.positions(emb.to(x.device))
