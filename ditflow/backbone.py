"""A loaded CogVideoX pipeline and the few operations the stages need from it.

Loading accepts a preset name (5b, 2b, toy), a Hugging Face id (from the user's HF cache or the hub) or a
local diffusers folder. Everything else goes through diffusers' public pipeline methods.
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from .config import ALIASES, DTYPES, PRESETS, TOY_MODEL_DIR, ModelPreset, RuntimeOptions, preset_for
from .errors import InputError, ModelUnavailable


def model_source(model: str) -> str:
    """Where to load `model` from: a local folder, or a Hugging Face id."""
    name = ALIASES.get(model, model)
    if name == "toy":
        if not (TOY_MODEL_DIR / "model_index.json").is_file():
            raise ModelUnavailable(
                f"the toy model is not in {TOY_MODEL_DIR}; run `make toy-model` or pass --model with a CogVideoX id or folder")
        return str(TOY_MODEL_DIR)
    if name in PRESETS:
        return PRESETS[name].source
    return model


def _local_folder(source: str) -> Path | None:
    p = Path(source).expanduser()
    if p.exists():
        if not (p / "model_index.json").is_file():
            raise InputError(f"{p} is not a diffusers pipeline folder (no model_index.json)")
        return p.resolve()
    return None


def _hf_snapshot(source: str) -> Path | None:
    """The cached snapshot folder of a hub id, without touching the network."""
    try:
        from huggingface_hub import snapshot_download

        return Path(snapshot_download(source, local_files_only=True))
    except Exception:
        return None


def looks_like_path(model: str) -> bool:
    """A --model meant as a folder rather than a hub id: './m', '/m', '~/m', or 'a/b' where 'a' exists."""
    if "/" not in model and os.sep not in model:
        return False
    return model.startswith((".", "/", "~")) or Path(model).expanduser().parent.exists()


def download_command(source: str) -> str:
    """The hub client's download command as installed: `hf` since huggingface_hub 0.34 (2.x has no other)."""
    try:
        from importlib.metadata import version

        major, minor = (int(p) for p in version("huggingface_hub").split(".")[:2])
        cli = "hf" if (major, minor) >= (0, 34) else "huggingface-cli"
    except Exception:  # not installed or an odd version string: the current client's name
        cli = "hf"
    return f"{cli} download {source}"


def resolve_folder(model: str) -> Path:
    source = model_source(model)
    folder = _local_folder(source)
    if folder is None and looks_like_path(source):  # a typo'd folder: a download hint would mislead
        raise ModelUnavailable(f"no model folder at {Path(source).expanduser()}; pass --model with a diffusers "
                               f"folder (one holding model_index.json), a Hugging Face id, or 5b, 2b, toy")
    folder = folder or _hf_snapshot(source)
    if folder is None:
        raise ModelUnavailable(
            f"model '{model}' is not on this machine: download it with `{download_command(source)}` "
            f"(or set HF_HOME to the cache that has it), or pass --model with a local diffusers folder")
    return folder


def model_identity(model: str) -> dict[str, Any]:
    """What identifies the weights, cheaply: the model's configs and its weight files' names and sizes
    (a hub snapshot's folder name is its commit). Goes into every artifact hash."""
    folder = resolve_folder(model)
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file():
            continue
        rel = p.relative_to(folder).as_posix()
        if p.suffix == ".json" or p.name.endswith(".model"):
            h.update(rel.encode() + b"\0" + p.read_bytes())
        else:
            h.update(f"{rel}\0{p.stat().st_size}".encode())
    return {"name": ALIASES.get(model, model), "weights": h.hexdigest()[:16]}


def transformer_config(model: str) -> dict[str, Any]:
    folder = resolve_folder(model)
    try:
        return json.loads((folder / "transformer" / "config.json").read_text())
    except OSError:
        raise InputError(f"{folder} has no transformer/config.json: is it a CogVideoX pipeline?")


def vae_factors(model: str) -> tuple[int, int]:
    """(spatial, temporal) compression of the model's VAE, read from its config (as the pipeline derives them)."""
    try:
        vae = json.loads((resolve_folder(model) / "vae" / "config.json").read_text())
    except OSError:
        return 8, 4
    return 2 ** (len(vae.get("block_out_channels", [0] * 4)) - 1), int(vae.get("temporal_compression_ratio", 4))


def config_geometry(model: str, frames: int, height: int, width: int) -> "Geometry":
    """The geometry of a run from the model's config files alone: checks sizes before any weights load."""
    return geometry_of(int(transformer_config(model).get("patch_size", 2)), *vae_factors(model), frames, height, width)


def toy_vocabulary(model: str) -> frozenset[str] | None:
    """The words of a toy model (trained by ditflow.toyworld: it ships recipe.json), read from its tokenizer
    file without loading anything; None for other models. A toy model knows only its world's words: any other
    word is spelt letter by letter into tokens it never saw, and the video silently ignores it."""
    try:
        folder = resolve_folder(model)
    except ModelUnavailable:
        return None  # nothing to read before loading; loading will say what is missing
    if not (folder / "recipe.json").is_file():
        return None
    try:
        vocab = json.loads((folder / "tokenizer" / "tokenizer.json").read_text())["model"]["vocab"]
        return frozenset(p[1:] for p, _ in vocab if p.startswith("▁") and len(p) > 1)
    except (OSError, ValueError, KeyError, TypeError):
        return None  # not the tokenizer layout toyworld writes: no check


def check_toy_prompt(prompt: str, words: frozenset[str], model: str) -> str:
    """The prompt as the toy model reads it (lower case, punctuation dropped: "A red circle." is "a red
    circle"), or a one-line error naming the words it does not know."""
    normal = " ".join("".join(c for c in w.lower() if c.isalnum()) for w in prompt.split()).split()
    unknown = [w for w in dict.fromkeys(normal) if w not in words]
    if unknown:
        raise InputError(f"model {model} does not know the word(s) {', '.join(unknown)} in {prompt!r}; "
                         f"it knows: {' '.join(sorted(words))}")
    return " ".join(normal)


MODEL_DEFAULTS = "ditflow.json"  # optional, beside model_index.json: ModelPreset fields measured for this model


def preset(model: str) -> ModelPreset:
    name = ALIASES.get(model, model)
    if name in PRESETS:
        return PRESETS[name]
    folder = resolve_folder(model)
    spatial, _ = vae_factors(model)
    defaults_file = folder / MODEL_DEFAULTS
    try:
        defaults = json.loads(defaults_file.read_text()) if defaults_file.is_file() else None
    except json.JSONDecodeError as e:
        raise InputError(f"{defaults_file} is not valid JSON: {e}")
    return preset_for(name, transformer_config(model), spatial, defaults)


@dataclass(frozen=True)
class Geometry:
    """Sizes of one video through the model: pixels, latent and patch grid."""

    frames: int  # pixel frames
    height: int
    width: int
    latent_frames: int
    latent_height: int
    latent_width: int
    patch: int

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.latent_frames, self.latent_height // self.patch, self.latent_width // self.patch)


class Backbone:
    """A CogVideoX pipeline on a device, in a dtype, with the memory options applied."""

    def __init__(self, model: str, dtype: str, runtime: RuntimeOptions = RuntimeOptions(), scheduler: str | None = None):
        import torch
        from diffusers import CogVideoXDDIMScheduler, CogVideoXDPMScheduler, CogVideoXPipeline

        folder = resolve_folder(model)
        _quiet_libraries()
        self.model = model
        self.dtype = getattr(torch, DTYPES.get(dtype, dtype))
        device = runtime.device or ("cuda" if torch.cuda.is_available() else "cpu")
        try:
            pipe = CogVideoXPipeline.from_pretrained(folder, dtype=self.dtype)
        except Exception as e:
            raise ModelUnavailable(f"cannot load CogVideoX pipeline from {folder}: {str(e).splitlines()[0]}")
        if scheduler == "dpm" and not isinstance(pipe.scheduler, CogVideoXDPMScheduler):
            pipe.scheduler = CogVideoXDPMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
        elif scheduler == "ddim" and not isinstance(pipe.scheduler, CogVideoXDDIMScheduler):
            pipe.scheduler = CogVideoXDDIMScheduler.from_config(pipe.scheduler.config, timestep_spacing="trailing")
        if runtime.cpu_offload and device.startswith("cuda"):
            pipe.enable_model_cpu_offload()
        else:
            pipe.to(device)
        if runtime.vae_slicing:
            pipe.vae.enable_slicing()
        if runtime.vae_tiling:
            pipe.vae.enable_tiling()
        if runtime.gradient_checkpointing:
            pipe.transformer.enable_gradient_checkpointing()
        pipe.set_progress_bar_config(disable=True)
        self.pipe = pipe
        self.words = toy_vocabulary(model)
        self.device = torch.device(device)
        pipe.transformer.requires_grad_(False)
        pipe.text_encoder.requires_grad_(False)
        pipe.vae.requires_grad_(False)

    # -- shapes ---------------------------------------------------------------------------------------
    @property
    def transformer(self):
        return self.pipe.transformer

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def uses_rope(self) -> bool:
        return bool(self.transformer.config.use_rotary_positional_embeddings)

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        return geometry_of(int(self.transformer.config.patch_size), self.pipe.vae_scale_factor_spatial,
                           self.pipe.vae_scale_factor_temporal, frames, height, width)

    # -- text, pixels, latents ------------------------------------------------------------------------
    def encode_prompt(self, prompt: str):
        """[1, text_len, dim] T5 embedding, padded to the transformer's text length."""
        import torch

        if self.words is not None:
            prompt = check_toy_prompt(prompt, self.words, self.model)
        with torch.no_grad():
            emb, _ = self.pipe.encode_prompt(prompt, do_classifier_free_guidance=False, device=self.device,
                                             max_sequence_length=self.transformer.config.max_text_seq_length,
                                             dtype=self.dtype)
        return emb

    def encode_video(self, frames: np.ndarray):
        """uint8 [F, H, W, 3] -> scaled latent [1, F_latent, C, h, w] (the VAE's mean, deterministic)."""
        import torch

        video = torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 127.5 - 1.0  # [F, 3, H, W] in [-1, 1]
        video = video.permute(1, 0, 2, 3).unsqueeze(0).to(self.device, self.dtype)  # [1, 3, F, H, W]
        with torch.no_grad():
            dist = self.pipe.vae.encode(video).latent_dist
            latent = dist.mode() * self.pipe.vae_scaling_factor_image
        return latent.permute(0, 2, 1, 3, 4).contiguous()

    def decode(self, latents) -> np.ndarray:
        """Latent [1, F, C, h, w] -> uint8 frames [F, H, W, 3]."""
        import torch

        with torch.no_grad():
            video = self.pipe.decode_latents(latents.to(self.dtype))
            frames = self.pipe.video_processor.postprocess_video(video=video, output_type="np")[0]
        return (np.clip(frames, 0, 1) * 255).round().astype(np.uint8)

    # -- positions ------------------------------------------------------------------------------------
    def rope_tables(self, geo: Geometry):
        """(cos, sin) [N, head_dim] for RoPE models, else None."""
        return rope_tables(self.transformer.config, geo.grid, self.device) if self.uses_rope else None

    def sincos_embedding(self, geo: Geometry):
        """The 3D sincos positional embedding of the video tokens [N, dim] (non-RoPE models), as the patch
        embedding adds it: its buffer only when the size matches the config, else recomputed."""
        import torch

        pe = self.transformer.patch_embed
        pre_frames = (geo.latent_frames - 1) * pe.temporal_compression_ratio + 1
        with torch.no_grad():
            if (pe.sample_height, pe.sample_width, pe.sample_frames) == (geo.latent_height, geo.latent_width, pre_frames):
                full = pe.pos_embedding
            else:
                full = pe._get_positional_embeddings(geo.latent_height, geo.latent_width, pre_frames, device=self.device)
        return full[0, pe.max_text_seq_length:].to(self.device, torch.float32)


def rope_tables(cfg, grid: tuple[int, int, int], device=None):
    """(cos, sin) [N, head_dim] of a RoPE transformer for a (frames, h, w) patch grid, as the CogVideoX 1.0
    pipeline builds them (crop region relative to the config's sample size)."""
    from diffusers.models.embeddings import get_3d_rotary_pos_embed
    from diffusers.pipelines.cogvideo.pipeline_cogvideox import get_resize_crop_region_for_grid

    if cfg.patch_size_t is not None:
        raise InputError("CogVideoX 1.5 models (temporal patches) are not supported yet; use CogVideoX 1.0 (2b, 5b)")
    f, gh, gw = grid
    crops = get_resize_crop_region_for_grid((gh, gw), cfg.sample_width // cfg.patch_size, cfg.sample_height // cfg.patch_size)
    cos, sin = get_3d_rotary_pos_embed(embed_dim=cfg.attention_head_dim, crops_coords=crops, grid_size=(gh, gw),
                                       temporal_size=f, device=device)
    return cos.to(device), sin.to(device)


def _quiet_libraries() -> None:
    """Our own progress goes to stderr through rich; the libraries' loading bars would only add noise."""
    from diffusers.utils import logging as dlog
    from transformers.utils import logging as tlog

    for lib in (dlog, tlog):
        lib.set_verbosity_error()
        lib.disable_progress_bar()


def geometry_of(patch: int, spatial: int, temporal: int, frames: int, height: int, width: int) -> Geometry:
    unit = spatial * patch
    if height % unit or width % unit:
        raise InputError(f"size {height}x{width} is not divisible by {unit} (VAE factor {spatial} x patch {patch}); "
                         f"pick a height and width that are multiples of {unit}")
    if frames < 1:
        raise InputError(f"need at least one frame, got {frames}")
    return Geometry(frames, height, width, (frames - 1) // temporal + 1, height // spatial, width // spatial, patch)
