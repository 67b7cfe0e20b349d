"""CogVideoX 1.0 (2B, 5B, 5B-I2V) and 1.5 (5B, 5B-I2V) as released in diffusers format (THUDM/*).

Transformer values are those of the checkpoints' transformer/config.json (1.5's as recalled: sample 300x300, 81
frames, 224 text tokens, no patch bias); the VAE is AutoencoderKLCogVideoX's defaults (the released
architecture; its scaling factor does not change memory); the text encoder is T5-v1.1-XXL's encoder.
"""
from __future__ import annotations

T5_XXL = {"architectures": ["T5EncoderModel"], "model_type": "t5", "vocab_size": 32128, "d_model": 4096, "d_kv": 64,
          "d_ff": 10240, "num_layers": 24, "num_heads": 64, "feed_forward_proj": "gated-gelu",
          "relative_attention_num_buckets": 32, "relative_attention_max_distance": 128, "layer_norm_epsilon": 1e-6,
          "is_encoder_decoder": False, "use_cache": False, "tie_word_embeddings": False}
_TRANSFORMER = {"_class_name": "CogVideoXTransformer3DModel", "attention_head_dim": 64, "in_channels": 16,
                "out_channels": 16, "text_embed_dim": 4096, "time_embed_dim": 512, "sample_height": 60,
                "sample_width": 90, "sample_frames": 49, "patch_size": 2, "max_text_seq_length": 226,
                "temporal_compression_ratio": 4, "activation_fn": "gelu-approximate", "norm_eps": 1e-5,
                "attention_bias": True, "flip_sin_to_cos": True, "freq_shift": 0, "spatial_interpolation_scale": 1.875,
                "temporal_interpolation_scale": 1.0, "num_attention_heads": 48, "num_layers": 42,
                "use_rotary_positional_embeddings": True}
_V15 = {"patch_size_t": 2, "patch_bias": False, "sample_height": 300, "sample_width": 300, "sample_frames": 81,
        "max_text_seq_length": 224}
_SCHEDULER = {"timestep_spacing": "trailing", "prediction_type": "v_prediction", "rescale_betas_zero_snr": True,
              "snr_shift_scale": 1.0, "beta_schedule": "scaled_linear", "beta_start": 0.00085, "beta_end": 0.012,
              "clip_sample": False, "set_alpha_to_one": True, "num_train_timesteps": 1000}
_DPM = {"_class_name": "CogVideoXDPMScheduler", **_SCHEDULER}


def _release(pipeline: str, transformer: dict, scheduler: dict) -> dict:
    index = {"_class_name": pipeline, "tokenizer": ["transformers", "T5Tokenizer"],
             "text_encoder": ["transformers", "T5EncoderModel"], "vae": ["diffusers", "AutoencoderKLCogVideoX"],
             "transformer": ["diffusers", "CogVideoXTransformer3DModel"], "scheduler": ["diffusers", scheduler["_class_name"]]}
    return {"model_index": index, "transformer": {**_TRANSFORMER, **transformer},
            "vae": {"_class_name": "AutoencoderKLCogVideoX"}, "text_encoder": T5_XXL, "scheduler": scheduler}


CONFIGS = {
    "2b": _release("CogVideoXPipeline", {"num_attention_heads": 30, "num_layers": 30, "use_rotary_positional_embeddings": False},
                   {"_class_name": "CogVideoXDDIMScheduler", **_SCHEDULER, "snr_shift_scale": 3.0}),
    "5b": _release("CogVideoXPipeline", {}, _DPM),
    "1.5-5b": _release("CogVideoXPipeline", _V15, _DPM),
    "cogvideox-5b-i2v": _release("CogVideoXImageToVideoPipeline", {"in_channels": 32, "use_learned_positional_embeddings": True},
                                 _DPM),
    "cogvideox1.5-5b-i2v": _release("CogVideoXImageToVideoPipeline", {**_V15, "in_channels": 32, "ofs_embed_dim": 512}, _DPM),
}
