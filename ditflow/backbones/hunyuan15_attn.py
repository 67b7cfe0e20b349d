"""HunyuanVideo 1.5's double-stream joint attention as our processor, calling a tap, and its RoPE arithmetic.

Each block attends over [video tokens, text tokens]: the video stream's q/k/v (RMS-normed per head, RoPE on q and
k) followed by the text stream's (its own projections and norms, no RoPE). The text tokens are the image's, the
glyph encoder's and the MLLM's, valid ones first; padding is masked out as key and as query, as the stock
`HunyuanVideo15AttnProcessor2_0`. RoPE tables are (cos, sin), each [S, D] over interleaved pairs (every angle
repeated for its pair), real-valued, computed once per forward by `transformer.rope` and shared by every block.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def rope_rotate(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1) of the last dim by the tables, out of place, in float32 (as the model's).

    x: [B, S, H, D]; cos, sin: [S, D]."""
    c, s = cos[None, :, None, :], sin[None, :, None, :]
    even, odd = x.unflatten(-1, (-1, 2)).unbind(-1)
    turned = torch.stack([-odd, even], dim=-1).flatten(3)  # (x0, x1) -> (-x1, x0)
    return (x.float() * c + turned.float() * s).to(x.dtype)


def angles_to_rope(angles: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotation angles [1, S, 1, D/2] -> (cos, sin), each [S, D], as `transformer.rope` returns them."""
    flat = angles[0, :, 0]
    return flat.cos().repeat_interleave(2, dim=-1), flat.sin().repeat_interleave(2, dim=-1)


def rope_angles(cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """(cos, sin) [S, D] -> rotation angles [1, S, 1, D/2] (one per pair), float32."""
    return torch.atan2(sin[:, 0::2].float(), cos[:, 0::2].float())[None, :, None, :]


def _heads(x: torch.Tensor, heads: int) -> torch.Tensor:
    return x.unflatten(2, (heads, -1))  # [B, S, H*D] -> [B, S, H, D]


def joint_mask(text_mask: torch.Tensor, seq: int) -> torch.Tensor:
    """[B, L] text mask -> [B, 1, S, S] boolean: every video token valid, a pair attends when both are valid."""
    valid = F.pad(text_mask, (seq - text_mask.shape[1], 0), value=True).bool()
    return (valid[:, None, None, :] & valid[:, None, :, None])


class HunyuanJointAttention:
    """The double-stream blocks' attention, calling `tap.on_qkv` with [B, H, S, D] q/k/v after the norms and RoPE
    (the video tokens are S's first `N`, before the text tokens); returns (video, text) outputs as the stock one."""

    def __init__(self, tap):
        self.tap = tap

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, image_rotary_emb=None):
        if encoder_hidden_states is None or attention_mask is None:
            raise ValueError("HunyuanJointAttention is for the double-stream blocks (video and text streams, a text mask)")
        n = hidden_states.shape[1]
        q = attn.norm_q(_heads(attn.to_q(hidden_states), attn.heads))
        k = attn.norm_k(_heads(attn.to_k(hidden_states), attn.heads))
        v = _heads(attn.to_v(hidden_states), attn.heads)
        if image_rotary_emb is not None:
            q, k = rope_rotate(q, *image_rotary_emb), rope_rotate(k, *image_rotary_emb)
        tq = _heads(attn.add_q_proj(encoder_hidden_states), attn.heads)
        tk = _heads(attn.add_k_proj(encoder_hidden_states), attn.heads)
        tv = _heads(attn.add_v_proj(encoder_hidden_states), attn.heads)
        if attn.norm_added_q is not None:
            tq = attn.norm_added_q(tq)
        if attn.norm_added_k is not None:
            tk = attn.norm_added_k(tk)
        q, k, v = (torch.cat(pair, dim=1).transpose(1, 2) for pair in ((q, tq), (k, tk), (v, tv)))  # [B, H, S, D]
        k, v = self.tap.on_qkv(q, k, v, slice(0, n))
        mask = joint_mask(attention_mask, q.shape[2])
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).flatten(2).to(q.dtype)
        video, text = out[:, :n], out[:, n:]
        return attn.to_out[1](attn.to_out[0](video)), attn.to_add_out(text)
