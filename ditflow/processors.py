"""Taps: what a backbone's attention processor calls in a block's self-attention (family-free).

Each adapter installs its own processor at every block (`Backbone.install`); the processor calls
`tap.on_qkv(q, k, v, video)` with [B, H, S, D] q/k/v after the model's norms and RoPE and `video`, the slice of
S holding the video tokens, and attends with the k/v it returns. The *mode* is which tap a block gets:
- `Tap`: nothing (the model's own computation, RoPE out of place so autograd runs through trainable tables).
- `QKRecorder`: keeps the video tokens' q/k (for AMF).
- `KVRecorder`: keeps the video tokens' k/v (a reference pass for KV injection).
- `KVInjector`: replaces the video tokens' k/v with those of a `KVRecorder`.
"""
from __future__ import annotations

import torch


class Tap:
    """Leaves q/k/v as they are."""

    def on_qkv(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, video: slice) -> tuple[torch.Tensor, torch.Tensor]:
        """q, k, v: [B, H, S, D]; video: the video tokens' slice of S. Returns the k and v attention will use."""
        return k, v


class QKRecorder(Tap):
    """Keeps q, k of the video tokens of the last batch element: [H, N, D] each (graph kept)."""

    def __init__(self):
        self.q: torch.Tensor | None = None
        self.k: torch.Tensor | None = None

    def on_qkv(self, q, k, v, video):
        self.q, self.k = q[-1, :, video], k[-1, :, video]
        return k, v


class KVRecorder(Tap):
    """Keeps detached k, v of the video tokens of the last batch element: [H, N, D] each."""

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def on_qkv(self, q, k, v, video):
        self.k, self.v = k[-1, :, video].detach(), v[-1, :, video].detach()
        return k, v


class KVInjector(Tap):
    """Attends with a recorded reference's video k/v in place of its own (other tokens' k/v kept), every batch row."""

    def __init__(self, bank: KVRecorder):
        self.bank = bank

    def on_qkv(self, q, k, v, video):
        if self.bank.k is None:
            raise RuntimeError("KV injection before the reference pass recorded any keys")
        b = k.shape[0]
        ref_k = self.bank.k.to(k.dtype).expand(b, -1, -1, -1)
        ref_v = self.bank.v.to(v.dtype).expand(b, -1, -1, -1)

        def spliced(x, ref):
            return torch.cat([x[:, :, :video.start], ref, x[:, :, video.stop:]], dim=2)

        return spliced(k, ref_k), spliced(v, ref_v)


class QKRecorderInjector(QKRecorder):
    """Records q/k (guidance) in a block that also injects reference k/v (injection)."""

    def __init__(self, bank: KVRecorder):
        super().__init__()
        self.injector = KVInjector(bank)

    def on_qkv(self, q, k, v, video):
        k, v = self.injector.on_qkv(q, k, v, video)
        return super().on_qkv(q, k, v, video)
