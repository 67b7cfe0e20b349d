"""A model's pipeline with fake weights: every component built from its config.json with the real diffusers and
transformers classes under torch's FakeTensorMode (shapes and dtypes, no memory, no files of weights), wrapped in
the family's adapter as if loaded. Named presets get a folder of their released config files (`ditflow.released`).

Fake tensors live on a fake CPU: PyTorch's autograd engine needs a real CUDA context for CUDA tensors, even fake
ones. Every op the GPU runs has the same shapes on either device; the one choice that differs by device, the
attention kernel, is the fused one on both (`plan.simulate` checks which ran), so the memory counted is the GPU's.
"""
from __future__ import annotations

import json
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ..errors import InputError

# what diffusers and transformers read in these folders
CONFIG_FILES = {"scheduler": "scheduler_config.json", "guider": "guider_config.json",
                "feature_extractor": "preprocessor_config.json", "image_processor": "preprocessor_config.json"}


def config_folder(name: str, configs: dict[str, dict[str, Any]], root: Path) -> Path:
    """A diffusers folder of config files only (model_index.json and each component's config.json)."""
    folder = root / name.replace("/", "--")
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model_index.json").write_text(json.dumps(configs["model_index"]))
    for part, cfg in configs.items():
        if part != "model_index":
            (folder / part).mkdir(exist_ok=True)
            file = CONFIG_FILES.get(part, "config.json")
            (folder / part / file).write_text(json.dumps(cfg))
    return folder


@contextmanager
def released_folder(name: str) -> Iterator[Path | None]:
    """A named preset's released configs as a folder (None: not a preset this knows)."""
    from ..released import released_configs

    configs = released_configs().get(name)
    if configs is None:
        yield None
        return
    with tempfile.TemporaryDirectory(prefix="ditflow-plan-") as tmp:
        yield config_folder(name, configs, Path(tmp))


def _tokenizer(folder: Path, part: str, cls_name: str):
    """The folder's own tokenizer where its files are there, else a small one of the same kind (the pipelines pad or
    template every prompt to the text length, so the text encoder sees as many tokens)."""
    from transformers import AutoTokenizer

    try:
        return AutoTokenizer.from_pretrained(folder / part)
    except Exception:
        pass
    if "Qwen" in cls_name:
        from ..tiny_hunyuan15 import build_qwen_tokenizer

        return build_qwen_tokenizer()
    if "Gemma" in cls_name:
        from ..tiny_ltx2 import build_gemma_tokenizer

        tok = build_gemma_tokenizer()
        tok.model_max_length = int(1e30)  # the released one's: the pipeline's own length applies
        return tok
    from ..tiny import build_tokenizer

    return build_tokenizer()


def _is_model(cls_name: str) -> bool:
    return not any(k in cls_name for k in ("Tokenizer", "Scheduler", "Processor"))


def build_component(folder: Path, part: str, library: str, cls_name: str, init: bool = False):
    """One component from its config: a model's weights left without values (the fake mode's), or with `init`
    its own random initialisation (benchmarks/scale_models.py)."""
    import diffusers
    import transformers

    path = folder / part
    if "Tokenizer" in cls_name:
        return _tokenizer(folder, part, cls_name)
    if library in ("diffusers", "transformers"):
        lib = diffusers if library == "diffusers" else transformers
    else:  # a class of one pipeline's own module (diffusers.pipelines.ltx2's connectors)
        import importlib

        lib = importlib.import_module(f"diffusers.pipelines.{library}")
    cls = getattr(lib, cls_name, None)
    if cls is None:
        raise InputError(f"{path}: {library} has no class {cls_name} (model_index.json)")
    if "Scheduler" in cls_name:
        return cls.from_config(cls.load_config(path))
    if "Processor" in cls_name:  # the folder's preprocessing (its picture size), else the class's default
        return cls.from_pretrained(path) if (path / "preprocessor_config.json").is_file() else cls()
    if library != "transformers":
        return cls.from_config(cls.load_config(path))
    config = transformers.AutoConfig.from_pretrained(path)
    from transformers.initialization import no_init_weights

    if init:
        return cls(config)
    with no_init_weights():  # fake weights need no values (SigLIP's and Gemma 3's initialisers read some)
        model = cls(config)
    if hasattr(model, "tie_weights"):  # skipped with the initialisation: a tied embedding is one tensor, as loaded
        model.tie_weights()
    return model


def fake_pipeline(folder: Path, pipeline_cls: type, dtype: torch.dtype, mode: FakeTensorMode):
    """`pipeline_cls` with every component of `folder`'s model_index.json, its models' weights fake in `dtype`."""
    index = json.loads((folder / "model_index.json").read_text())
    parts, extra = {}, {}
    for part, spec in index.items():  # schedulers, tokenizers, processors: real objects, built outside the fake mode
        if part.startswith("_"):
            continue
        if not isinstance(spec, list):
            extra[part] = spec
        elif None in spec[:2]:
            parts[part] = None
        elif not _is_model(spec[1]):
            parts[part] = build_component(folder, part, spec[0], spec[1])
    previous = torch.get_default_dtype()
    try:
        with mode:
            torch.set_default_dtype(dtype if dtype.is_floating_point else torch.float32)  # as from_pretrained's dtype=
            for part, spec in index.items():
                if part not in parts and part not in extra and not part.startswith("_"):
                    parts[part] = build_component(folder, part, spec[0], spec[1])
    finally:
        torch.set_default_dtype(previous)
    pipe = pipeline_cls(**parts, **{k: v for k, v in extra.items() if k in _init_names(pipeline_cls)})
    for part in parts.values():
        if isinstance(part, torch.nn.Module):
            part.eval()
    return pipe


def _init_names(cls: type) -> set[str]:
    import inspect

    return set(inspect.signature(cls.__init__).parameters)


def fake_backbone(model: Any, adapter: type, dtype: torch.dtype, runtime: Any, mode: FakeTensorMode):
    """The adapter around `model`'s pipeline with fake weights (`model`: a ResolvedModel whose folder holds at
    least its config files)."""
    from ..backbones.loading import quiet_libraries

    quiet_libraries()
    pipe = fake_pipeline(model.folder, adapter.pipeline_type(), dtype, mode)
    with mode:
        return adapter.from_pipeline(model, pipe, dtype, runtime, "cpu")
