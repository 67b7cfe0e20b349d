"""HunyuanVideo 1.5 (480p and 720p, text- and image-to-video) as released in diffusers format
(hunyuanvideo-community/HunyuanVideo-1.5-Diffusers-{480p,720p}_{t2v,i2v}).

Read: the transformer's and the VAE's values are the checkpoints' config.json as third-party code quoting them
shows (54 double-stream blocks of 16 x 128, 65 input channels, RoPE axes 16/56/56, target_size 640 / 960; a 32-channel
VAE at 16x / 4x, scaling 1.03682); CFG 6 and the flow shifts (480p 5, 720p T2V 9, 720p I2V 7) are HunyuanVideo
1.5's own pipeline configs. Recalled, not read from the release: the text encoder (Qwen2.5-VL-7B-Instruct's
language model, written in transformers 5's form), the glyph encoder (Glyph-SDXL-v2's ByT5-small, d_model 1472),
the image encoder (SigLIP so400m-patch14-384: 27 x 27 = 729 tokens of 1152, the pipeline's
vision_num_semantic_tokens), the tokenizer classes and `_diffusers_version`.
"""
from __future__ import annotations

QWEN25_VL_7B = {"architectures": ["Qwen2_5_VLTextModel"], "model_type": "qwen2_5_vl_text", "vocab_size": 152064,
                "hidden_size": 3584, "intermediate_size": 18944, "num_hidden_layers": 28, "num_attention_heads": 28,
                "num_key_value_heads": 4, "hidden_act": "silu", "max_position_embeddings": 128000, "rms_norm_eps": 1e-6,
                "rope_parameters": {"rope_type": "default", "rope_theta": 1000000.0, "mrope_section": [16, 24, 24]},
                "tie_word_embeddings": False, "bos_token_id": 151643, "eos_token_id": 151645}
BYT5_GLYPH = {"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": 384, "d_model": 1472, "d_kv": 64,
              "d_ff": 3584, "num_layers": 12, "num_decoder_layers": 4, "num_heads": 6, "feed_forward_proj": "gated-gelu",
              "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6,
              "is_encoder_decoder": True, "tie_word_embeddings": False, "pad_token_id": 0, "eos_token_id": 1,
              "decoder_start_token_id": 0}
SIGLIP_SO400M = {"architectures": ["SiglipVisionModel"], "model_type": "siglip_vision_model", "hidden_size": 1152,
                 "intermediate_size": 4304, "num_hidden_layers": 27, "num_attention_heads": 16, "image_size": 384,
                 "patch_size": 14, "hidden_act": "gelu_pytorch_tanh", "layer_norm_eps": 1e-6, "num_channels": 3}
VAE = {"_class_name": "AutoencoderKLHunyuanVideo15", "in_channels": 3, "out_channels": 3, "latent_channels": 32,
       "block_out_channels": [128, 256, 512, 1024, 1024], "layers_per_block": 2, "spatial_compression_ratio": 16,
       "temporal_compression_ratio": 4, "downsample_match_channel": True, "upsample_match_channel": True,
       "scaling_factor": 1.03682}
_TRANSFORMER = {"_class_name": "HunyuanVideo15Transformer3DModel", "in_channels": 65, "out_channels": 32,
                "num_attention_heads": 16, "attention_head_dim": 128, "num_layers": 54, "num_refiner_layers": 2,
                "mlp_ratio": 4.0, "patch_size": 1, "patch_size_t": 1, "qk_norm": "rms_norm", "text_embed_dim": 3584,
                "text_embed_2_dim": 1472, "image_embed_dim": 1152, "rope_theta": 256.0, "rope_axes_dim": [16, 56, 56],
                "use_meanflow": False}


def _release(task: str, target_size: int, shift: float) -> dict:
    i2v = task == "i2v"
    index = {"_class_name": "HunyuanVideo15ImageToVideoPipeline" if i2v else "HunyuanVideo15Pipeline",
             "_diffusers_version": "0.36.0.dev0", "guider": ["diffusers", "ClassifierFreeGuidance"],
             "scheduler": ["diffusers", "FlowMatchEulerDiscreteScheduler"],
             "text_encoder": ["transformers", "Qwen2_5_VLTextModel"], "tokenizer": ["transformers", "Qwen2Tokenizer"],
             "text_encoder_2": ["transformers", "T5EncoderModel"], "tokenizer_2": ["transformers", "ByT5Tokenizer"],
             "transformer": ["diffusers", "HunyuanVideo15Transformer3DModel"],
             "vae": ["diffusers", "AutoencoderKLHunyuanVideo15"]}
    out = {"model_index": index,
           "transformer": {**_TRANSFORMER, "target_size": target_size, "task_type": task},
           "vae": VAE, "text_encoder": QWEN25_VL_7B, "text_encoder_2": BYT5_GLYPH,
           "scheduler": {"_class_name": "FlowMatchEulerDiscreteScheduler", "num_train_timesteps": 1000, "shift": shift,
                         "use_dynamic_shifting": False},
           "guider": {"_class_name": "ClassifierFreeGuidance", "guidance_scale": 6.0, "guidance_rescale": 0.0,
                      "use_original_formulation": False, "start": 0.0, "stop": 1.0}}
    if i2v:
        index.update(image_encoder=["transformers", "SiglipVisionModel"],
                     feature_extractor=["transformers", "SiglipImageProcessor"])
        out["image_encoder"] = SIGLIP_SO400M
        out["feature_extractor"] = SIGLIP_PREPROCESSOR
    return out


# SigLIP so400m-patch14-384's preprocessor_config.json (recalled): 384 x 384, mean/std 0.5, so 729 image tokens
SIGLIP_PREPROCESSOR = {"image_processor_type": "SiglipImageProcessor", "do_resize": True, "size": {"height": 384, "width": 384},
                       "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
                       "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5]}


CONFIGS = {
    "hunyuan1.5-480p": _release("t2v", 640, 5.0),
    "hunyuan1.5-720p": _release("t2v", 960, 9.0),
    "hunyuan1.5-i2v-480p": _release("i2v", 640, 5.0),
    "hunyuan1.5-i2v-720p": _release("i2v", 960, 7.0),
}
