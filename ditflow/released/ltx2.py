"""LTX-2 (text- and image-to-video: one checkpoint) as released in diffusers format (Lightricks/LTX-2).

Read (not from the release, which cannot be downloaded here, but from diffusers' conversion script for version
"2.0", scripts/convert_ltx2_to_diffusers.py, which writes it): the transformer (48 blocks of 32 x 128 video and
32 x 64 audio heads, 128 latent channels, split RoPE, no gated or perturbed attention), the video VAE (32x / 8x,
patch 4, 128 channels, explicit compression ratios), the audio VAE (8 latent channels on 64 mel bins), the
vocoder (24 kHz) and the text connectors (2 layers of 30 x 128 per modality, 128 registers) and the scheduler
(dynamic shift 0.95..2.05, terminal sigma 0.1). Recalled: the text encoder (Gemma-3-12B, the
gemma-3-12b-it-qat-q4_0-unquantized checkpoint the script takes: 48 layers of width 3840 and its SigLIP tower),
the VAE's `timestep_conditioning` (a flag of the script; False assumed), the tokenizer class and
`_diffusers_version`.
"""
from __future__ import annotations

GEMMA3_12B = {
    "architectures": ["Gemma3ForConditionalGeneration"], "model_type": "gemma3", "mm_tokens_per_image": 256,
    "boi_token_index": 255999, "eoi_token_index": 256000, "image_token_index": 262144,
    "text_config": {"model_type": "gemma3_text", "vocab_size": 262208, "hidden_size": 3840,
                    "intermediate_size": 15360, "num_hidden_layers": 48, "num_attention_heads": 16,
                    "num_key_value_heads": 8, "head_dim": 256, "sliding_window": 1024, "max_position_embeddings": 131072,
                    "query_pre_attn_scalar": 256, "rms_norm_eps": 1e-6, "hidden_activation": "gelu_pytorch_tanh"},
    "vision_config": {"model_type": "siglip_vision_model", "hidden_size": 1152, "intermediate_size": 4304,
                      "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 896, "patch_size": 14,
                      "vision_use_head": False},
}
TRANSFORMER = {
    "_class_name": "LTX2VideoTransformer3DModel", "in_channels": 128, "out_channels": 128, "patch_size": 1,
    "patch_size_t": 1, "num_attention_heads": 32, "attention_head_dim": 128, "cross_attention_dim": 4096,
    "vae_scale_factors": [8, 32, 32], "pos_embed_max_pos": 20, "base_height": 2048, "base_width": 2048,
    "gated_attn": False, "cross_attn_mod": False, "audio_in_channels": 128, "audio_out_channels": 128,
    "audio_patch_size": 1, "audio_patch_size_t": 1, "audio_num_attention_heads": 32, "audio_attention_head_dim": 64,
    "audio_cross_attention_dim": 2048, "audio_scale_factor": 4, "audio_pos_embed_max_pos": 20,
    "audio_sampling_rate": 16000, "audio_hop_length": 160, "audio_gated_attn": False, "audio_cross_attn_mod": False,
    "num_layers": 48, "activation_fn": "gelu-approximate", "qk_norm": "rms_norm_across_heads",
    "norm_elementwise_affine": False, "norm_eps": 1e-6, "caption_channels": 3840, "attention_bias": True,
    "attention_out_bias": True, "rope_theta": 10000.0, "rope_double_precision": True, "causal_offset": 1,
    "timestep_scale_multiplier": 1000, "cross_attn_timestep_scale_multiplier": 1000, "rope_type": "split",
    "use_prompt_embeddings": True, "perturbed_attn": False,
}
VAE = {
    "_class_name": "AutoencoderKLLTX2Video", "in_channels": 3, "out_channels": 3, "latent_channels": 128,
    "block_out_channels": [256, 512, 1024, 2048], "down_block_types": ["LTX2VideoDownBlock3D"] * 4,
    "decoder_block_out_channels": [256, 512, 1024], "layers_per_block": [4, 6, 6, 2, 2],
    "decoder_layers_per_block": [5, 5, 5, 5], "spatio_temporal_scaling": [True] * 4,
    "decoder_spatio_temporal_scaling": [True] * 3, "decoder_inject_noise": [False] * 4,
    "downsample_type": ["spatial", "temporal", "spatiotemporal", "spatiotemporal"],
    "upsample_type": ["spatiotemporal"] * 3, "upsample_residual": [True] * 3, "upsample_factor": [2, 2, 2],
    "timestep_conditioning": False, "patch_size": 4, "patch_size_t": 1, "resnet_norm_eps": 1e-6,
    "encoder_causal": True, "decoder_causal": False, "encoder_spatial_padding_mode": "zeros",
    "decoder_spatial_padding_mode": "reflect", "spatial_compression_ratio": 32, "temporal_compression_ratio": 8,
}
AUDIO_VAE = {
    "_class_name": "AutoencoderKLLTX2Audio", "base_channels": 128, "output_channels": 2, "ch_mult": [1, 2, 4],
    "num_res_blocks": 2, "attn_resolutions": None, "in_channels": 2, "resolution": 256, "latent_channels": 8,
    "norm_type": "pixel", "causality_axis": "height", "dropout": 0.0, "mid_block_add_attention": False,
    "sample_rate": 16000, "mel_hop_length": 160, "is_causal": True, "mel_bins": 64, "double_z": True,
}
VOCODER = {
    "_class_name": "LTX2Vocoder", "in_channels": 128, "hidden_channels": 1024, "out_channels": 2,
    "upsample_kernel_sizes": [16, 15, 8, 4, 4], "upsample_factors": [6, 5, 2, 2, 2], "resnet_kernel_sizes": [3, 7, 11],
    "resnet_dilations": [[1, 3, 5], [1, 3, 5], [1, 3, 5]], "act_fn": "leaky_relu", "leaky_relu_negative_slope": 0.1,
    "antialias": False, "final_act_fn": "tanh", "final_bias": True, "output_sampling_rate": 24000,
}
CONNECTORS = {
    "_class_name": "LTX2TextConnectors", "caption_channels": 3840, "text_proj_in_factor": 49,
    "video_connector_num_attention_heads": 30, "video_connector_attention_head_dim": 128,
    "video_connector_num_layers": 2, "video_connector_num_learnable_registers": 128, "video_gated_attn": False,
    "audio_connector_num_attention_heads": 30, "audio_connector_attention_head_dim": 128,
    "audio_connector_num_layers": 2, "audio_connector_num_learnable_registers": 128, "audio_gated_attn": False,
    "connector_rope_base_seq_len": 4096, "rope_theta": 10000.0, "rope_double_precision": True,
    "causal_temporal_positioning": False, "rope_type": "split", "per_modality_projections": False, "proj_bias": False,
}
SCHEDULER = {"_class_name": "FlowMatchEulerDiscreteScheduler", "use_dynamic_shifting": True, "base_shift": 0.95,
             "max_shift": 2.05, "base_image_seq_len": 1024, "max_image_seq_len": 4096, "shift_terminal": 0.1,
             "num_train_timesteps": 1000}


def _release(pipeline: str) -> dict:
    index = {"_class_name": pipeline, "_diffusers_version": "0.37.0",
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "vae": ["diffusers", "AutoencoderKLLTX2Video"], "audio_vae": ["diffusers", "AutoencoderKLLTX2Audio"],
             "text_encoder": ["transformers", "Gemma3ForConditionalGeneration"],
             "tokenizer": ["transformers", "GemmaTokenizerFast"], "connectors": ["ltx2", "LTX2TextConnectors"],
             "transformer": ["diffusers", "LTX2VideoTransformer3DModel"], "vocoder": ["ltx2", "LTX2Vocoder"]}
    return {"model_index": index, "transformer": TRANSFORMER, "vae": VAE, "audio_vae": AUDIO_VAE, "vocoder": VOCODER,
            "connectors": CONNECTORS, "text_encoder": GEMMA3_12B, "scheduler": SCHEDULER}


# the release's model_index.json names LTX2Pipeline; `ltx2-i2v` loads the same folder as LTX2ImageToVideoPipeline
CONFIGS = {"ltx2": _release("LTX2Pipeline"), "ltx2-i2v": _release("LTX2ImageToVideoPipeline")}
