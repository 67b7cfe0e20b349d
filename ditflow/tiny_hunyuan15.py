"""Tiny, randomly initialised HunyuanVideo 1.5 pipelines (text- and image-to-video) from the *real* diffusers and
transformers classes, for the tests: no weights are downloaded.

Every part is the released one's class at a toy size: a Qwen2.5-VL text model (3 layers, so the pipeline's
hidden state third from last exists) behind a byte-level BPE Qwen2Tokenizer with Qwen's chat template, a ByT5
glyph encoder (T5EncoderModel) with the real ByT5Tokenizer (it needs no files), the 16x/4x causal VAE, the
transformer (65 input channels: noise, condition, mask), flow-match Euler with a shift and the CFG guider;
image-to-video adds a SigLIP vision tower and its processor. The transformer's `target_size` is 48, whose 2:3
bucket is 32x48: the I2V pipeline, which picks its size from the picture's aspect, then runs at the tests' size.
"""
from __future__ import annotations

import os
from pathlib import Path

TARGET_SIZE = 48  # pixels: 9 latent patches, so 32x48 is one of its buckets
SHIFT = 5.0  # the 480p checkpoints' flow shift
CFG = 6.0  # their guider's guidance_scale
# Qwen2.5's chat template, reduced to what the pipeline sends (string contents, a generation prompt)
CHAT_TEMPLATE = ("{% for message in messages %}<|im_start|>{{ message['role'] }}\n{{ message['content'] }}<|im_end|>\n"
                 "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")
_MERGE_WORDS = ("the", "and", "of", "a", "circle", "square", "red", "blue", "video", "background", "on", "in")


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for the bytes 0..255 (GPT-2's table: printable bytes stand
    for themselves, the others are shifted past 255)."""
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = iter(range(256, 512))
    return [chr(b) if b in keep else chr(next(extra)) for b in range(256)]


def build_qwen_tokenizer():
    """A byte-level BPE Qwen2Tokenizer: the 256 byte symbols, merges spelling a few words, Qwen's special tokens."""
    from transformers import Qwen2Tokenizer
    vocab = {s: i for i, s in enumerate(_byte_symbols())}
    merges: list[tuple[str, str]] = []
    for word in _MERGE_WORDS:  # " word" -> Ġ, then its letters merged left to right
        piece = "Ġ"
        for letter in word:
            if (piece, letter) not in merges:
                merges.append((piece, letter))
                vocab.setdefault(piece + letter, len(vocab))
            piece += letter
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    for s in specials:
        vocab[s] = len(vocab)
    tok = Qwen2Tokenizer(vocab=vocab, merges=merges, additional_special_tokens=specials[1:])
    tok.chat_template = CHAT_TEMPLATE
    return tok


def _text_encoders(qwen_width: int, byt5_width: int):
    """(Qwen2.5-VL text model, its tokenizer, ByT5 encoder, ByT5Tokenizer), tiny."""
    from transformers import ByT5Tokenizer, Qwen2_5_VLTextConfig, Qwen2_5_VLTextModel, T5Config, T5EncoderModel

    tokenizer = build_qwen_tokenizer()
    qwen = Qwen2_5_VLTextModel(Qwen2_5_VLTextConfig(
        vocab_size=len(tokenizer), hidden_size=qwen_width, intermediate_size=2 * qwen_width, num_hidden_layers=3,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        bos_token_id=tokenizer.eos_token_id, eos_token_id=tokenizer.eos_token_id,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}))
    byt5_tokenizer = ByT5Tokenizer()
    byt5 = T5EncoderModel(T5Config(vocab_size=len(byt5_tokenizer), d_model=byt5_width, d_kv=8, d_ff=2 * byt5_width,
                                   num_layers=1, num_heads=2, relative_attention_num_buckets=8, dropout_rate=0.0,
                                   feed_forward_proj="gated-gelu", decoder_start_token_id=0, pad_token_id=0))
    return qwen, tokenizer, byt5, byt5_tokenizer


def _siglip(width: int):
    """A 1-layer SigLIP vision tower on 32x32 inputs in 8x8 patches (16 tokens of `width`) and its processor."""
    from transformers import SiglipImageProcessor, SiglipVisionConfig, SiglipVisionModel

    encoder = SiglipVisionModel(SiglipVisionConfig(hidden_size=width, intermediate_size=2 * width, num_hidden_layers=1,
                                                   num_attention_heads=2, image_size=32, patch_size=8))
    return encoder, SiglipImageProcessor(size={"height": 32, "width": 32})


def build_tiny_hunyuan15_pipeline(path: str | os.PathLike, *, i2v: bool = False, layers: int = 2, heads: int = 2,
                                  head_dim: int = 16, seed: int = 0) -> Path:
    """Save a tiny random HunyuanVideo15Pipeline (or, `i2v`, HunyuanVideo15ImageToVideoPipeline) to `path`.

    The transformer: `layers` double-stream blocks of `heads` x `head_dim` (RoPE axes 4, 6, 6), spatial patch 1 on
    a 4-channel latent of a 16x/4x VAE (sizes: multiples of 16, 4k+1 frames); guider CFG 6, Euler shift 5."""
    import torch
    from diffusers import (AutoencoderKLHunyuanVideo15, ClassifierFreeGuidance, FlowMatchEulerDiscreteScheduler,
                           HunyuanVideo15ImageToVideoPipeline, HunyuanVideo15Pipeline, HunyuanVideo15Transformer3DModel)

    if head_dim != 16:
        raise ValueError("the RoPE axes (4, 6, 6) need head_dim 16")
    torch.manual_seed(seed)
    z, qwen_width, byt5_width, image_width = 4, 32, 16, 16
    qwen, tokenizer, byt5, byt5_tokenizer = _text_encoders(qwen_width, byt5_width)
    vae = AutoencoderKLHunyuanVideo15(latent_channels=z, block_out_channels=(8, 8, 16, 16, 16), layers_per_block=1,
                                      spatial_compression_ratio=16, temporal_compression_ratio=4)
    transformer = HunyuanVideo15Transformer3DModel(
        in_channels=2 * z + 1, out_channels=z, num_attention_heads=heads, attention_head_dim=head_dim, num_layers=layers,
        num_refiner_layers=1, mlp_ratio=2.0, text_embed_dim=qwen_width, text_embed_2_dim=byt5_width,
        image_embed_dim=image_width, rope_axes_dim=(4, 6, 6), target_size=TARGET_SIZE, task_type="i2v" if i2v else "t2v")
    parts = dict(text_encoder=qwen, tokenizer=tokenizer, transformer=transformer, vae=vae,
                 scheduler=FlowMatchEulerDiscreteScheduler(shift=SHIFT), text_encoder_2=byt5, tokenizer_2=byt5_tokenizer,
                 guider=ClassifierFreeGuidance(guidance_scale=CFG))
    if i2v:
        encoder, processor = _siglip(image_width)
        pipe = HunyuanVideo15ImageToVideoPipeline(image_encoder=encoder, feature_extractor=processor, **parts)
    else:
        pipe = HunyuanVideo15Pipeline(**parts)
    path = Path(path)
    pipe.save_pretrained(path)
    return path


if __name__ == "__main__":  # python -m ditflow.tiny_hunyuan15 OUT_DIR [--i2v]
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    if not args:
        sys.exit("usage: python -m ditflow.tiny_hunyuan15 OUT_DIR [--i2v]")
    print(build_tiny_hunyuan15_pipeline(args[0], i2v="--i2v" in sys.argv))
