"""Attention processors for CogVideoX blocks, installed through diffusers' `set_attn_processor`.

Each processor is a small object holding its own state; the *mode* is which object is installed:
- `Attention`: the stock computation, but RoPE written out of place so autograd can run through
  trainable RoPE tables (the stock processor assigns into a slice of q/k).
- `QKRecorder`: also keeps the post-RoPE q/k of the video tokens (for AMF).
- `KVRecorder`: also keeps the video tokens' k/v (a reference pass for KV injection).
- `KVInjector`: replaces the video tokens' k/v with those of a `KVRecorder`.
"""
from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator, Mapping

import torch
import torch.nn.functional as F


def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1) of the last dim by the tables: x·cos + rot(x)·sin, out of place.

    x: [B, H, N, D]; cos, sin: [N, D] (CogVideoX's "real" tables, each value repeated for its pair).
    """
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    rotated = torch.stack([-x2, x1], dim=-1).flatten(-2)
    return (x.float() * cos + rotated.float() * sin).to(x.dtype)


def split_rope(rope):
    """RoPE as diffusers passes it, (cos, sin) shared by q and k, or as the emb guide optimises it: a
    [2 (q, k), 2 (cos, sin), N, D] tensor. Returns ((q_cos, q_sin), (k_cos, k_sin))."""
    if isinstance(rope, torch.Tensor):
        return (rope[0, 0], rope[0, 1]), (rope[1, 0], rope[1, 1])
    cos, sin = rope
    return (cos, sin), (cos, sin)


class Attention:
    """CogVideoX joint text-video attention (as diffusers' CogVideoXAttnProcessor2_0), with hooks."""

    def __call__(self, attn, hidden_states, encoder_hidden_states, attention_mask=None, image_rotary_emb=None, **_):
        text_len = encoder_hidden_states.size(1)
        hidden_states = torch.cat([encoder_hidden_states, hidden_states], dim=1)
        batch = hidden_states.shape[0]
        if attention_mask is not None:
            attention_mask = attn.prepare_attention_mask(attention_mask, hidden_states.shape[1], batch)
            attention_mask = attention_mask.view(batch, attn.heads, -1, attention_mask.shape[-1])

        def heads(x):  # [B, S, H*D] -> [B, H, S, D]
            return x.unflatten(-1, (attn.heads, -1)).transpose(1, 2)

        q, k, v = heads(attn.to_q(hidden_states)), heads(attn.to_k(hidden_states)), heads(attn.to_v(hidden_states))
        if attn.norm_q is not None:
            q = attn.norm_q(q)
        if attn.norm_k is not None:
            k = attn.norm_k(k)
        if image_rotary_emb is not None:
            (q_cos, q_sin), (k_cos, k_sin) = split_rope(image_rotary_emb)
            q = torch.cat([q[:, :, :text_len], _rope(q[:, :, text_len:], q_cos, q_sin)], dim=2)
            if not attn.is_cross_attention:
                k = torch.cat([k[:, :, :text_len], _rope(k[:, :, text_len:], k_cos, k_sin)], dim=2)

        k, v = self.on_qkv(q, k, v, text_len)

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).flatten(2)
        out = attn.to_out[1](attn.to_out[0](out))
        encoder_out, out = out.split([text_len, out.size(1) - text_len], dim=1)
        return out, encoder_out

    def on_qkv(self, q, k, v, text_len):
        """Called with [B, H, S, D] q/k/v (text first); returns the k and v attention will use."""
        return k, v


class QKRecorder(Attention):
    """Keeps q, k of the video tokens of the last batch element: [H, N, D] each (graph kept)."""

    def __init__(self):
        self.q: torch.Tensor | None = None
        self.k: torch.Tensor | None = None

    def on_qkv(self, q, k, v, text_len):
        self.q, self.k = q[-1, :, text_len:], k[-1, :, text_len:]
        return k, v


class KVRecorder(Attention):
    """Keeps detached k, v of the video tokens of the last batch element: [H, N, D] each."""

    def __init__(self):
        self.k: torch.Tensor | None = None
        self.v: torch.Tensor | None = None

    def on_qkv(self, q, k, v, text_len):
        self.k, self.v = k[-1, :, text_len:].detach(), v[-1, :, text_len:].detach()
        return k, v


class KVInjector(Attention):
    """Attends with a recorded reference's video k/v in place of its own (text k/v kept), every batch row."""

    def __init__(self, bank: KVRecorder):
        self.bank = bank

    def on_qkv(self, q, k, v, text_len):
        if self.bank.k is None:
            raise RuntimeError("KV injection before the reference pass recorded any keys")
        b = k.shape[0]
        ref_k = self.bank.k.to(k.dtype).expand(b, -1, -1, -1)
        ref_v = self.bank.v.to(v.dtype).expand(b, -1, -1, -1)
        return torch.cat([k[:, :, :text_len], ref_k], dim=2), torch.cat([v[:, :, :text_len], ref_v], dim=2)


class QKRecorderInjector(QKRecorder):
    """Records q/k (guidance) in a block that also injects reference k/v (injection)."""

    def __init__(self, bank: KVRecorder):
        super().__init__()
        self.injector = KVInjector(bank)

    def on_qkv(self, q, k, v, text_len):
        k, v = self.injector.on_qkv(q, k, v, text_len)
        return super().on_qkv(q, k, v, text_len)


def _processor_names(transformer, blocks: Mapping[int, Attention]) -> dict[str, Attention]:
    names = {}
    for i, proc in blocks.items():
        names[f"transformer_blocks.{i}.attn1.processor"] = proc
    return names


@contextmanager
def installed(transformer, blocks: Mapping[int, Attention], default: Attention | None = None) -> Iterator[None]:
    """Install processors per block index (others get `default`, if given); restore the old ones after."""
    old = dict(transformer.attn_processors)
    new = dict(old)
    if default is not None:
        new = {name: default for name in old}
    for name, proc in _processor_names(transformer, blocks).items():
        if name not in new:
            raise ValueError(f"the transformer has no block {name.split('.')[1]} ({len(transformer.transformer_blocks)} blocks)")
        new[name] = proc
    transformer.set_attn_processor(new)  # consumes the dict it is given: `old` stays intact
    try:
        yield
    finally:
        transformer.set_attn_processor(dict(old))
