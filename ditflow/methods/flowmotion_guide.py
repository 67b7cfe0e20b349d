"""FlowMotion's math and guide (the method's settings are in flowmotion.py, which loads this module only to run).

Read from HKUST-LongGroup/FlowMotion run.py (written anew here): at each guided step the reference latent is
noised to t and denoised once with the empty prompt, giving x̂₀ˢ (or x̂₀ˢ is the clean reference latent); then
Adam on the noisy latent x_t, where each iteration computes the target's CFG prediction at the current latent
WITHOUT gradient, optionally regulates it, forms x̂₀ᵗ = a·x_t − b·prediction and minimises
α·MSE(x̂₀ˢ, x̂₀ᵗ) + β·MSE(D(x̂₀ˢ), D(x̂₀ᵗ)). The gradient reaches x_t only through x̂₀'s a·x_t term: the
transformer never runs with gradients enabled, so a guided step costs forward passes only.
"""
from __future__ import annotations

import hashlib

import torch
import torch.nn.functional as F

from ..guides import lr_at, record_step, timed_step
from ..sampling import Denoiser
from .common import channel_axis, flow_coordinates, noise_coefficients, prediction_for, reference_condition, x0_from


# -------------------------------------------------------------------------------------------- the math
def motion_differences(z: torch.Tensor, axis: int) -> torch.Tensor:
    """The peer's D: |z_{f+1} − z_f| for the F−1 consecutive frame pairs along `axis`, then for each frame c,
    |z_c − z_o| for every other frame o in order, stacked to [F+1, F−1, ...z without `axis`] (a consecutive pair
    appears three times, any other pair twice). Fewer than 2 frames: an empty [0, 0, ...] stack."""
    z = z.movedim(axis, 0)  # [F, ...]
    f = z.shape[0]
    if f < 2:
        return z.new_zeros((0, 0, *z.shape[1:]))
    rows = [(z[1:] - z[:-1]).abs()]
    for c in range(f):
        rows.append((z[c] - torch.cat([z[:c], z[c + 1:]])).abs())
    return torch.stack(rows)


def difference_mse(a: torch.Tensor, b: torch.Tensor, axis: int) -> torch.Tensor:
    """MSE(D(a), D(b)) without materialising D's (F+1)(F−1) copies of the latent: per frame offset k, the squared
    differences of |a_{f+k} − a_f| and |b_{f+k} − b_f|, weighted 3 for k = 1 and 2 otherwise (how often D holds a
    pair), over D's element count. a, b: the same shape; 0 with fewer than 2 frames."""
    f = a.shape[axis]
    if f < 2:
        return a.new_zeros(())
    total = a.new_zeros(())
    for k in range(1, f):
        da = (a.narrow(axis, k, f - k) - a.narrow(axis, 0, f - k)).abs()
        db = (b.narrow(axis, k, f - k) - b.narrow(axis, 0, f - k)).abs()
        total = total + (3.0 if k == 1 else 2.0) * (da - db).square().sum()
    return total / ((f + 1) * (f - 1) * (a.numel() // f))


def flowmotion_loss(source: torch.Tensor, target: torch.Tensor, axis: int, alpha: float, beta: float) -> torch.Tensor:
    """α·MSE(x̂₀ˢ, x̂₀ᵗ) + β·MSE(D(x̂₀ˢ), D(x̂₀ᵗ)) (means over every element, as the peer's F.mse_loss); frames
    along `axis`."""
    return alpha * F.mse_loss(target, source) + beta * difference_mse(source, target, axis)


def regulate(v: torch.Tensor, mean: torch.Tensor, gamma: float, dim: int, eps: float = 1e-8) -> torch.Tensor:
    """The peer's velocity regulation: v's projection on the running mean velocity, plus γ times the rest,
    position by position over the channel axis `dim`: proj = <v, m>/(|m|² + eps)·m, result proj + γ·(v − proj)."""
    proj = (v * mean).sum(dim, keepdim=True) / ((mean * mean).sum(dim, keepdim=True) + eps) * mean
    return proj + gamma * (v - proj)


def source_seed(seed: int) -> int:
    """The seed of the reference's noise: derived from the run's --seed, but another stream than the target's
    initial noise (the peer draws both from one global RNG, so they differ)."""
    return int.from_bytes(hashlib.sha256(f"flowmotion source noise {seed}".encode()).digest()[:8], "big") >> 1


# -------------------------------------------------------------------------------------------- the guide
class FlowMotionGuide:
    """What the sampler calls at the guided steps (see stages._generate): Adam on the noisy latent against FlowMotion's
    loss; `losses` and `seconds` as ditflow.guides.Guide keeps them; nothing to replay."""

    def __init__(self, ctx):
        cfg, own = ctx.cfg, ctx.cfg.method_settings
        self.model, self.steps_active, self.on_loss = ctx.model, ctx.steps_active, ctx.on_loss
        self.lr, self.guidance_range, self.opt_steps = cfg.lr, cfg.guidance_range, cfg.opt_steps
        self.grad_reuse = cfg.grad_reuse or 1
        self.alpha, self.beta, self.gamma = float(own["alpha"]), float(own["beta"]), float(own["gamma"])
        self.clean = own["source_latent"] == "clean"
        backbone = self.model.backbone
        # the run's own CFG prediction (KV injection too, where a user turns it on), as the sampler's step makes it
        self.denoise = Denoiser(self.model, ctx.text, cfg.cfg, cfg.steps, ctx.injection)
        self.reference = ctx.amf.latent().to(backbone.device, backbone.dtype).float()  # as KV injection feeds it
        self.empty = ctx.prompts.get("")
        self.ref_cond = None if self.clean else reference_condition(self.model, ctx.amf, cfg.seed)
        self.generator = torch.Generator().manual_seed(source_seed(cfg.seed))
        self.initial = ctx.noise.float()  # x_T, where the running mean velocity starts
        self.first = backbone.scheduler.timesteps[0]  # its timestep (set before the guide is built)
        self.frames, self.channels = backbone.frame_axis, channel_axis(backbone)
        self.losses: list[dict] = []
        self.seconds: list[float] = []

    def active(self, i: int) -> bool:
        return i in self.steps_active

    def __call__(self, x, i, t):
        with timed_step(self.seconds, x):
            return self._optimise(x, i, t), None

    # -- without gradient ------------------------------------------------------------------------------
    @torch.no_grad()
    def source(self, t) -> torch.Tensor:
        """x̂₀ˢ: the clean reference latent, or the reference noised to t with fresh noise and denoised once with
        the empty prompt. The peer's source CFG combines the empty prompt with itself (its negative is "" too), an
        identity whatever the scale: one forward gives the same prediction."""
        if self.clean:
            return self.reference
        backbone = self.model.backbone
        noise = torch.randn(self.reference.shape, generator=self.generator).to(self.reference.device)
        noisy = backbone.add_noise(self.reference, noise, t).float()
        v = self.model.forward(noisy, t, self.empty, cond=self.ref_cond).float()
        return x0_from(backbone, noisy, v, t)

    @torch.no_grad()
    def mean_velocity(self, x, t) -> torch.Tensor | None:
        """The running mean velocity from x_T to x_t, (y_t − y_T)/(s_t − s_T) in rectified-flow coordinates
        (`flow_coordinates`: on flow matching the peer's (x_t − x_T)/(t − t_T); on DDIM the mean velocity of the
        Euler path it takes in those coordinates); None at the first timestep (the peer's step 0) or with γ = 1."""
        if self.gamma == 1.0 or float(t) == float(self.first):
            return None
        (a_t, s_t), (a_0, s_0) = (noise_coefficients(self.model.backbone, u, x) for u in (t, self.first))
        y_t, y_0 = x.float() / (a_t + s_t), self.initial / (a_0 + s_0)
        return (y_t - y_0) / (s_t / (a_t + s_t) - s_0 / (a_0 + s_0))

    @torch.no_grad()
    def prediction(self, latent, i, t, mean) -> torch.Tensor:
        """The target's CFG prediction at `latent`, regulated: its rectified-flow velocity's component off `mean`
        scaled by γ, turned back into the family's prediction (the same x̂₀ through `x0_from`)."""
        v = self.denoise(latent, i, t)
        if mean is None:
            return v
        backbone = self.model.backbone
        alpha, sigma = noise_coefficients(backbone, t, latent)
        y, s, u = flow_coordinates(latent, x0_from(backbone, latent, v, t), alpha, sigma)
        return prediction_for(backbone, latent, y - s * regulate(u, mean, self.gamma, self.channels), t)

    # -- the Adam loop -------------------------------------------------------------------------------------
    def _optimise(self, x, i, t):
        backbone = self.model.backbone
        lr = lr_at(self.lr, self.guidance_range, i - self.steps_active.start)
        source, mean = self.source(t), self.mean_velocity(x, t)
        var = x.detach().float().clone().requires_grad_(True)
        opt = torch.optim.Adam([var], lr=lr)  # a fresh one each guided step, as the peer's
        for s in range(self.opt_steps):
            fresh = s % self.grad_reuse == 0  # between fresh gradients Adam steps with the last one
            if fresh:
                opt.zero_grad(set_to_none=True)
                v = self.prediction(var.detach(), i, t, mean)  # a constant: no gradient through the transformer
                with torch.enable_grad():
                    x0 = x0_from(backbone, backbone.guided_latent(var), v, t)  # image-to-video: frame 0 held
                    value = flowmotion_loss(source, x0, self.frames, self.alpha, self.beta)
                    value.backward()
            opt.step()
            record_step(self, i, t, s, lr, value, fresh)
        return var.detach().to(x.dtype)
