"""RoPECraft's math and guide: RoPE tables at positions warped by the reference's flow (`warped_tables`), the
phase loss (`phase_loss`), and the guide that optimises an additive delta on those tables (`RoPECraftGuide`).

Read from their generate.py (`tune_p`): at guided step k the tables are warped + Σ_{j<=k} δ_j, one δ per guided
step, all under ONE AdamW (lr 1e-3, weight decay 0.01, default betas) whose state persists across steps, so
every δ_j (j <= k) receives the same gradient and moves; the loss is the conditional prediction (no CFG) against
the prediction that takes x_t to the reference latent; the step is then sampled with CFG and the tables of the
last loss evaluation (theirs: the deltas before the last AdamW update); the latent itself is never optimised,
and the steps after the guided ones use the model's own tables.

Tables are the model's own (cos, sin) tables (the adapter's `emb_variable(geo, angles=False)`: CogVideoX's
[q/k, cos/sin, N, D], Wan's [cos/sin, 1, S, 1, D]), so the delta is additive on the table entries as their
complex delta is on e^{iθ} (the magnitude may leave 1); tokens are in (frame, row, column) row-major order.
"""
from __future__ import annotations

from typing import Callable

import torch

from ..guides import lr_at, record_step, timed_step
from .common import prediction_for

WEIGHT_DECAY = 0.01  # torch.optim.AdamW's default, which RoPECraft keeps
BETAS = (0.9, 0.999)
PHASE_EPS = 1e-8


# ---------------------------------------------------------------------------------------- pure math
def complex_view(tables: torch.Tensor) -> tuple[torch.Tensor, int]:
    """(cos, sin) tables -> (complex128 cos + i·sin without that axis, the axis). The (cos, sin) axis is the
    size-2 axis whose halves satisfy cos² + sin² = 1 (CogVideoX's axis 1 beside q/k; Wan's axis 0)."""
    t = tables.detach().double()
    for axis, n in enumerate(t.shape):
        if n == 2:
            c, s = t.select(axis, 0), t.select(axis, 1)
            if torch.allclose(c * c + s * s, torch.ones_like(c), atol=1e-4):
                return torch.complex(c, s), axis
    raise ValueError(f"tables of shape {list(tables.shape)} have no (cos, sin) axis: not RoPE tables")


def token_axis(cos_sin_axis: int) -> int:
    """The tokens' axis in the tables: axis 1 of their complex view, past the (cos, sin) axis when it is 0."""
    return 2 if cos_sin_axis <= 1 else 1


def _step(z: torch.Tensor, index: tuple) -> torch.Tensor:
    """The wrapped angle from token (0, 0, 0) to the token at `index` of z [A, F, h, w, B...]: [A, 1, B...]."""
    first = z[:, :1, :1, :1]
    return torch.angle(z[(slice(None), *index)] * first.conj()).flatten(1, 3)


def warped_tables(tables: torch.Tensor, grid: tuple[int, int, int], displacement: torch.Tensor) -> torch.Tensor:
    """The tables at token positions (row + y, column + x), the time axis unchanged.

    tables: the model's own (cos, sin) RoPE tables over N = F·h·w tokens (see the module doc);
    displacement: [F, 2, h, w] (x, y) in tokens. Each entry e^{iθ} becomes e^{i(θ + y·ρ + x·κ)}, ρ and κ its
    angle steps between neighbouring rows and columns read off the tables themselves (wrapped to (-π, π]; 0
    for an axis of one token): a shift of one token gives the neighbour's entry, zero gives the tables
    exactly, a fractional one RoPE at the fractional position. Same shape and dtype as `tables`."""
    z, axis = complex_view(tables)
    f, h, w = grid
    n = f * h * w
    if z.dim() < 2 or z.shape[1] != n:
        raise ValueError(f"tables of shape {list(tables.shape)} do not hold {n} tokens of grid {grid} on their axis 1")
    zg = z.unflatten(1, (f, h, w))
    zero = torch.zeros_like(zg[:, :1, :1, :1].real.flatten(1, 3))
    row = _step(zg, (slice(0, 1), slice(1, 2), slice(0, 1))) if h > 1 else zero
    col = _step(zg, (slice(0, 1), slice(0, 1), slice(1, 2))) if w > 1 else zero
    shape = (1, n) + (1,) * (z.dim() - 2)
    dx, dy = (displacement[:, c].reshape(shape).to(z.device, torch.float64) for c in (0, 1))
    phase = dy * row + dx * col
    turned = z * torch.complex(phase.cos(), phase.sin())  # exactly 1 where the phase is 0
    return torch.stack([turned.real, turned.imag], dim=axis).to(tables.dtype)


def phase_loss(pred: torch.Tensor, target: torch.Tensor, dims: tuple[int, ...] = (-3, -2, -1)) -> torch.Tensor:
    """L1 between the unit-magnitude 3D spectra of pred and target (rfftn over `dims`: frames, rows, columns),
    on their real and imaginary parts, each averaged: 0 for a prediction against itself (or a positive
    multiple of it); a shift turns every coefficient's phase, and the loss grows with it."""
    fp = torch.fft.rfftn(pred.float(), dim=dims, norm="ortho")
    ft = torch.fft.rfftn(target.float(), dim=dims, norm="ortho")
    zp, zt = fp / (fp.abs() + PHASE_EPS), ft / (ft.abs() + PHASE_EPS)
    return (zp.real - zt.real).abs().mean() + (zp.imag - zt.imag).abs().mean()


def ropecraft_loss(pred: torch.Tensor, target: torch.Tensor, mse_weight: float, dims: tuple[int, ...]) -> torch.Tensor:
    """phase_loss + mse_weight · MSE of the raw predictions."""
    return phase_loss(pred, target, dims) + mse_weight * (pred.float() - target.float()).pow(2).mean()


# -------------------------------------------------------------------------------------------- the guide
class RoPECraftGuide:
    """What the sampler calls at the guided steps (see the module doc): `__call__(x, i, t)` returns x untouched
    and the step's tables as positions; `embeddings` keeps them per timestep for `inject`.

    tables: the warped (cos, sin) tables in the model's layout; z_ref: the reference latent [1, ...] as the
    transformer takes it; text: [2, L, D] (negative, positive), the loss reads the positive only."""

    def __init__(self, model, tables: torch.Tensor, z_ref: torch.Tensor, *, text, steps_active: range,
                 lr: tuple[float, float], guidance_range: tuple[int, int], opt_steps: int, mse_weight: float,
                 grad_reuse: int = 1, injection=None, on_loss: Callable | None = None):
        self.model, self.tables, self.z_ref, self.text = model, tables.detach(), z_ref, text
        self.steps_active, self.lr, self.guidance_range = steps_active, lr, guidance_range
        self.opt_steps, self.mse_weight, self.grad_reuse = opt_steps, mse_weight, grad_reuse
        self.injection, self.on_loss = injection, on_loss
        self.losses: list[dict] = []
        self.seconds: list[float] = []
        self.embeddings: dict[int, torch.Tensor] = {}  # timestep -> the tables that step sampled with
        self.deltas: list[torch.Tensor] = []
        self.optimizer: torch.optim.Optimizer | None = None
        backbone = model.backbone
        ndim = z_ref.dim()
        self.dims = (backbone.frame_axis, ndim - 2, ndim - 1)
        # image-to-video: the picture's latent frame is out of the loss, its tokens' tables out of the gradient
        self.frozen = backbone.needs_image
        self.mask = self._later_tokens() if self.frozen else None

    def _later_tokens(self) -> torch.Tensor:
        """1 on the tokens after token frame 0, 0 on frame 0's, broadcastable to the tables."""
        _, h, w = self.model.geo.grid
        axis = token_axis(complex_view(self.tables)[1])
        shape = [1] * self.tables.dim()
        shape[axis] = self.tables.shape[axis]
        mask = torch.ones(shape, dtype=self.tables.dtype, device=self.tables.device)
        mask.narrow(axis, 0, h * w).zero_()
        return mask

    def active(self, i: int) -> bool:
        return i in self.steps_active

    def _start(self) -> None:
        """One delta per guided step and one AdamW over them all (their state persists across steps)."""
        self.deltas = [torch.zeros_like(self.tables, requires_grad=True) for _ in self.steps_active]
        self.optimizer = torch.optim.AdamW(self.deltas, lr=float(self.lr[0]), betas=BETAS, eps=1e-8,
                                           weight_decay=WEIGHT_DECAY)

    def current(self, k: int) -> torch.Tensor:
        """The tables of guided step k: warped + Σ_{j<=k} δ_j (frame 0's tokens without delta on I2V)."""
        delta = sum(self.deltas[1 : k + 1], self.deltas[0])
        return self.tables + (delta * self.mask if self.mask is not None else delta)

    def _loss_inputs(self, pred: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.frozen:
            return pred, target
        axis = self.model.backbone.frame_axis
        n = pred.shape[axis] - 1
        return pred.narrow(axis, 1, n), target.narrow(axis, 1, n)

    def _processors(self, i: int, t):
        """Our processors (out-of-place RoPE, gradients into the tables), with KV injection where it is on."""
        return self.injection.installed(i, t) if self.injection is not None else self.model.install({})

    def __call__(self, x, i, t):
        with timed_step(self.seconds, x):
            return self._step(x, i, t)

    def _step(self, x, i, t):
        if self.optimizer is None:
            self._start()
        k = i - self.steps_active.start
        lr = lr_at(self.lr, self.guidance_range, k)
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        backbone = self.model.backbone
        target = prediction_for(backbone, x.float(), self.z_ref, t)
        used = self.tables
        with torch.enable_grad(), self._processors(i, t):
            for s in range(self.opt_steps):
                fresh = s % self.grad_reuse == 0  # between fresh gradients AdamW steps with the last one
                if fresh:
                    self.optimizer.zero_grad(set_to_none=True)
                    tables = self.current(k)
                    used = tables.detach()
                    pred = self.model.predict(x, t, self.text, None, self.model.positions(tables))
                    value = ropecraft_loss(*self._loss_inputs(pred, target), self.mse_weight, self.dims)
                    value.backward()
                self.optimizer.step()
                record_step(self, i, t, s, lr, value, fresh)
        emb = self.model.backbone.emb_value(used.clone(), False)
        self.embeddings[int(t)] = emb
        return x, self.model.positions(emb)

