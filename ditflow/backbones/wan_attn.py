"""Wan's self-attention (`attn1`) as our processor, calling a tap, and its real-valued RoPE."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1) of the last dim, out of place (as WanAttnProcessor's arithmetic).

    x: [B, S, H, D]; cos, sin: [1, S, 1, D], each angle repeated for its pair.
    """
    x1, x2 = x.unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2], sin[..., 1::2]
    return torch.stack([x1 * c - x2 * s, x1 * s + x2 * c], dim=-1).flatten(-2).type_as(x)


def angles_to_rope(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation angles [1, S, 1, D/2] -> (cos, sin) [1, S, 1, D] as `transformer.rope` returns them."""
    return angles.cos().repeat_interleave(2, dim=-1), angles.sin().repeat_interleave(2, dim=-1)


class WanSelfAttention:
    """WanAttnProcessor for text-to-video self-attention, calling `tap.on_qkv` with [B, H, S, D] q/k/v after
    the RMS norms (across heads) and RoPE; every token is a video token."""

    def __init__(self, tap):
        self.tap = tap

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None, **_):
        if encoder_hidden_states is not None or attn.add_k_proj is not None:
            raise ValueError("WanSelfAttention is for attn1 of a text-to-video model")
        q = attn.norm_q(attn.to_q(hidden_states)).unflatten(2, (attn.heads, -1))  # [B, S, H, D]
        k = attn.norm_k(attn.to_k(hidden_states)).unflatten(2, (attn.heads, -1))
        v = attn.to_v(hidden_states).unflatten(2, (attn.heads, -1))
        if rotary_emb is not None:
            q, k = rope_rotate(q, *rotary_emb), rope_rotate(k, *rotary_emb)
        q, k, v = (x.transpose(1, 2) for x in (q, k, v))  # [B, H, S, D]
        k, v = self.tap.on_qkv(q, k, v, slice(0, q.shape[2]))
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).flatten(2).type_as(q)
        return attn.to_out[1](attn.to_out[0](out))
