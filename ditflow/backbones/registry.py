"""The model families ditflow knows, their named presets, and a --model resolved once into `ResolvedModel`.

    model = resolve_model("5b")   # its folder, adapter class, defaults, identity, config: read once
    model.geometry(24, 480, 720)  # size errors from its config files, before any weights load
    load_backbone(model, "bfloat16", runtime)

Adding a family is one adapter module (a `Backbone` subclass) listed in `ADAPTERS`.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from functools import cached_property
from pathlib import Path
from typing import Any

from ..checks import check_rules, flag
from ..config import ExtractConfig, GuideConfig
from ..errors import InputError, ModelUnavailable
from .base import Backbone, Geometry
from .cogvideox import CogVideoXBackbone
from .cogvideox_i2v import CogVideoXI2VBackbone
from .preset import MODEL_DEFAULTS, ModelPreset
from .digests import weights_digest
from .hunyuan15 import HunyuanVideo15Backbone
from .hunyuan15_i2v import HunyuanVideo15I2VBackbone
from .ltx2 import LTX2Backbone
from .ltx2_i2v import LTX2I2VBackbone
from .source import find_folder, pipeline_class, read_config, read_json_object, toy_vocabulary
from .wan import WanBackbone
from .wan_i2v import WanI2VBackbone

ADAPTERS: tuple[type[Backbone], ...] = (CogVideoXBackbone, WanBackbone, WanI2VBackbone, CogVideoXI2VBackbone,
                                         HunyuanVideo15Backbone, HunyuanVideo15I2VBackbone, LTX2Backbone,
                                         LTX2I2VBackbone)
PRESETS: dict[str, ModelPreset] = {k: v for a in ADAPTERS for k, v in a.presets.items()}
ALIASES: dict[str, str] = {k: v for a in ADAPTERS for k, v in a.aliases.items()}
# Folders that come with ditflow: (where, how to make it when it is missing)
SHIPPED: dict[str, tuple[Path, str]] = {
    "toy": (Path(__file__).resolve().parents[2] / "assets" / "toy-cogvideox", "run `make toy-model`"),
    "toy-i2v": (Path(__file__).resolve().parents[2] / "assets" / "toy-cogvideox-i2v", "run `make toy-i2v`"),
}


def model_names() -> tuple[str, ...]:
    """The names --model takes besides ids and folders."""
    return (*PRESETS, *SHIPPED)


def model_help() -> str:
    """--model's help, from the registry."""
    families = " or ".join(dict.fromkeys(a.family for a in ADAPTERS))  # a family's I2V adapter: named once
    return f"{', '.join(model_names())}, a Hugging Face id or a local diffusers folder ({families})."


def adapter_for(folder: Path) -> type[Backbone]:
    """The adapter of a diffusers folder, by the pipeline class its model_index.json names."""
    name = pipeline_class(folder)
    for adapter in ADAPTERS:
        if adapter.pipeline_class == name:
            return adapter
    raise InputError(f"{folder} holds a {name}, which ditflow does not support; supported pipelines: "
                     f"{', '.join(a.pipeline_class for a in ADAPTERS)}")


def family_settings() -> dict[str, type[Backbone]]:
    """Each family's own guide settings by name -> the (first) adapter that declares it."""
    out: dict[str, type[Backbone]] = {}
    for a in ADAPTERS:
        for f in fields(a.settings) if a.settings is not None else ():
            out.setdefault(f.name, a)
    return out


@dataclass(frozen=True)
class ResolvedModel:
    """A --model (preset, hub id or folder) resolved once; stages, batch workers and the loader pass it along.
    Picklable: it travels to worker processes."""

    arg: str  # as given: what artifacts record as model_arg
    name: str  # the preset's name for an alias, else `arg`
    source: str  # the folder or hub id its files come from
    adapter: type[Backbone]

    @cached_property
    def folder(self) -> Path:
        """Where its files are (a named preset's are looked up only when needed: a cache hit needs none)."""
        return find_folder(self.arg, self.source, ", ".join(model_names()))

    @cached_property
    def preset(self) -> ModelPreset:
        """A named preset, or the folder's own defaults (its adapter's), then its ditflow.json."""
        if self.name in PRESETS:
            return PRESETS[self.name]
        return self.adapter.folder_preset(self.name, self.folder, read_json_object(self.folder / MODEL_DEFAULTS))

    @cached_property
    def identity(self) -> dict[str, Any]:
        """What identifies the weights; goes into every artifact hash."""
        return {"name": self.name, "weights": weights_digest(self.folder)}

    @cached_property
    def transformer_config(self) -> dict[str, Any]:
        cfg = read_config(self.folder, "transformer")
        if not cfg:
            raise InputError(f"{self.folder} has no transformer/config.json: is it a diffusers video pipeline?")
        return cfg

    @property
    def num_blocks(self) -> int:
        return int(self.transformer_config.get("num_layers", 30))

    @cached_property
    def vocabulary(self) -> frozenset[str] | None:
        """A toy model's words (None: any prompt, or no files to read yet: loading will say what is missing)."""
        try:
            return toy_vocabulary(self.folder)
        except ModelUnavailable:
            return None

    def run_adapter(self, image: bool) -> type[Backbone]:
        """The adapter of a run that animates an image (`image`) or not: an image-to-video model needs one, a
        text-to-video model refuses one unless it does both (TI2V-5B); before any weights load."""
        if not image:
            if self.adapter.needs_image:
                raise InputError(f"{self.arg} is an image-to-video model ({self.adapter.pipeline_class}): give --image "
                                 f"FILE, the picture to animate")
            return self.adapter
        name = self.adapter.image_pipeline(self.folder)
        got = next((a for a in ADAPTERS if a.pipeline_class == name), None)
        if got is None:
            i2v = ", ".join(n for a in ADAPTERS if a.needs_image for n in a.presets)
            raise InputError(f"--image: {self.arg} is a text-to-video model ({self.adapter.pipeline_class}); animating an "
                             f"image needs an image-to-video model ({i2v} or a folder of one)")
        return got

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        """The geometry of a run from the config files alone: size errors before any weights load."""
        return self.adapter.config_geometry(self.folder, frames, height, width)

    def check_blocks(self, blocks, what: str) -> None:
        bad = [b for b in blocks if not 0 <= b < self.num_blocks]
        if bad:
            raise InputError(f"{what} {bad} out of range: the model has {self.num_blocks} transformer blocks "
                             f"(0..{self.num_blocks - 1})")

    def extract_config(self, cfg: ExtractConfig) -> ExtractConfig:
        """`cfg` checked, with the model's defaults filled in and checked by the same rules."""
        cfg.validate()
        resolved = cfg.resolve(self.preset)
        resolved.validate()  # the model's defaults (a folder's ditflow.json) obey the same rules
        return resolved

    def guide_config(self, cfg: GuideConfig) -> GuideConfig:
        """`cfg` checked (its family settings: this family's, by the adapter's rules), with the model's
        defaults filled in and checked again; all before any weights load."""
        cfg.validate()
        owners = family_settings()
        for name in cfg.family:  # another family's setting is an error, never ignored
            if name not in owners or owners[name].family != self.adapter.family:
                whose = f"a {owners[name].family} setting" if name in owners else "not a setting of any model family"
                raise InputError(f"{flag(name)} is {whose}; {self.arg} is a {self.adapter.family} model")
        self.adapter.check_guide(cfg)
        from ..methods import check_method

        method = check_method(cfg)
        method.check(cfg, self)
        resolved = cfg.resolve(self.preset, method)
        resolved.validate()
        resolved.check_steps()
        if self.adapter.settings is not None:
            check_rules(self.adapter.settings(**resolved.family))
        if method.settings is not None:
            check_rules(method.settings(**resolved.method_settings))
        self.adapter.check_resolved(resolved, self)
        return resolved


def resolve_model(model: "str | ResolvedModel") -> ResolvedModel:
    """`model` resolved: a named preset or shipped folder, an alias, a local folder or a cached hub id."""
    if isinstance(model, ResolvedModel):
        return model
    if not model:
        raise InputError("--model must not be empty")
    name = ALIASES.get(model, model)
    if name in PRESETS:
        return ResolvedModel(model, name, PRESETS[name].source, next(a for a in ADAPTERS if name in a.presets))
    source = model
    if name in SHIPPED:
        shipped, how = SHIPPED[name]
        if not (shipped / "model_index.json").is_file():
            raise ModelUnavailable(f"the {name} model is not in {shipped}; {how} or pass --model with a model id or folder")
        source = str(shipped)
    folder = find_folder(model, source, ", ".join(model_names()))
    resolved = ResolvedModel(model, name, source, adapter_for(folder))
    resolved.__dict__["folder"] = folder  # found already (cached_property's slot)
    return resolved
