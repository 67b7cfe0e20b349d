"""LTX-2's video self-attention (`attn1` of each block) as our processor, calling a tap, and its RoPE tables.

The transformer's `rope` returns (cos, sin) for the video tokens once per forward, in one of two layouts (the
config's `rope_type`), both rotating q and k over their whole width (all heads) after the RMS norms:
- split: [B, H, S, D/2] each, rotating the halves (x[:D/2], x[D/2:]) of each head;
- interleaved: [B, S, H*D] each, every angle repeated for its pair (x0, x1).
Our canonical layout puts the tokens on axis 1 of the (complex) tables, as RoPECraft's warping expects:
angles [1, S, H, D/2] (split) or [1, S, H*D/2] (interleaved); tables stack (cos, sin) in front: [2, 1, S, ...].
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rotate_split(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, S, H*D] rotated by split tables cos, sin [B|1, H, S, D/2], in float32 as diffusers, out of place."""
    b, s, _ = x.shape
    h = cos.shape[1]
    xh = x.reshape(b, s, h, -1).transpose(1, 2).float()  # [B, H, S, D]
    first, second = xh.chunk(2, dim=-1)
    out = torch.cat([first * cos - second * sin, second * cos + first * sin], dim=-1)
    return out.transpose(1, 2).reshape(b, s, -1).to(x.dtype)


def rotate_interleaved(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """x [B, S, C] rotated by interleaved tables cos, sin [B|1, S, C], in float32 as diffusers, out of place."""
    real, imag = x.unflatten(-1, (-1, 2)).unbind(-1)
    turned = torch.stack([-imag, real], dim=-1).flatten(-2)
    return (x.float() * cos + turned.float() * sin).to(x.dtype)


def native_to_canonical(cos: torch.Tensor, split: bool) -> torch.Tensor:
    """One of `rope`'s tables (batch row 0) -> the canonical per-angle layout [1, S, ...] (see the module doc)."""
    return cos[:1].transpose(1, 2) if split else cos[:1, :, 0::2]


def canonical_to_native(table: torch.Tensor, split: bool) -> torch.Tensor:
    """The inverse of `native_to_canonical`: [1, S, H, D/2] -> [1, H, S, D/2]; [1, S, C/2] -> [1, S, C]."""
    return table.transpose(1, 2) if split else table.repeat_interleave(2, dim=-1)


def positions_to_rope(positions: torch.Tensor, angles_ndim: int, split: bool) -> tuple[torch.Tensor, torch.Tensor]:
    """Angles (canonical, `angles_ndim` dims) or stacked (cos, sin) tables -> `rope`'s own (cos, sin)."""
    if positions.dim() == angles_ndim:
        cos, sin = positions.cos(), positions.sin()
    else:
        cos, sin = positions[0], positions[1]
    return canonical_to_native(cos.float(), split), canonical_to_native(sin.float(), split)


class LTX2VideoSelfAttention:
    """LTX2AudioVideoAttnProcessor (or its perturbed variant) for a block's video self-attention: calls
    `tap.on_qkv` with [B, H, S, D] q/k/v after the norms and RoPE (every token a video token), honours STG's
    perturbation (attention replaced by the values) and the per-head gates of gated-attention models."""

    def __init__(self, tap):
        self.tap = tap

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, query_rotary_emb=None,
                 key_rotary_emb=None, perturbation_mask=None, all_perturbed=None):
        if encoder_hidden_states is not None:
            raise ValueError("LTX2VideoSelfAttention is for the video self-attention (attn1)")
        b, s, _ = hidden_states.shape
        q, k = attn.norm_q(attn.to_q(hidden_states)), attn.norm_k(attn.to_k(hidden_states))
        v = attn.to_v(hidden_states)
        if query_rotary_emb is not None:
            rotate = rotate_split if attn.rope_type == "split" else rotate_interleaved
            q, k = rotate(q, *query_rotary_emb), rotate(k, *(key_rotary_emb or query_rotary_emb))
        q, k, v = (x.unflatten(2, (attn.heads, -1)).transpose(1, 2) for x in (q, k, v))  # [B, H, S, D]
        k, v = self.tap.on_qkv(q, k, v, slice(0, s))
        if all_perturbed is None:
            all_perturbed = perturbation_mask is not None and bool(torch.all(perturbation_mask == 0))
        values = v.transpose(1, 2).flatten(2)
        if all_perturbed:
            out = values  # STG: the values stand in for the attention
        else:
            if attention_mask is not None:
                attention_mask = attn.prepare_attention_mask(attention_mask, s, b).view(b, attn.heads, -1, s)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
            out = out.transpose(1, 2).flatten(2).to(q.dtype)
            if perturbation_mask is not None:
                out = torch.lerp(values, out, perturbation_mask)
        if attn.to_gate_logits is not None:
            gates = 2.0 * torch.sigmoid(attn.to_gate_logits(hidden_states))  # [B, S, H]
            out = (out.unflatten(2, (attn.heads, -1)) * gates.unsqueeze(-1)).flatten(2)
        return attn.to_out[1](attn.to_out[0](out))
