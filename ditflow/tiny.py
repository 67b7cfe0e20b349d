"""Tiny, randomly initialised CogVideoX and Wan pipelines built from the *real* diffusers/transformers classes.

Used by the tests and the offline demo: no weights are downloaded. The tokenizer is a T5Tokenizer built
from a word list (a unigram vocabulary), so prompts go through the same code path as the real T5.
"""
from __future__ import annotations

import os
from pathlib import Path

WORDS = (
    "a an the of on in with and red green blue yellow orange purple pink white black grey gray brown "
    "circle square triangle star ball box shape object background plain gradient textured striped "
    "leopard bear dog cat car bike person running walking jumping moving snowy hill forest road sky "
    "bad quality distortions unrealistic distorted image watermark signature"
).split()


def build_tokenizer(words=WORDS):
    from transformers import T5Tokenizer

    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), ("▁", -3.0)]
    vocab += [("▁" + w, -1.0) for w in dict.fromkeys(words)]
    vocab += [(c, -6.0) for c in "abcdefghijklmnopqrstuvwxyz0123456789,.-'"]
    return T5Tokenizer(vocab=vocab, extra_ids=0)


def build_tiny_pipeline(
    path: str | os.PathLike,
    *,
    rope: bool = True,
    layers: int = 2,
    heads: int = 2,
    head_dim: int = 16,
    text_len: int = 16,
    sample_size: tuple[int, int] = (4, 6),
    seed: int = 0,
    scheduler: str = "ddim",
    patch_t: int | None = None,
    i2v: bool = False,
) -> Path:
    """Save a tiny random CogVideoXPipeline to `path` and return it.

    sample_size is the transformer's latent (height, width); pixels are 8x larger (the VAE's 3 downsamples).
    `rope=True` gives a 5B-like model (RoPE tables), `rope=False` a 2B-like one (3D sincos embedding);
    `patch_t` a 1.5-like one (tokens of `patch_t` latent frames, no patch bias). `i2v`: a
    CogVideoXImageToVideoPipeline (transformer in_channels twice the VAE's latent channels: noise + image latent);
    1.0 with a learned positional embedding at the sample size (as CogVideoX-5B-I2V and diffusers' own I2V
    fixture), 1.5 with the ofs embedding and the VAE's inverted image scale (as CogVideoX1.5-5B-I2V).
    """
    import torch
    from diffusers import (AutoencoderKLCogVideoX, CogVideoXImageToVideoPipeline, CogVideoXPipeline,
                           CogVideoXTransformer3DModel)
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder = T5EncoderModel(
        T5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=1, num_heads=4,
                 relative_attention_num_buckets=8, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0)
    )
    vae = AutoencoderKLCogVideoX(
        in_channels=3, out_channels=3, latent_channels=4, layers_per_block=1, norm_num_groups=2,
        down_block_types=("CogVideoXDownBlock3D",) * 4, up_block_types=("CogVideoXUpBlock3D",) * 4,
        block_out_channels=(8, 8, 8, 8), temporal_compression_ratio=4,
        sample_height=sample_size[0] * 8, sample_width=sample_size[1] * 8,
        invert_scale_latents=i2v and patch_t is not None,
    )
    extra = {} if patch_t is None else {"patch_size_t": patch_t, "patch_bias": False, "use_learned_positional_embeddings": False}
    if i2v:  # 1.5-I2V's ofs embedding is added to the time embedding: the same width
        extra.update({"use_learned_positional_embeddings": True} if patch_t is None else {"ofs_embed_dim": 8})
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=heads, attention_head_dim=head_dim, in_channels=8 if i2v else 4, out_channels=4,
        time_embed_dim=8, text_embed_dim=32, num_layers=layers, sample_height=sample_size[0],
        sample_width=sample_size[1], sample_frames=9, patch_size=2, temporal_compression_ratio=4,
        max_text_seq_length=text_len, use_rotary_positional_embeddings=rope, **extra,
    )
    pipe = (CogVideoXImageToVideoPipeline if i2v else CogVideoXPipeline)(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, transformer=transformer,
                             scheduler=_cogvideox_scheduler(scheduler))
    path = Path(path)
    pipe.save_pretrained(path)
    return path


def _cogvideox_scheduler(kind: str):
    """DPM or DDIM as the released CogVideoX folders configure them (v prediction, zero terminal SNR)."""
    from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler

    cls = CogVideoXDPMScheduler if kind == "dpm" else CogVideoXDDIMScheduler
    return cls(timestep_spacing="trailing", prediction_type="v_prediction", rescale_betas_zero_snr=True,
               snr_shift_scale=1.0, beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012,
               clip_sample=False, set_alpha_to_one=True)


def build_tiny_cogvideox15_pipeline(path: str | os.PathLike, *, layers: int = 2, heads: int = 2, head_dim: int = 16,
                                    sample_size: tuple[int, int] = (4, 6), seed: int = 0, scheduler: str = "dpm") -> Path:
    """Save a tiny random CogVideoX 1.5 text-to-video pipeline to `path` and return it: tokens of 2 latent frames
    (patch_size_t 2, no patch bias), RoPE on the slice grid, build_tiny_pipeline's VAE, T5 and tokenizer."""
    return build_tiny_pipeline(path, rope=True, layers=layers, heads=heads, head_dim=head_dim, sample_size=sample_size,
                               seed=seed, scheduler=scheduler, patch_t=2)


COGVIDEOX_I2V_VARIANTS = ("1.0-i2v", "1.5-i2v")


def build_tiny_cogvideox_i2v_pipeline(path: str | os.PathLike, *, variant: str = "1.0-i2v", seed: int = 0,
                                      scheduler: str = "dpm") -> Path:
    """Save a tiny random CogVideoXImageToVideoPipeline to `path` and return it: 1.0-i2v as CogVideoX-5B-I2V (RoPE and
    a learned positional embedding, usable only at its 9 frames of 32x48), 1.5-i2v as CogVideoX1.5-5B-I2V (temporal
    patches of 2, ofs, the inverted image scale)."""
    if variant not in COGVIDEOX_I2V_VARIANTS:
        raise ValueError(f"variant must be one of {COGVIDEOX_I2V_VARIANTS}, got {variant!r}")
    return build_tiny_pipeline(path, rope=True, seed=seed, scheduler=scheduler, i2v=True,
                               patch_t=2 if variant == "1.5-i2v" else None)


WAN_VARIANTS = ("2.1", "2.2-a14b", "2.2-ti2v-5b", "2.1-i2v", "2.2-i2v-a14b")


def _tiny_clip_vision():
    """A 2-layer CLIP vision tower and its processor (32x32 crops in 8x8 patches: 17 tokens of width 8)."""
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModel

    encoder = CLIPVisionModel(CLIPVisionConfig(hidden_size=8, intermediate_size=16, projection_dim=8, num_hidden_layers=2,
                                               num_attention_heads=2, image_size=32, patch_size=8))
    processor = CLIPImageProcessor(crop_size=32, size={"shortest_edge": 32}, do_center_crop=True)
    return encoder, processor


def build_tiny_wan_pipeline(path: str | os.PathLike, *, layers: int = 2, heads: int = 2, head_dim: int = 12,
                            seed: int = 0, variant: str = "2.1", boundary_ratio: float | None = None) -> Path:
    """Save a tiny random Wan pipeline to `path` and return it: a 2-layer UMT5 with the word-level tokenizer, UniPC
    with flow sigmas as the released checkpoints ship, and by `variant`:
    2.1: WanPipeline, a 4-level Wan VAE (8x space, 4x time); 2.2-a14b: the same with two experts (`transformer`
    for t >= boundary_ratio x 1000, default 0.875, `transformer_2` below); 2.2-ti2v-5b: a residual VAE with 48
    latent channels that patchifies 2x2 inside (16x space), per-token timesteps (`expand_timesteps`), as
    diffusers' own Wan 2.2 fixtures; 2.1-i2v: WanImageToVideoPipeline, 36 input channels (noise, mask,
    condition) and a 2-layer CLIP vision tower whose states enter the cross-attention's image projections
    (`added_kv_proj_dim` set, so the real image path runs, with the 512 text tokens it splits at);
    2.2-i2v-a14b: 36 channels, two experts (boundary 0.9), no image encoder."""
    import torch
    from diffusers import (AutoencoderKLWan, UniPCMultistepScheduler, WanImageToVideoPipeline, WanPipeline,
                           WanTransformer3DModel)
    from transformers import UMT5Config, UMT5EncoderModel

    if variant not in WAN_VARIANTS:
        raise ValueError(f"variant must be one of {WAN_VARIANTS}, got {variant!r}")
    torch.manual_seed(seed)
    tokenizer = build_tokenizer()
    text_encoder = UMT5EncoderModel(
        UMT5Config(vocab_size=len(tokenizer), d_model=32, d_kv=8, d_ff=64, num_layers=2, num_heads=4,
                   relative_attention_num_buckets=8, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0))
    five_b, i2v = variant == "2.2-ti2v-5b", variant in ("2.1-i2v", "2.2-i2v-a14b")
    if five_b:
        z = 48
        vae = AutoencoderKLWan(base_dim=3, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1, is_residual=True,
                               in_channels=12, out_channels=12, patch_size=2, scale_factor_spatial=16,
                               scale_factor_temporal=4, temperal_downsample=[False, True, True],
                               latents_mean=[0.0] * z, latents_std=[1.0] * z)
    else:
        z = 16
        vae = AutoencoderKLWan(base_dim=3, z_dim=z, dim_mult=[1, 1, 1, 1], num_res_blocks=1,
                               temperal_downsample=[False, True, True])
    image = {}
    if variant == "2.1-i2v":
        encoder, processor = _tiny_clip_vision()
        image = dict(image_dim=encoder.config.hidden_size, added_kv_proj_dim=heads * head_dim)

    def transformer():
        return WanTransformer3DModel(
            patch_size=(1, 2, 2), num_attention_heads=heads, attention_head_dim=head_dim,
            in_channels=z + 4 + z if i2v else z, out_channels=z, text_dim=32, freq_dim=256, ffn_dim=32,
            num_layers=layers, cross_attn_norm=True, qk_norm="rms_norm_across_heads", rope_max_seq_len=32, **image)

    sched = UniPCMultistepScheduler(prediction_type="flow_prediction", use_flow_sigmas=True,
                                    flow_shift=5.0 if five_b else 3.0, num_train_timesteps=1000)
    parts = dict(tokenizer=tokenizer, text_encoder=text_encoder, vae=vae, scheduler=sched, transformer=transformer())
    if variant in ("2.2-a14b", "2.2-i2v-a14b"):
        default = 0.875 if variant == "2.2-a14b" else 0.9
        parts.update(transformer_2=transformer(), boundary_ratio=default if boundary_ratio is None else boundary_ratio)
    if variant == "2.1-i2v":
        pipe = WanImageToVideoPipeline(image_encoder=encoder, image_processor=processor, **parts)
    elif i2v:
        pipe = WanImageToVideoPipeline(**parts)
    else:
        pipe = WanPipeline(expand_timesteps=five_b, **parts)
    path = Path(path)
    pipe.save_pretrained(path)
    return path


def _moving_square(frames: int = 9, height: int = 32, width: int = 48):
    """A white square crossing a dark textured background left to right: uint8 [T, H, W, 3]."""
    import numpy as np

    rng = np.random.default_rng(0)
    bg = (rng.random((height, width, 3)) * 80).astype(np.uint8)
    video = np.repeat(bg[None], frames, axis=0)
    for t in range(frames):
        x = 2 + t * 3
        video[t, 10:22, x : x + 12] = 255
    return video


if __name__ == "__main__":  # python -m ditflow.tiny OUT_DIR [--sincos | --cogvideox15 | --cogvideox-i2v | --cogvideox15-i2v | --wan ...]
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit("usage: python -m ditflow.tiny OUT_DIR [--sincos | --cogvideox15 | --cogvideox-i2v | --cogvideox15-i2v | --wan "
                 "| --wan2.2-a14b | --wan2.2-ti2v-5b]")
    out = Path(args[0])
    if (out / "model_index.json").is_file():
        print(out)
    elif "--wan" in sys.argv:
        print(build_tiny_wan_pipeline(out))
    elif "--wan2.2-a14b" in sys.argv or "--wan2.2-ti2v-5b" in sys.argv:
        print(build_tiny_wan_pipeline(out, variant="2.2-a14b" if "--wan2.2-a14b" in sys.argv else "2.2-ti2v-5b"))
    elif "--cogvideox-i2v" in sys.argv or "--cogvideox15-i2v" in sys.argv:
        print(build_tiny_cogvideox_i2v_pipeline(out, variant="1.5-i2v" if "--cogvideox15-i2v" in sys.argv else "1.0-i2v"))
    elif "--cogvideox15" in sys.argv:
        print(build_tiny_cogvideox15_pipeline(out))
    else:
        print(build_tiny_pipeline(out, rope="--sincos" not in sys.argv))
