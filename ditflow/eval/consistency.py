"""Temporal consistency (TC): how alike a video's frames are, by the cosine similarity of their image embeddings.

- ``temporal_consistency``: mean over consecutive pairs (t, t+1), as FlowMotion and FastVMT report it (CLIP).
- ``temporal_consistency_first``: mean over frames t >= 1 against frame 0. DeT's MTBench reports the average of
  both, each over all T frames with a frame's match with itself included (frame 0 with itself, frame 0 with
  its "previous"): MTBench = ((1 + (T-1)·first) / T + (1 + (T-1)·consecutive) / T) / 2.

Embeddings come from the CLIP model eval already loads, or from DINO / DINOv2 (DeT: facebook/dino-vitb16) read
through transformers from the local Hugging Face cache only; missing weights are one ModelUnavailable line.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import InputError, ModelUnavailable


def _check(embeddings: np.ndarray) -> np.ndarray:
    e = np.asarray(embeddings, np.float64)
    if e.ndim != 2 or len(e) < 2:
        raise InputError(f"temporal consistency needs at least 2 frames, got embeddings of shape {e.shape}")
    return e / np.maximum(np.linalg.norm(e, axis=1, keepdims=True), 1e-12)  # cosines, whatever the scale


def temporal_consistency(embeddings: np.ndarray) -> float:
    """Mean cosine similarity of consecutive frames' embeddings [T, D] (T >= 2), in [-1, 1]."""
    e = _check(embeddings)
    return float(np.mean(np.sum(e[1:] * e[:-1], axis=1)))


def consistency_with_first(embeddings: np.ndarray) -> float:
    """Mean cosine similarity of frames 1..T-1 with frame 0: embeddings [T, D] (T >= 2), in [-1, 1]."""
    e = _check(embeddings)
    return float(np.mean(e[1:] @ e[0]))


@dataclass
class DinoEmbedder:
    """A transformers DINO/DINOv2 backbone; a frame's embedding is its final (layer-normed) CLS token."""

    model: Any
    processor: Any
    name: str
    device: str = "cpu"

    def image_embeddings(self, frames: np.ndarray, batch: int = 16) -> np.ndarray:
        """frames uint8 [T, H, W, 3] -> unit-norm embeddings [T, D]."""
        import torch

        out = []
        with torch.no_grad():
            for s in range(0, len(frames), batch):
                inputs = self.processor(images=list(frames[s:s + batch]), return_tensors="pt").to(self.device)
                cls = self.model(**inputs).last_hidden_state[:, 0].float()
                out.append(torch.nn.functional.normalize(cls, dim=-1).cpu())
        return torch.cat(out).numpy()


def _how_to_provide(repo: str, cache: Path) -> str:
    return (f"DINO weights {repo} are not on this machine and are never downloaded here: run `hf download {repo}` "
            f"on a connected machine and copy its Hugging Face cache into {cache} (HF_HOME / HF_HUB_CACHE), or pass "
            "--dino-model /path/to/a/saved/model/folder")


def dino_folder(name: str) -> Path:
    """The local folder of `name` (a folder, or a repo id in the Hugging Face cache); ModelUnavailable if absent."""
    from .clip import _hf_cache_dir

    path = Path(name).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelUnavailable(f"{name} holds no config.json: give a folder saved by transformers' save_pretrained, "
                                   "or a Hugging Face repo id")
        return path
    if name.count("/") != 1:
        raise InputError(f"--dino-model {name}: no such folder, and not a Hugging Face repo id (org/name)")
    from huggingface_hub import snapshot_download

    cache = _hf_cache_dir()
    try:
        return Path(snapshot_download(name, cache_dir=str(cache), local_files_only=True))
    except Exception:  # not in the cache (LocalEntryNotFoundError), or a partial snapshot
        raise ModelUnavailable(_how_to_provide(name, cache))


def load_dino(name: str, device: str = "cpu") -> DinoEmbedder:
    """DINO/DINOv2 `name` (repo id or folder) with its image processor, from disk only."""
    folder = dino_folder(name)
    from transformers import AutoImageProcessor, AutoModel
    from transformers.utils import logging as hf_logging

    bar = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()  # eval's stderr is its table and notes, not a loading bar
    try:
        model = AutoModel.from_pretrained(str(folder), local_files_only=True)
        processor = AutoImageProcessor.from_pretrained(str(folder), local_files_only=True)
    except Exception as e:  # weights or processor config missing from the snapshot, or a corrupt file
        msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ModelUnavailable(f"cannot load DINO {name} from {folder}: {msg}")
    finally:
        if bar:
            hf_logging.enable_progress_bar()
    return DinoEmbedder(model.to(device).eval(), processor, f"dino:{name}", device)
