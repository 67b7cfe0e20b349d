"""A work folder's checkpoints: each stage saves `<name>.safetensors` + `<name>.json` (its step and notes),
atomically, and resumes from them; the folder's recipe.json says which recipe they belong to."""
from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import IncompatibleArtifact
from .recipes import Recipe, stored_recipe


def save(work: Path, name: str, module: torch.nn.Module, state: dict) -> None:
    """The module's weights and `state` (its "step" at least) as checkpoint `name`."""
    from safetensors.torch import save_model

    tmp = work / f".{name}.tmp"
    save_model(module, str(tmp))  # handles tied weights (T5's shared embedding)
    os.replace(tmp, work / f"{name}.safetensors")
    (work / f".{name}.json.tmp").write_text(json.dumps(state))
    os.replace(work / f".{name}.json.tmp", work / f"{name}.json")


def load(work: Path, name: str, module: torch.nn.Module) -> dict:
    """Checkpoint `name` into the module: its state, or {"step": 0} (the module untouched) when there is none."""
    from safetensors.torch import load_model

    if not (work / f"{name}.json").is_file():
        return {"step": 0}
    load_model(module, str(work / f"{name}.safetensors"))
    return json.loads((work / f"{name}.json").read_text())


def load_stage2_text(work: Path, text_encoder: torch.nn.Module) -> None:
    """Stage 2's T5: its own checkpoint once it has saved one, before that stage 1b's (or init_from's)."""
    if not load(work, "text_encoder", text_encoder)["step"]:
        load(work, "text_pretrain", text_encoder)


def save_weights(work: Path, name: str, weights: dict[str, torch.Tensor]) -> None:
    """A state dict (the EMA's) as `<name>.safetensors`, atomically."""
    from safetensors.torch import save_file

    save_file({k: v.detach().cpu().contiguous() for k, v in weights.items()}, str(work / f".{name}.tmp"))
    os.replace(work / f".{name}.tmp", work / f"{name}.safetensors")


def load_weights(work: Path, name: str, device: str = "cpu") -> dict[str, torch.Tensor] | None:
    """`<name>.safetensors` as a state dict on `device`, or None when the work folder has none."""
    from safetensors.torch import load_file

    path = work / f"{name}.safetensors"
    return load_file(str(path), device=str(device)) if path.is_file() else None


# Step counts may grow on resume; every other setting shapes the weights.
GROWING = ("steps", "vae_steps", "decoder_steps", "text_steps", "defaults", "checkpoint_every")


def check_work(recipe: Recipe, work: Path) -> None:
    """Refuse to resume checkpoints of another recipe (shapes, or a silently different model)."""
    path = work / "recipe.json"
    if not path.is_file():
        return
    old = stored_recipe(json.loads(path.read_text()))
    mine = json.loads(json.dumps(asdict(recipe)))  # tuples as lists, as stored
    differ = sorted(k for k in set(mine) | set(old) if k not in GROWING and old.get(k) != mine.get(k))
    if differ:
        raise IncompatibleArtifact(f"{work} holds checkpoints of another recipe (differs in {', '.join(differ)}); "
                                   f"pass another --work or remove it")


def claim(recipe: Recipe, work: Path) -> None:
    """Make `work` the recipe's work folder (after check_work)."""
    work.mkdir(parents=True, exist_ok=True)
    check_work(recipe, work)
    (work / "recipe.json").write_text(json.dumps(asdict(recipe), indent=1))
