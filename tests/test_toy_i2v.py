"""The toy image-to-video conversion: the image latent's channels start at zero, so the converted model is the
text-to-video one until it is fine-tuned."""
import torch


def test_converted_model_predicts_as_the_text_to_video_one_whatever_the_image(tiny_rope):
    from diffusers import CogVideoXPipeline

    from ditflow.toyworld.i2v import convert

    t2v, i2v = CogVideoXPipeline.from_pretrained(tiny_rope), convert(tiny_rope)
    assert type(i2v).__name__ == "CogVideoXImageToVideoPipeline"
    c = t2v.transformer.config.in_channels
    assert i2v.transformer.config.in_channels == 2 * c
    g = torch.Generator().manual_seed(0)
    x, cond = torch.randn(1, 3, c, 4, 6, generator=g), torch.randn(1, 3, c, 4, 6, generator=g)
    text = torch.randn(1, t2v.transformer.config.max_text_seq_length, t2v.transformer.config.text_embed_dim, generator=g)
    from ditflow.backbones.cogvideox_attn import rope_tables

    rope = rope_tables(t2v.transformer.config, (3, 2, 3))
    t = torch.tensor([500])
    with torch.no_grad():
        a = t2v.transformer(hidden_states=x, encoder_hidden_states=text, timestep=t, image_rotary_emb=rope, return_dict=False)[0]
        b = i2v.transformer(hidden_states=torch.cat([x, cond], dim=2), encoder_hidden_states=text, timestep=t,
                            image_rotary_emb=rope, return_dict=False)[0]
    torch.testing.assert_close(a, b)
