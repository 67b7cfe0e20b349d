"""CogVideoX's joint text-video attention as our processor (it calls a tap), and its RoPE tables."""
from __future__ import annotations

import torch
import torch.nn.functional as F



def _rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs (x0, x1) of the last dim by the tables: x·cos + rot(x)·sin, out of place
    (the stock processor assigns into a slice of q/k, which autograd through trainable tables cannot take).

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


class CogVideoXAttention:
    """CogVideoX joint text-video attention (as diffusers' CogVideoXAttnProcessor2_0), calling `tap.on_qkv`
    with [B, H, S, D] q/k/v (text first) and the video tokens' slice."""

    def __init__(self, tap):
        self.tap = tap

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

        k, v = self.tap.on_qkv(q, k, v, slice(text_len, q.shape[2]))

        out = F.scaled_dot_product_attention(q, k, v, attn_mask=attention_mask, dropout_p=0.0, is_causal=False)
        out = out.transpose(1, 2).flatten(2)
        out = attn.to_out[1](attn.to_out[0](out))
        encoder_out, out = out.split([text_len, out.size(1) - text_len], dim=1)
        return out, encoder_out


def rope_tables(cfg, grid: tuple[int, int, int], device=None):
    """(cos, sin) [N, head_dim] of a RoPE transformer for a (token frames, h, w) patch grid, as its pipeline
    builds them: CogVideoX 1.0 a crop region relative to the config's sample size; 1.5 (temporal patches) the
    "slice" grid, integer positions 0..n-1 on each axis."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    f, gh, gw = grid
    if cfg.patch_size_t is None:
        crops = get_resize_crop_region_for_grid((gh, gw), cfg.sample_width // cfg.patch_size, cfg.sample_height // cfg.patch_size)
        cos, sin = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops, grid_size=(gh, gw),
                                           temporal_size=f, device=device)
    else:
        # the pipeline's max_size is the sample size in patches; a slice grid's positions do not depend on it
        # once it covers the grid (a larger grid would fail inside diffusers)
        top = (max(gh, cfg.sample_height // cfg.patch_size), max(gw, cfg.sample_width // cfg.patch_size))
        cos, sin = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=None, grid_size=(gh, gw),
                                           temporal_size=f, grid_type="slice", max_size=top, device=device)
    return cos.to(device), sin.to(device)
