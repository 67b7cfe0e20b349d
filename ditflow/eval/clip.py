"""Text alignment (the paper's image-quality score): mean over frames of the cosine similarity between
the CLIP embedding of each frame and the CLIP embedding of the prompt, with open_clip.

Weights are only ever read from disk: a checkpoint file, or the Hugging Face / open_clip caches that
open_clip itself would fill. When they are absent, ModelUnavailable says how to provide them; nothing is
downloaded.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelUnavailable

DEFAULT_MODEL = "ViT-B-32"
DEFAULT_PRETRAINED = "openai"


@dataclass
class ClipScorer:
    model: Any
    preprocess: Any
    tokenizer: Any
    name: str
    device: str = "cpu"

    def image_embeddings(self, frames: np.ndarray, batch: int = 16):
        """frames uint8 [T, H, W, 3] -> unit-norm embeddings [T, D]."""
        import torch
        from PIL import Image

        out = []
        with torch.no_grad():
            for s in range(0, len(frames), batch):
                x = torch.stack([self.preprocess(Image.fromarray(f)) for f in frames[s:s + batch]]).to(self.device)
                out.append(torch.nn.functional.normalize(self.model.encode_image(x).float(), dim=-1))
        return torch.cat(out)

    def text_embedding(self, prompt: str):
        """prompt -> unit-norm embedding [D]."""
        import torch

        with torch.no_grad():
            tokens = self.tokenizer([prompt]).to(self.device)
            return torch.nn.functional.normalize(self.model.encode_text(tokens).float(), dim=-1)[0]

    def frame_scores(self, frames: np.ndarray, prompt: str) -> np.ndarray:
        """Cosine similarity of each frame to the prompt: [T] in [-1, 1]."""
        return (self.image_embeddings(frames) @ self.text_embedding(prompt)).cpu().numpy()

    def score(self, frames: np.ndarray, prompt: str) -> float:
        if not prompt or not prompt.strip():
            raise InputError("a prompt is needed for the CLIP score (--prompt)")
        return float(self.frame_scores(frames, prompt).mean())


def _hf_cache_dir() -> Path:
    # read at call time (huggingface_hub reads its environment once, at import)
    if os.environ.get("HF_HUB_CACHE"):
        return Path(os.environ["HF_HUB_CACHE"])
    home = os.environ.get("HF_HOME") or os.path.join(os.environ.get("XDG_CACHE_HOME", os.path.expanduser("~/.cache")), "huggingface")
    return Path(home) / "hub"


def _hf_candidates(filename: str) -> list[str]:
    # open_clip prefers a safetensors twin of the .bin/.pt file when the hub repo has one
    stem, ext = os.path.splitext(filename)
    safe = ["open_clip_model.safetensors"] if filename == "open_clip_pytorch_model.bin" else []
    return [*safe, *([stem + ".safetensors"] if ext in (".bin", ".pt", ".pth") else []), filename]


def cached_checkpoint(cfg: dict[str, Any]) -> Path | None:
    """The local file of an open_clip pretrained-tag config, from the HF hub cache or open_clip's URL
    cache (~/.cache/clip), without touching the network; None when it is not on this machine."""
    if cfg.get("file") and Path(cfg["file"]).is_file():
        return Path(cfg["file"])
    if cfg.get("hf_hub"):
        from huggingface_hub import try_to_load_from_cache

        repo_id, filename = os.path.split(cfg["hf_hub"])  # "org/repo/" means open_clip's default file name
        for name in _hf_candidates(filename or "open_clip_pytorch_model.bin"):
            found = try_to_load_from_cache(repo_id, name, cache_dir=str(_hf_cache_dir()))
            if isinstance(found, str) and Path(found).is_file():
                return Path(found)
    if cfg.get("url"):
        local = Path(os.path.expanduser("~/.cache/clip")) / os.path.basename(cfg["url"])
        if local.is_file():
            return local
    return None


def _how_to_provide(model: str, tag: str, cfg: dict[str, Any]) -> str:
    where = f"huggingface.co/{cfg['hf_hub'].rstrip('/')}" if cfg.get("hf_hub") else cfg.get("url", "its source")
    return (f"CLIP weights {model}/{tag} are not on this machine and are never downloaded here: download the "
            f"checkpoint from {where} on a connected machine and pass --clip-pretrained /path/to/open_clip_pytorch_model.bin, "
            f"or copy a Hugging Face cache holding it into {_hf_cache_dir()} (HF_HOME / HF_HUB_CACHE)")


def load_clip(model: str = DEFAULT_MODEL, pretrained: str | None = DEFAULT_PRETRAINED, device: str = "cpu") -> ClipScorer:
    """open_clip `model` with weights `pretrained`: a tag (e.g. "openai", found in the local caches only),
    a checkpoint file, or None for random weights (tests only).

    A checkpoint file is loaded with the preprocessing and activation of the model's "openai" tag when the
    model has one (a file of OpenAI weights needs QuickGELU and OpenAI's normalisation), else with the
    model's own config.
    """
    import open_clip
    from open_clip.pretrained import get_pretrained_cfg

    if model not in open_clip.list_models():
        raise InputError(f"unknown CLIP model '{model}'; see open_clip.list_models() (e.g. {DEFAULT_MODEL})")
    checkpoint: Path | None = None
    cfg: dict[str, Any] = {}
    if pretrained is not None and Path(pretrained).expanduser().is_file():
        checkpoint = Path(pretrained).expanduser()
        cfg = get_pretrained_cfg(model, "openai") or {}
    elif pretrained is not None:
        if "/" in pretrained or os.sep in pretrained or Path(pretrained).suffix in (".bin", ".pt", ".pth", ".safetensors"):
            raise InputError(f"CLIP checkpoint not found: {pretrained}")
        cfg = get_pretrained_cfg(model, pretrained) or {}
        if not cfg:
            tags = ", ".join(open_clip.list_pretrained_tags_by_model(model)) or "none"
            raise InputError(f"'{pretrained}' is neither a checkpoint file nor a pretrained tag of {model} (tags: {tags})")
        checkpoint = cached_checkpoint(cfg)
        if checkpoint is None:
            raise ModelUnavailable(_how_to_provide(model, pretrained, cfg))
    # what open_clip would take from the tag; passed explicitly because we hand it a file, not the tag
    preprocessing = {"mean": "image_mean", "std": "image_std", "interpolation": "image_interpolation", "resize_mode": "image_resize_mode"}
    kwargs = {arg: cfg[key] for key, arg in preprocessing.items() if key in cfg}
    try:
        net, _, preprocess = open_clip.create_model_and_transforms(
            model, pretrained=str(checkpoint) if checkpoint else None, device=device,
            force_quick_gelu=bool(cfg.get("quick_gelu", False)), pretrained_text=False, **kwargs)
    except Exception as e:  # a corrupt or mismatched checkpoint
        if checkpoint is None:
            raise
        msg = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise ModelUnavailable(f"cannot load CLIP {model} from {checkpoint}: {msg}")
    name = f"{model}/{pretrained if pretrained is not None else 'random'}"
    return ClipScorer(net.eval(), preprocess, open_clip.get_tokenizer(model), name, device)
