"""KV injection: the reference's video keys and values, noised to the current timestep, attended to in
place of the generated video's own at the injection blocks. One object records and installs them."""
from __future__ import annotations

from typing import Mapping

import torch

from .processors import KVInjector, KVRecorder, QKRecorder, QKRecorderInjector, Tap


class KVInjection:
    """At an active step, the reference latent noised to t with the run's own initial noise is passed through
    the model once (recording k/v at the injection blocks); every forward of that step then attends with them."""

    def __init__(self, model, blocks, ref_latent, noise, text_pos, steps_active: set[int], ref_cond=None):
        self.model, self.blocks, self.ref, self.noise = model, tuple(blocks), ref_latent, noise
        self.ref_cond = ref_cond  # image-to-video: the reference conditioned on its own first frame
        self.text, self.steps = text_pos, steps_active
        self.banks = {b: KVRecorder() for b in self.blocks}
        self._recorded_for: int | None = None

    def active(self, i: int) -> bool:
        return bool(self.blocks) and i in self.steps

    def _record(self, i: int, t) -> None:
        if self._recorded_for == i:
            return
        noisy = self.model.backbone.add_noise(self.ref, self.noise, t)
        with torch.no_grad(), self.model.install(self.banks):
            self.model.forward(noisy, t, self.text, cond=self.ref_cond)
        self._recorded_for = i

    def qk_recorders(self, i: int, blocks) -> dict[int, QKRecorder]:
        """q/k recorders for the guidance `blocks` at step i, also injecting where a block does both."""
        banks = self.banks if self.active(i) else {}
        return {b: (QKRecorderInjector(banks[b]) if b in banks else QKRecorder()) for b in blocks}

    def installed(self, i: int, t, extra: Mapping[int, Tap] = {}):
        """The processors of step i: injectors at the injection blocks when the step is active (recording the
        reference first, once per step), plus `extra` (which wrap injection where they share a block)."""
        procs: dict[int, Tap] = {}
        if self.active(i):
            self._record(i, t)
            procs = {b: KVInjector(self.banks[b]) for b in self.blocks}
        procs.update(extra)
        return self.model.install(procs)
