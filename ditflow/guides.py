"""The guides: at each guidance step, Adam on a variable against a loss, with the lr interpolated across
the guidance range. `LatentGuide` optimises the noisy latent, `EmbGuide` the positional embeddings (what the
backbone's `emb_variable` says: RoPE tables or their angles, a sincos embedding) and keeps what it produced
per timestep, which
`ReplayGuide` feeds back for zero-shot injection. A guide returns (latent, positions) for the step's
denoising prediction; it never changes the scheduler state.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from typing import Callable, Iterator

import torch

from .model import BlockTaps, Model
from .processors import QKRecorder


def lr_at(lr: tuple[float, float], guidance_range: tuple[int, int], k: int) -> float:
    """The lr of the k-th guidance step: np.linspace(start, end, HI - LO + 1)[k] (to the bit), clamped at the end,
    computed without the array (a huge range would allocate it)."""
    start, end = lr
    n = guidance_range[0] - guidance_range[1]
    if n <= 0 or k <= 0:
        return float(start)
    if k >= n:
        return float(end)
    return float(k * ((end - start) / n) + start)


@contextmanager
def timed_step(seconds: list[float], x: torch.Tensor) -> Iterator[None]:
    """The wall time of one guided step appended to `seconds`: on CUDA its kernels, not just their launches."""
    start = time.perf_counter()
    yield
    if x.is_cuda:
        torch.cuda.synchronize(x.device)
    seconds.append(time.perf_counter() - start)


def record_step(guide, i: int, t, s: int, lr: float, value, fresh: bool) -> None:
    """One Adam step's record in `guide.losses` (what the gen artifact and `viz loss` keep), also passed to the
    guide's `on_loss` (the progress note)."""
    record = {"step": i, "timestep": int(t), "opt_step": s, "lr": lr, "loss": float(value.detach()), "fresh": fresh}
    guide.losses.append(record)
    if guide.on_loss is not None:
        guide.on_loss(record)


class Guide:
    """The optimisation shared by both modes; a subclass says what the variable is and how it enters the model."""

    stop_early = True  # end each forward after the last guidance block (benchmarks/bench_scale.py's paper-style run: off)

    def __init__(self, model: Model, loss, *, steps_active: range, lr: tuple[float, float],
                 guidance_range: tuple[int, int], opt_steps: int, text_pos, injection=None,
                 on_loss: Callable | None = None, grad_reuse: int = 1, optimizer: Callable = torch.optim.Adam):
        self.model, self.loss_fn, self.steps_active, self.opt_steps = model, loss, steps_active, opt_steps
        self.grad_reuse, self.optimizer = grad_reuse, optimizer  # optimizer(params, lr=...): DiTFlow's Adam
        self.text, self.injection, self.on_loss = text_pos, injection, on_loss
        self.blocks = loss.blocks
        self.lr, self.guidance_range = lr, guidance_range
        self.losses: list[dict] = []
        self.seconds: list[float] = []  # wall time of each guidance step

    def active(self, i: int) -> bool:
        return i in self.steps_active

    # -- what a subclass provides -----------------------------------------------------------------------
    def variable(self, x: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def forward_inputs(self, x: torch.Tensor, var: torch.Tensor) -> tuple[torch.Tensor, object]:
        """(latent, positions or None) of one forward from the variable."""
        raise NotImplementedError

    def result(self, x: torch.Tensor, var: torch.Tensor, t) -> tuple[torch.Tensor, object]:
        raise NotImplementedError

    # -- the shared step -------------------------------------------------------------------------------
    def _recorders(self, i: int) -> dict[int, QKRecorder]:
        if not self.loss_fn.needs_qk:
            return {}
        if self.injection is not None:
            return self.injection.qk_recorders(i, self.blocks)
        return {b: QKRecorder() for b in self.blocks}

    def _processors(self, i: int, t, recorders):
        """Installed for the whole step: backward recomputes checkpointed blocks and must see the same ones."""
        if self.injection is not None:
            return self.injection.installed(i, t, recorders)
        return self.model.install(recorders)

    def loss(self, x, t, positions, recorders) -> torch.Tensor:
        grid = self.model.geo.grid
        with BlockTaps(self.model.backbone, self.blocks, grid, features=not recorders, stop=self.stop_early) as taps:
            self.model.forward(x, t, self.text, positions)
        total = 0.0
        for b in self.blocks:
            if recorders:
                total = total + self.loss_fn.block_loss(b, recorders[b].q, recorders[b].k)
            else:
                total = total + self.loss_fn.block_loss(b, taps.features[b])
        return total / len(self.blocks)

    def __call__(self, x, i, t):
        with timed_step(self.seconds, x):
            return self._optimise(x, i, t)

    def _optimise(self, x, i, t):
        lr = lr_at(self.lr, self.guidance_range, i - self.steps_active.start)
        recorders = self._recorders(i)
        with torch.enable_grad(), self._processors(i, t, recorders):
            var = self.variable(x).detach().clone().requires_grad_(True)
            opt = self.optimizer([var], lr=lr)
            for s in range(self.opt_steps):
                fresh = s % self.grad_reuse == 0  # between fresh gradients Adam steps with the last one
                if fresh:
                    opt.zero_grad(set_to_none=True)
                    inputs, positions = self.forward_inputs(x, var)
                    value = self.loss(inputs, t, positions, recorders)
                    value.backward()
                opt.step()
                record_step(self, i, t, s, lr, value, fresh)
        return self.result(x, var, t)


class LatentGuide(Guide):
    """Optimise the noisy latent itself (the paper's latent mode)."""

    def variable(self, x):
        return x.detach().float()

    def forward_inputs(self, x, var):
        return self.model.backbone.guided_latent(var), None

    def result(self, x, var, t):
        return var.detach().to(x.dtype), None


class EmbGuide(Guide):
    """Optimise the positional embeddings (the paper's emb mode), starting each step from the last step's
    result, as the paper's code does; after the guidance range the model's own embeddings come back."""

    def __init__(self, model: Model, loss, *, angles: bool = False, **kw):
        super().__init__(model, loss, **kw)
        self.angles = angles
        self.embeddings: dict[int, torch.Tensor] = {}  # timestep -> optimised embedding (what inject replays)
        self._emb: torch.Tensor | None = None

    def initial_embedding(self) -> torch.Tensor:
        """The variable: the backbone's (e.g. q/k RoPE tables, their angles with `angles`, a sincos embedding)."""
        return self.model.backbone.emb_variable(self.model.geo, self.angles)

    def embedding(self, var: torch.Tensor) -> torch.Tensor:
        """What the model takes (and `inject` replays) from the optimised variable."""
        return self.model.backbone.emb_value(var, self.angles)

    def variable(self, x):
        return self._emb if self._emb is not None else self.initial_embedding()

    def forward_inputs(self, x, var):
        return x, self.model.positions(self.embedding(var))

    def result(self, x, var, t):
        self._emb = var.detach()
        emb = self.embedding(self._emb)
        self.embeddings[int(t)] = emb.clone()
        return x, self.model.positions(emb)


class ReplayGuide:
    """Zero-shot injection: the embeddings an `EmbGuide` optimised, fed back at their timesteps."""

    def __init__(self, model: Model, embeddings: dict[int, torch.Tensor]):
        self.model, self.embeddings = model, embeddings

    def active(self, i: int) -> bool:
        return True

    def __call__(self, x, i, t):
        emb = self.embeddings.get(int(t))
        return x, (None if emb is None else self.model.positions(emb.to(x.device)))


def make_guide(model: Model, loss, mode: str, *, angles: bool = False, **kw) -> Guide:
    return EmbGuide(model, loss, angles=angles, **kw) if mode == "emb" else LatentGuide(model, loss, **kw)
