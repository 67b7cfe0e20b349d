"""Typed artifacts over the store: `amf` (zarr) and `gen` (safetensors), each with JSON metadata.

amf payload  amf.zarr/  frames [T,H,W,3] uint8 (the resized reference), latent [1,F,C,h,w],
                        amf/block_<b> [F,F,P,2], features/block_<b> [F,C,h,w] (float16),
                        moft/block_<b> [K] (motion channels), confidence/block_<b> [F,F,P] (float16),
                        soft/block_<b> [F,F,P,2] (the soft AMF)
gen payload  video.safetensors       frames [T,H,W,3] uint8, latent [1,F,C,h,w]
             embeddings.safetensors  t<timestep> -> optimised embedding (emb mode only)
             meta.json               settings, per-step losses, parents (the AMF, and for inject the gen)
Never pickle: zarr and safetensors only.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np

from .errors import IncompatibleArtifact
from .store import ObjectInfo, Store

AMF_PAYLOAD = "amf.zarr"


@dataclass
class Artifact:
    info: ObjectInfo

    @property
    def hash(self) -> str:
        return self.info.hash

    @property
    def kind(self) -> str:
        return self.info.kind

    @property
    def meta(self) -> dict[str, Any]:
        return self.info.meta

    @property
    def inputs(self) -> dict[str, Any]:
        return self.meta.get("inputs", {})

    @property
    def path(self) -> Path:
        return self.info.path

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.hash[:12]})"


class AmfArtifact(Artifact):
    @cached_property
    def _group(self):
        import zarr

        return zarr.open_group(str(self.path / AMF_PAYLOAD), mode="r")

    @property
    def model(self) -> str:
        return self.inputs["model"]["name"]

    @property
    def blocks(self) -> list[int]:
        return list(self.inputs["blocks"])

    @property
    def grid(self) -> tuple[int, int, int]:
        return tuple(self.meta["grid"])

    @property
    def frames(self) -> np.ndarray:
        return self._group["frames"][...]

    def amf(self, block: int):
        import torch

        return torch.from_numpy(self._group[f"amf/block_{block}"][...])

    def latent(self):
        import torch

        return torch.from_numpy(self._group["latent"][...])

    def features(self, block: int):
        import torch

        return torch.from_numpy(self._group[f"features/block_{block}"][...]).float()

    @property
    def temperature(self) -> float:
        """The softmax temperature the AMF was extracted at: the guide scores the generated video with it."""
        return float(self.inputs["temperature"])

    def soft_amf(self, block: int):
        """[F, F, P, 2] soft AMF of the reference (expected key positions; see amf.attention_motion_flow)."""
        import torch

        return torch.from_numpy(self._group[f"soft/block_{block}"][...])

    def confidence(self, block: int):
        """[F, F, P] attention confidence of the reference (see amf.attention_confidence)."""
        import torch

        return torch.from_numpy(self._group[f"confidence/block_{block}"][...])

    def moft_channels(self, block: int):
        import torch

        return torch.from_numpy(self._group[f"moft/block_{block}"][...]).long()


class GenArtifact(Artifact):
    @cached_property
    def _video(self) -> dict[str, Any]:
        from safetensors.numpy import load_file

        return load_file(str(self.path / "video.safetensors"))

    @property
    def frames(self) -> np.ndarray:
        return self._video["frames"]

    def latent(self):
        import torch

        return torch.from_numpy(self._video["latent"])

    @property
    def image(self) -> np.ndarray | None:
        """The image an image-to-video run animated, fitted (uint8 [H, W, 3]); None for text-to-video."""
        return self._video["image"] if "image" in self.inputs else None

    @property
    def opt_mode(self) -> str | None:
        """latent or emb for a guided run, None for unguided or inject runs (from the hashed inputs)."""
        return self.inputs.get("opt_mode") if self.inputs.get("guidance") else None

    @property
    def losses(self) -> list[dict[str, Any]]:
        return list(self.meta.get("losses", []))

    def embeddings(self) -> dict[int, Any]:
        from safetensors.torch import load_file

        path = self.path / "embeddings.safetensors"
        if not path.is_file():
            return {}
        return {int(k[1:]): v for k, v in load_file(str(path)).items()}


KINDS = {"amf": AmfArtifact, "gen": GenArtifact}


def load(store: Store, ref: str, kind: str | None = None) -> Artifact:
    """The artifact `ref` (hash or unique prefix), verified; with `kind`, refuse any other kind."""
    info = store.info(ref)
    if kind is not None and info.kind != kind:
        hint = {"amf": "`ditflow extract`", "gen": "`ditflow guide`"}[kind]
        raise IncompatibleArtifact(f"artifact {info.hash[:12]} is a '{info.kind}' artifact, not '{kind}' (made by {hint})")
    return KINDS.get(info.kind, Artifact)(info)


def write_amf(folder: Path, *, frames: np.ndarray, latent, amf: dict, features: dict, moft: dict,
              confidence: dict | None = None, soft: dict | None = None) -> None:
    import torch
    import zarr

    g = zarr.open_group(str(folder / AMF_PAYLOAD), mode="w")
    g.create_array("frames", data=np.ascontiguousarray(frames, dtype=np.uint8))
    g.create_array("latent", data=latent.detach().float().cpu().numpy())
    for b, flow in amf.items():
        g.create_array(f"amf/block_{b}", data=flow.detach().float().cpu().numpy())
    for b, feats in features.items():
        g.create_array(f"features/block_{b}", data=feats.detach().to(torch.float16).cpu().numpy())
    for b, ch in moft.items():
        g.create_array(f"moft/block_{b}", data=ch.detach().cpu().numpy().astype(np.int64))
    for b, flow in (soft or {}).items():
        g.create_array(f"soft/block_{b}", data=flow.detach().float().cpu().numpy())
    for b, c in (confidence or {}).items():
        g.create_array(f"confidence/block_{b}", data=c.detach().float().cpu().numpy().astype(np.float16))


def write_gen(folder: Path, *, frames: np.ndarray, latent, embeddings: dict[int, Any], image: np.ndarray | None = None) -> None:
    from safetensors.numpy import save_file
    from safetensors.torch import save_file as save_torch

    arrays = {"frames": np.ascontiguousarray(frames, dtype=np.uint8), "latent": latent.detach().float().cpu().numpy()}
    if image is not None:  # what `inject` animates again by default
        arrays["image"] = np.ascontiguousarray(image, dtype=np.uint8)
    save_file(arrays, str(folder / "video.safetensors"))
    if embeddings:
        save_torch({f"t{t:04d}": e.detach().float().cpu().contiguous() for t, e in embeddings.items()},
                   str(folder / "embeddings.safetensors"))
