"""The toy pipeline's parts (real diffusers classes): built untrained from a recipe, taken from a trained
pipeline folder (`Recipe.vae_from`, `Recipe.init_from`), exported as a diffusers pipeline folder."""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import IncompatibleArtifact, InputError
from ..tiny import build_tokenizer
from . import checkpoints
from .recipes import Recipe
from .world import BG_COLOURS, COLOURS, SHAPES

REPO = Path(__file__).resolve().parents[2]


def vocabulary(shapes: tuple[str, ...] = SHAPES) -> list[str]:
    extra = "a an and on background gradient textured".split()
    return list(dict.fromkeys(extra + list(COLOURS) + list(BG_COLOURS) + list(shapes)))


def build(recipe: Recipe) -> tuple:
    """Untrained components: (tokenizer, text_encoder, vae, transformer, scheduler). Seeds torch's global
    generator (recipe.seed), whose later draws stage 1 takes."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXDDIMScheduler, CogVideoXTransformer3DModel
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(recipe.seed)
    tokenizer = build_tokenizer(vocabulary(recipe.shapes))
    text_encoder = T5EncoderModel(T5Config(vocab_size=len(tokenizer), d_model=64, d_kv=16, d_ff=128, num_layers=2,
                                           num_heads=4, dropout_rate=0.0, decoder_start_token_id=0, pad_token_id=0))
    n = len(recipe.vae_channels)
    vae = AutoencoderKLCogVideoX(in_channels=3, out_channels=3, latent_channels=recipe.latent_channels,
                                 layers_per_block=1, norm_num_groups=8, block_out_channels=recipe.vae_channels,
                                 down_block_types=("CogVideoXDownBlock3D",) * n, up_block_types=("CogVideoXUpBlock3D",) * n,
                                 temporal_compression_ratio=4, sample_height=recipe.size, sample_width=recipe.size)
    latent = recipe.latent_size
    transformer = CogVideoXTransformer3DModel(
        num_attention_heads=recipe.heads, attention_head_dim=recipe.head_dim, in_channels=recipe.latent_channels,
        out_channels=recipe.latent_channels, time_embed_dim=128, text_embed_dim=64, num_layers=recipe.layers,
        sample_height=latent, sample_width=latent, sample_frames=recipe.frames, patch_size=recipe.patch,
        max_text_seq_length=recipe.text_len, use_rotary_positional_embeddings=True)
    scheduler = CogVideoXDDIMScheduler(timestep_spacing="trailing", prediction_type="v_prediction",
                                       rescale_betas_zero_snr=True, snr_shift_scale=1.0, beta_schedule="scaled_linear",
                                       beta_start=0.00085, beta_end=0.012, clip_sample=False, set_alpha_to_one=True)
    return tokenizer, text_encoder, vae, transformer, scheduler


def export(recipe: Recipe, parts: tuple, scaling: float, out: Path) -> Path:
    """Save a diffusers pipeline folder (+ ditflow.json defaults, recipe.json), atomically."""
    from diffusers import CogVideoXPipeline

    tokenizer, text_encoder, vae, transformer, scheduler = parts
    vae.register_to_config(scaling_factor=scaling)
    pipe = CogVideoXPipeline(tokenizer=tokenizer, text_encoder=text_encoder.cpu(), vae=vae.cpu(),
                             transformer=transformer.cpu(), scheduler=scheduler)
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(tmp)
    (tmp / "ditflow.json").write_text(json.dumps(recipe.defaults, indent=1))
    (tmp / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
    if out.exists():
        shutil.rmtree(out)
    os.replace(tmp, out)
    return out


def recipe_folder(path: str) -> Path:
    """A folder a recipe names: relative paths are of this repository (out/..., assets/...)."""
    folder = Path(path)
    return folder if folder.is_absolute() else REPO / folder


def adopt_vae(recipe: Recipe, vae, work: Path) -> None:
    """Stages 1 and 3 done by copying `recipe.vae_from`'s VAE into the work folder (as finished checkpoints)."""
    from diffusers import AutoencoderKLCogVideoX

    if (work / "decoder.json").is_file():
        return
    folder = recipe_folder(recipe.vae_from)
    if not (folder / "vae").is_dir():
        raise InputError(f"recipe takes its VAE from {folder}, which has no vae/ folder: put that model there first "
                         "(`make toy-model` does; v8: a copy of assets/toy-cogvideox/vae, v9: --recipe v8 --out "
                         "out/toy-v8)")
    source = AutoencoderKLCogVideoX.from_pretrained(folder / "vae")
    if source.config.block_out_channels != list(recipe.vae_channels) or source.config.latent_channels != recipe.latent_channels:
        raise IncompatibleArtifact(f"{folder}/vae has another shape than the recipe's VAE (channels "
                                   f"{recipe.vae_channels}, latent {recipe.latent_channels})")
    vae.load_state_dict(source.state_dict())
    checkpoints.save(work, "vae", vae, {"step": recipe.vae_steps, "from": str(folder)})
    checkpoints.save(work, "decoder", vae, {"step": recipe.decoder_steps, "from": str(folder)})


def adopt_model(recipe: Recipe, parts: tuple, work: Path) -> None:
    """`recipe.init_from`'s transformer and text encoder as the start of stage 2 (at step 0, with that model's
    latent scaling) and as a finished stage 1b."""
    from diffusers import AutoencoderKLCogVideoX, CogVideoXTransformer3DModel
    from transformers import AutoTokenizer, T5EncoderModel

    if (work / "transformer.json").is_file():
        return
    folder = recipe_folder(recipe.init_from)
    missing = [p for p in ("transformer", "text_encoder", "vae") if not (folder / p).is_dir()]
    if missing:
        raise InputError(f"recipe starts from the toy pipeline {folder}, which has no {', '.join(missing)} folder: "
                         f"train that model into it first (or copy it there)")
    if recipe.vae_from is None or recipe_folder(recipe.vae_from) != folder:
        raise InputError(f"a recipe with init_from must take its VAE from the same folder (vae_from={str(folder)!r})")
    tokenizer, text_encoder, _, transformer, _ = parts
    if AutoTokenizer.from_pretrained(folder / "tokenizer").get_vocab() != tokenizer.get_vocab():
        raise IncompatibleArtifact(f"{folder}'s tokenizer has another vocabulary than the recipe's world (shapes "
                                   f"{recipe.shapes})")
    source = CogVideoXTransformer3DModel.from_pretrained(folder / "transformer")
    theirs, mine = dict(source.config), dict(transformer.config)
    differ = sorted(k for k in mine if not k.startswith("_") and theirs.get(k) != mine[k])
    if differ:
        raise IncompatibleArtifact(f"{folder}/transformer differs from the recipe's ({', '.join(differ)})")
    transformer.load_state_dict(source.state_dict())
    text_encoder.load_state_dict(T5EncoderModel.from_pretrained(folder / "text_encoder").state_dict())
    scaling = AutoencoderKLCogVideoX.load_config(folder / "vae")["scaling_factor"]
    checkpoints.save(work, "text_pretrain", text_encoder, {"step": recipe.text_steps, "from": str(folder)})
    checkpoints.save(work, "transformer", transformer, {"step": 0, "scaling": scaling, "from": str(folder)})
