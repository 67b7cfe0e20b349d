"""What the flow-matching families (Wan, HunyuanVideo 1.5, LTX-2) share: x_t = (1 − σ)·x0 + σ·noise, v = noise − x0,
with σ the run's schedule's at timestep t (t / 1000 off the schedule, or before one is set)."""
from __future__ import annotations

from typing import TYPE_CHECKING

from .base import Backbone

if TYPE_CHECKING:
    import torch


def flow_noised(x0: "torch.Tensor", noise: "torch.Tensor", sigma: float) -> "torch.Tensor":
    """Rectified flow's x_sigma = (1 - sigma) x0 + sigma noise (what the flow schedulers' add_noise compute)."""
    return (1 - sigma) * x0 + sigma * noise


class FlowMatchBackbone(Backbone):
    """A backbone whose scheduler is a flow-matching one: its `timesteps` calls `schedule_set()` once it has set
    the run's schedule, so `add_noise` and `x0_coefficients` read σ from it."""

    _steps_set = False

    def start_run(self, family, keeps_latent: bool = False) -> None:
        super().start_run(family, keeps_latent)
        self._steps_set = False

    def schedule_set(self) -> None:
        """The scheduler holds this run's timesteps and sigmas now."""
        self._steps_set = True

    def _index(self, t) -> int | None:
        """Which step of the schedule t is (None: off the schedule, or none set)."""
        hits = (self.scheduler.timesteps.to(t.device) == t).nonzero() if self._steps_set else []
        return int(hits[0, 0]) if len(hits) else None

    def _sigma(self, t) -> float:
        i = self._index(t)
        return float(t) / self.scheduler.config.num_train_timesteps if i is None else float(self.scheduler.sigmas[i])

    def add_noise(self, x0, noise, t):
        return flow_noised(x0.float(), noise.float(), self._sigma(t)).to(noise.dtype)

    def x0_coefficients(self, t) -> tuple[float, float]:
        """Flow matching: x_t = (1−σ)·x0 + σ·noise and v = noise − x0, so x̂₀ = x_t − σ·v."""
        return 1.0, self._sigma(t)
