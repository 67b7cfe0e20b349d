"""Wan 2.1 (T2V 1.3B/14B, I2V 14B 480P/720P) and 2.2 (T2V-A14B, I2V-A14B, TI2V-5B) as released in diffusers format
(Wan-AI/*-Diffusers).

Transformer values are the checkpoints' transformer/config.json (layers, heads, FFN width, channels: the same
as bench_scale.py builds); the 2.1 VAE is AutoencoderKLWan's defaults, the 2.2 TI2V VAE the residual 48-channel
one at 16x; the text encoder is UMT5-XXL's encoder; Wan 2.1 I2V's image encoder is CLIP ViT-H/14 (open_clip's
XLM-RoBERTa-CLIP vision tower, 32 layers of 1280). Flow shifts as the releases' scheduler configs (recalled:
3 for 480p, 5 for 720p and TI2V-5B, 12 for T2V-A14B).
"""
from __future__ import annotations

UMT5_XXL = {"architectures": ["UMT5EncoderModel"], "model_type": "umt5", "vocab_size": 256384, "d_model": 4096,
            "d_kv": 64, "d_ff": 10240, "num_layers": 24, "num_heads": 64, "feed_forward_proj": "gated-gelu",
            "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6,
            "is_encoder_decoder": False, "use_cache": False, "tie_word_embeddings": False}
CLIP_H = {"architectures": ["CLIPVisionModel"], "model_type": "clip_vision_model", "hidden_size": 1280,
          "intermediate_size": 5120, "num_hidden_layers": 32, "num_attention_heads": 16, "patch_size": 14,
          "image_size": 224, "hidden_act": "gelu", "projection_dim": 1024}
_TRANSFORMER = {"_class_name": "WanTransformer3DModel", "patch_size": [1, 2, 2], "attention_head_dim": 128,
                "in_channels": 16, "out_channels": 16, "text_dim": 4096, "freq_dim": 256, "cross_attn_norm": True,
                "qk_norm": "rms_norm_across_heads", "eps": 1e-6, "rope_max_seq_len": 1024}
_1_3B = {"num_attention_heads": 12, "ffn_dim": 8960, "num_layers": 30}
_14B = {"num_attention_heads": 40, "ffn_dim": 13824, "num_layers": 40}
_I2V = {"in_channels": 36}
_VAE_22 = {"_class_name": "AutoencoderKLWan", "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "is_residual": True,
           "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16, "scale_factor_temporal": 4,
           "latents_mean": [0.0] * 48, "latents_std": [1.0] * 48}


def _release(pipeline: str, transformer: dict, shift: float, *, second: bool = False, vae: dict | None = None,
             image_encoder: bool = False, **index) -> dict:
    cls = "WanTransformer3DModel"
    out = {"model_index": {"_class_name": pipeline, "tokenizer": ["transformers", "T5TokenizerFast"],
                           "text_encoder": ["transformers", "UMT5EncoderModel"], "vae": ["diffusers", "AutoencoderKLWan"],
                           "transformer": ["diffusers", cls], "scheduler": ["diffusers", "UniPCMultistepScheduler"],
                           "transformer_2": ["diffusers", cls] if second else [None, None], **index},
           "transformer": {**_TRANSFORMER, **transformer}, "vae": vae or {"_class_name": "AutoencoderKLWan"},
           "text_encoder": UMT5_XXL,
           "scheduler": {"_class_name": "UniPCMultistepScheduler", "prediction_type": "flow_prediction",
                         "use_flow_sigmas": True, "flow_shift": shift, "num_train_timesteps": 1000}}
    if second:
        out["transformer_2"] = out["transformer"]
    if image_encoder:
        out["model_index"].update(image_encoder=["transformers", "CLIPVisionModel"],
                                  image_processor=["transformers", "CLIPImageProcessor"])
        out["image_encoder"] = CLIP_H
    return out


_I2V_21 = {**_14B, **_I2V, "image_dim": 1280, "added_kv_proj_dim": 5120}
CONFIGS = {
    "wan-1.3b": _release("WanPipeline", _1_3B, 3.0),
    "wan-14b": _release("WanPipeline", _14B, 3.0),
    "wan2.2-a14b": _release("WanPipeline", _14B, 12.0, second=True, boundary_ratio=0.875),
    "wan2.2-ti2v-5b": _release("WanPipeline", {"num_attention_heads": 24, "ffn_dim": 14336, "num_layers": 30,
                                               "in_channels": 48, "out_channels": 48}, 5.0, vae=_VAE_22,
                               expand_timesteps=True),
    "wan-i2v-14b-480p": _release("WanImageToVideoPipeline", _I2V_21, 3.0, image_encoder=True),
    "wan-i2v-14b-720p": _release("WanImageToVideoPipeline", _I2V_21, 5.0, image_encoder=True),
    "wan2.2-i2v-a14b": _release("WanImageToVideoPipeline", {**_14B, **_I2V}, 5.0, second=True, boundary_ratio=0.9),
}
