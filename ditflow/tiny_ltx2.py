"""Tiny, randomly initialised LTX-2 pipelines (`LTX2Pipeline`, `LTX2ImageToVideoPipeline`) from the *real*
diffusers/transformers classes: a 2-layer Gemma-3 text encoder with a character-level Gemma tokenizer, the
text connectors (learnable registers), the audio-video transformer, the LTX-2 video VAE (8x space, 4x time
here: the released one is 32x, 8x), the audio VAE and the vocoder. No weights are downloaded; each folder is
a few MB.
"""
from __future__ import annotations

import os
from pathlib import Path

CHARS = "abcdefghijklmnopqrstuvwxyz0123456789,.-'"
TEXT_LEN = 32  # the tokenizer's model_max_length: a multiple of the connectors' registers
REGISTERS = 8


def build_gemma_tokenizer():
    """A Gemma tokenizer (BPE with byte fallback, left padding) over single characters: every prompt goes
    through the real tokenizer code, one token a character."""
    from transformers import GemmaTokenizer

    vocab = {"<pad>": 0, "<eos>": 1, "<bos>": 2, "<unk>": 3, "<mask>": 4, "▁": 5}
    for c in CHARS:
        vocab.setdefault(c, len(vocab))
    tok = GemmaTokenizer(vocab=vocab, merges=[], model_max_length=TEXT_LEN)
    tok.padding_side = "left"
    return tok


def _gemma3(vocab_size: int):
    """A 2-layer Gemma-3 (text width 16) with a 1-layer SigLIP tower (the conditional-generation class the
    pipeline names; only its text stack runs)."""
    from transformers import Gemma3Config, Gemma3ForConditionalGeneration

    text = dict(vocab_size=vocab_size, hidden_size=16, intermediate_size=32, num_hidden_layers=2, num_attention_heads=2,
                num_key_value_heads=1, head_dim=8, max_position_embeddings=256, sliding_window=16,
                pad_token_id=0, bos_token_id=2, eos_token_id=1)
    vision = dict(hidden_size=8, intermediate_size=16, num_hidden_layers=1, num_attention_heads=2, image_size=16,
                  patch_size=8)
    cfg = Gemma3Config(text_config=text, vision_config=vision, mm_tokens_per_image=4, image_token_index=vocab_size - 1)
    return Gemma3ForConditionalGeneration(cfg)


def build_tiny_ltx2_pipeline(path: str | os.PathLike, *, layers: int = 2, seed: int = 0, i2v: bool = False) -> Path:
    """Save a tiny random LTX2Pipeline (or, `i2v`, LTX2ImageToVideoPipeline) to `path` and return it.

    Video: 4 latent channels, VAE patch 2 then two space-time halvings (8x space, 4x time: 9 frames of 32x48 are a
    3 x 4 x 6 latent), transformer patch 1, split RoPE (as LTX-2's release); audio: 2 latent channels on 8 mel bins,
    a 2-upsample vocoder; text: Gemma-3 hidden states of its 3 layers through the connectors (8 registers).
    """
    import torch
    from diffusers import (AutoencoderKLLTX2Audio, AutoencoderKLLTX2Video, FlowMatchEulerDiscreteScheduler,
                           LTX2ImageToVideoPipeline, LTX2Pipeline, LTX2VideoTransformer3DModel)
    from diffusers.pipelines.ltx2 import LTX2TextConnectors
    from diffusers.pipelines.ltx2.vocoder import LTX2Vocoder

    torch.manual_seed(seed)
    tokenizer = build_gemma_tokenizer()
    text_encoder = _gemma3(len(tokenizer) + 1)
    width, depth = text_encoder.config.text_config.hidden_size, text_encoder.config.text_config.num_hidden_layers + 1
    transformer = LTX2VideoTransformer3DModel(
        in_channels=4, out_channels=4, patch_size=1, patch_size_t=1, num_attention_heads=2, attention_head_dim=8,
        cross_attention_dim=16, vae_scale_factors=(4, 8, 8), audio_in_channels=4, audio_out_channels=4,
        audio_num_attention_heads=2, audio_attention_head_dim=4, audio_cross_attention_dim=8, num_layers=layers,
        caption_channels=width, rope_type="split")
    connectors = LTX2TextConnectors(
        caption_channels=width, text_proj_in_factor=depth, video_connector_num_attention_heads=2,
        video_connector_attention_head_dim=8, video_connector_num_layers=1,
        video_connector_num_learnable_registers=REGISTERS, audio_connector_num_attention_heads=2,
        audio_connector_attention_head_dim=8, audio_connector_num_layers=1,
        audio_connector_num_learnable_registers=REGISTERS, connector_rope_base_seq_len=TEXT_LEN, rope_type="split")
    vae = AutoencoderKLLTX2Video(
        in_channels=3, out_channels=3, latent_channels=4, block_out_channels=(8, 8),
        down_block_types=("LTX2VideoDownBlock3D",) * 2, decoder_block_out_channels=(8, 8),
        layers_per_block=(1, 1, 1), decoder_layers_per_block=(1, 1, 1), spatio_temporal_scaling=(True, True),
        decoder_spatio_temporal_scaling=(True, True), decoder_inject_noise=(False, False, False),
        downsample_type=("spatiotemporal", "spatiotemporal"), upsample_type=("spatiotemporal", "spatiotemporal"),
        upsample_residual=(False, False), upsample_factor=(1, 1), timestep_conditioning=False, patch_size=2,
        patch_size_t=1, encoder_causal=True, decoder_causal=False, spatial_compression_ratio=8,
        temporal_compression_ratio=4)
    audio_vae = AutoencoderKLLTX2Audio(
        base_channels=4, output_channels=2, ch_mult=(1,), num_res_blocks=1, attn_resolutions=None, in_channels=2,
        resolution=32, latent_channels=2, norm_type="pixel", causality_axis="height", dropout=0.0,
        mid_block_add_attention=False, sample_rate=16000, mel_hop_length=160, is_causal=True, mel_bins=8)
    vocoder = LTX2Vocoder(
        in_channels=audio_vae.config.output_channels * audio_vae.config.mel_bins, hidden_channels=16, out_channels=2,
        upsample_kernel_sizes=[4, 4], upsample_factors=[2, 2], resnet_kernel_sizes=[3], resnet_dilations=[[1, 3, 5]],
        leaky_relu_negative_slope=0.1, output_sampling_rate=16000)
    # as LTX-2's scheduler config: shift by the token count (exponential time shift), a terminal sigma of 0.1
    scheduler = FlowMatchEulerDiscreteScheduler(use_dynamic_shifting=True, base_shift=0.95, max_shift=2.05,
                                                base_image_seq_len=1024, max_image_seq_len=4096, shift_terminal=0.1,
                                                time_shift_type="exponential")
    cls = LTX2ImageToVideoPipeline if i2v else LTX2Pipeline
    pipe = cls(scheduler=scheduler, vae=vae, audio_vae=audio_vae, text_encoder=text_encoder, tokenizer=tokenizer,
               connectors=connectors, transformer=transformer, vocoder=vocoder)
    path = Path(path)
    pipe.save_pretrained(path)
    return path


if __name__ == "__main__":  # python -m ditflow.tiny_ltx2 OUT_DIR [--i2v]
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit("usage: python -m ditflow.tiny_ltx2 OUT_DIR [--i2v]")
    print(build_tiny_ltx2_pipeline(args[0], i2v="--i2v" in sys.argv))
