"""Where a model comes from: a preset name, a Hugging Face id (from the user's HF cache) or a local
diffusers folder, and what identifies its weights. Family-free: the adapters read their own configs."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

from ..config import TOY_MODEL_DIR
from ..errors import InputError, ModelUnavailable

MODEL_DEFAULTS = "ditflow.json"  # optional, beside model_index.json: ModelPreset fields measured for this model


def pipeline_class(folder: Path) -> str:
    """The pipeline class a diffusers folder names in its model_index.json."""
    try:
        return str(json.loads((folder / "model_index.json").read_text())["_class_name"])
    except (OSError, ValueError, KeyError, TypeError):
        raise InputError(f"{folder}/model_index.json names no pipeline class (_class_name)")


def model_source(model: str) -> str:
    """Where to load `model` from: a local folder, or a Hugging Face id."""
    from . import ALIASES, PRESETS

    name = ALIASES.get(model, model)
    if name == "toy":
        if not (TOY_MODEL_DIR / "model_index.json").is_file():
            raise ModelUnavailable(
                f"the toy model is not in {TOY_MODEL_DIR}; run `make toy-model` or pass --model with a model id or folder")
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
                               f"folder (one holding model_index.json), a Hugging Face id, or 5b, 2b, toy, wan-1.3b, wan-14b")
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
    from . import ALIASES

    return {"name": ALIASES.get(model, model), "weights": h.hexdigest()[:16]}


def transformer_config(model: str) -> dict[str, Any]:
    folder = resolve_folder(model)
    try:
        return json.loads((folder / "transformer" / "config.json").read_text())
    except OSError:
        raise InputError(f"{folder} has no transformer/config.json: is it a diffusers video pipeline?")


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
