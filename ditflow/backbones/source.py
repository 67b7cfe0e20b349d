"""Where a model's files are: a local diffusers folder or a Hugging Face id (from the user's HF cache), and
what can be read from them before anything loads. Family-free: the adapters read their own configs."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from ..errors import InputError, ModelUnavailable


def read_json_object(path: Path) -> dict[str, Any] | None:
    """A model file holding a JSON object (None when it does not exist), or one line naming what is wrong."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror}")
    except (ValueError, UnicodeDecodeError) as e:
        raise InputError(f"{path} is not valid JSON: {str(e).splitlines()[0]}")
    if not isinstance(data, dict):
        raise InputError(f"{path} must hold a JSON object of settings, not a {type(data).__name__}")
    return data


def pipeline_class(folder: Path) -> str:
    """The pipeline class a diffusers folder names in its model_index.json."""
    path = folder / "model_index.json"
    name = (read_json_object(path) or {}).get("_class_name")
    if not isinstance(name, str):
        raise InputError(f"{path} names no pipeline class (_class_name)")
    return name


def check_components(folder: Path) -> None:
    """Every submodel model_index.json names has its folder (diffusers would name the pipeline's folder instead)."""
    for name, spec in (read_json_object(folder / "model_index.json") or {}).items():
        if name.startswith("_") or not isinstance(spec, list) or None in spec[:2]:
            continue
        if not (folder / name).is_dir():
            raise ModelUnavailable(f"{folder} has no {name}/ folder, which its model_index.json names ({spec[-1]}): "
                                   f"the copy or download is incomplete")


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


def find_folder(model: str, source: str, names: str) -> Path:
    """The folder of `source` (a folder or a hub id; `model` is what the user typed, `names` the presets to
    suggest), or a one-line error saying how to get it."""
    folder = _local_folder(source)
    if folder is None and looks_like_path(source):  # a typo'd folder: a download hint would mislead
        raise ModelUnavailable(f"no model folder at {Path(source).expanduser()}; pass --model with a diffusers "
                               f"folder (one holding model_index.json), a Hugging Face id, or {names}")
    folder = folder or _hf_snapshot(source)
    if folder is None:
        raise ModelUnavailable(
            f"model '{model}' is not on this machine: download it with `{download_command(source)}` "
            f"(or set HF_HOME to the cache that has it), or pass --model with a local diffusers folder")
    return folder


def read_config(folder: Path, part: str) -> dict[str, Any]:
    """A submodel's config.json ({} when the folder has none), or a one-line error naming a broken one."""
    return read_json_object(folder / part / "config.json") or {}


def toy_vocabulary(folder: Path) -> frozenset[str] | None:
    """The words of a toy model (trained by ditflow.toyworld: it ships recipe.json), read from its tokenizer
    file without loading anything; None for other models. A toy model knows only its world's words: any other
    word is spelt letter by letter into tokens it never saw, and the video silently ignores it."""
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
