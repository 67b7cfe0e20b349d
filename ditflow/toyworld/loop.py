"""The one resumable training loop every stage runs: from the step its checkpoint reached to its step count
(which a wall-clock deadline may cut), one progress bar, a checkpoint every few steps and at the end."""
from __future__ import annotations

import time
from typing import Callable

import torch

from ..progress import Progress


class StepPlan:
    """A stage's step count, cut to a wall-clock deadline: planned from the speed of the first `probe` steps,
    planned again after 10x as many (other work on the machine may have started or stopped meanwhile; a
    schedule that follows `total` still ends near zero), and stopped at the deadline whatever the plan said."""

    def __init__(self, steps: int, deadline: float | None = None, probe: int = 30, clock=time.time):
        self.total, self.deadline, self.probe, self.clock = steps, deadline, probe, clock
        self._start = None

    def tick(self, step: int, first: int) -> bool:
        """Called after each step; True when the count changed at this one."""
        if self.deadline is None:
            return False
        now, done = self.clock(), step - first + 1
        if done == 1:
            self._start = now  # the first step (allocations, warm-up) is not timed
        elif done in (self.probe, 10 * self.probe):
            rate = (now - self._start) / (done - 1)
            self.total = max(step + 1, min(self.total, step + 1 + int((self.deadline - now) / rate)))
            return True
        elif now > self.deadline and self.total > step + 1:
            self.total = step + 1
            return True
        return False


def optimise(opt: torch.optim.Optimizer, loss: torch.Tensor, clip: list | None = None) -> None:
    """One optimiser step on `loss`, the gradient norm clipped to 1 over the parameters `clip` when given."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    if clip is not None:
        torch.nn.utils.clip_grad_norm_(clip, 1.0)
    opt.step()


def due(step: int, total: int, every: int) -> bool:
    """Whether to checkpoint after `step` (0-based)."""
    return (step + 1) % every == 0 or step + 1 == total


def run(progress: Progress, label: str, first: int, plan: StepPlan, every: int,
        step: Callable[[int], torch.Tensor], checkpoint: Callable[[int, torch.Tensor], None],
        show: Callable[[int], bool] = lambda s: True) -> int:
    """Steps `first` .. plan.total - 1: `step(s)` trains step s and returns its loss; `checkpoint(s, loss)` saves
    after it when `due`. The loss shows on the bar at the steps `show` picks (reading it waits for the GPU).
    Returns the step count, which a deadline may have cut."""
    with progress.task(label, total=plan.total) as bar:
        if first:
            bar.advance(advance=first)
        s = first
        while s < plan.total:
            loss = step(s)
            bar.advance(f"loss {loss.item():.4f}" if show(s) else None)
            if plan.tick(s, first):
                bar.set_total(plan.total)
                progress.log(f"{label}: planned to {plan.total} steps to end by the deadline")
            if due(s, plan.total, every):
                checkpoint(s, loss)
            s += 1
    return plan.total
