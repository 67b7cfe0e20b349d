"""What every backbone adapter provides, and the few things they share (geometry, loading options).

An adapter wraps one model family's diffusers pipeline. The sampler, guides, losses and stages talk to it
only through `Backbone`'s methods; latents, text embeddings and positions are opaque to them except for
the shapes written below. Taps (processors.py) see q/k/v as [B, H, S, D] with the video tokens' slice of S.
"""
from __future__ import annotations

from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

import numpy as np

from ..checks import check_rules
from ..errors import InputError

if TYPE_CHECKING:
    import torch

    from ..config import GuideConfig, RuntimeOptions
    from .preset import ModelPreset
    from ..processors import Tap


@dataclass(frozen=True)
class Geometry:
    """Sizes of one video through the model: pixels, latent and patch grid.

    `latent_frames` is what the transformer takes: the VAE's frames plus `pad_frames` padding frames in front
    (CogVideoX 1.5 pads to a multiple of its temporal patch `patch_t`, as its pipeline does); the decoded video
    drops them. A token spans `patch_t` latent frames, so the grid has latent_frames // patch_t token frames.
    """

    frames: int  # pixel frames
    height: int
    width: int
    latent_frames: int  # padding included
    latent_height: int
    latent_width: int
    patch: int  # spatial patch size
    patch_t: int = 1  # temporal patch size
    pad_frames: int = 0  # latent frames of padding in front

    @property
    def grid(self) -> tuple[int, int, int]:
        """(token frames, h, w) of the video tokens, in their order along the sequence."""
        return (self.latent_frames // self.patch_t, self.latent_height // self.patch, self.latent_width // self.patch)


def geometry_of(patch: int, spatial: int, temporal: int, frames: int, height: int, width: int,
                patch_t: int = 1) -> Geometry:
    """The geometry of `frames` x `height` x `width` pixels through a VAE (`spatial`, `temporal` compression)
    and a patch embedding (`patch` x `patch` pixels of latent, `patch_t` latent frames)."""
    unit = spatial * patch
    if height % unit or width % unit:
        raise InputError(f"size {height}x{width} is not divisible by {unit} (VAE factor {spatial} x patch {patch}); "
                         f"pick a height and width that are multiples of {unit}")
    if frames < 1:
        raise InputError(f"need at least one frame, got {frames}")
    encoded = (frames - 1) // temporal + 1
    pad = -encoded % patch_t
    return Geometry(frames, height, width, encoded + pad, height // spatial, width // spatial, patch, patch_t, pad)


class Backbone:
    """One model family's pipeline on a device, in a dtype, with the memory options applied.

    Subclasses set `pipeline_class` (the `_class_name` of model_index.json they load), `family` (its name in
    messages and help), `presets`, `aliases` and `settings` (a dataclass of the guide settings only this family
    understands, with their rules, or None), and implement the methods below. Attributes every adapter has:
    model (the resolved --model), pipe, dtype, device, words (a toy model's vocabulary or None).
    """

    pipeline_class: ClassVar[str]
    family: ClassVar[str]
    presets: ClassVar[dict[str, "ModelPreset"]] = {}
    aliases: ClassVar[dict[str, str]] = {}
    settings: ClassVar[type | None] = None

    model: Any  # the registry's ResolvedModel (not imported: the registry imports this module)
    pipe: Any
    dtype: "torch.dtype"
    device: "torch.device"
    words: frozenset[str] | None = None
    run: Mapping[str, Any] = {}  # this run's family settings (resolved), set by `start_run`

    # -- before loading: config files only -----------------------------------------------------------
    @classmethod
    def config_geometry(cls, folder, frames: int, height: int, width: int) -> Geometry:
        """The geometry from the folder's config files: size errors before any weights load."""
        raise NotImplementedError

    @classmethod
    def folder_preset(cls, model: str, folder, defaults: dict[str, Any] | None) -> "ModelPreset":
        """Defaults for a folder without a named preset (its own pipeline's), then its ditflow.json."""
        raise NotImplementedError

    @classmethod
    def config_uses_rope(cls, transformer_config: dict) -> bool:
        """Whether a transformer of this config takes RoPE tables (from its config file, before loading)."""
        return True

    @classmethod
    def setting_names(cls) -> tuple[str, ...]:
        return tuple(f.name for f in fields(cls.settings)) if cls.settings is not None else ()

    @classmethod
    def check_guide(cls, cfg: "GuideConfig") -> None:
        """The family's rules on a whole `GuideConfig` (its `family` holds only this family's names, checked
        by the registry), before any weights load. Subclasses add rules that span settings."""
        if cls.settings is not None:
            check_rules(cls.settings(**cfg.family))

    @classmethod
    def check_resolved(cls, cfg: "GuideConfig", model: Any) -> None:
        """Rules on a resolved `GuideConfig` that need the model's files (`model`: the ResolvedModel), before any
        weights load."""

    # -- the pipeline on the device ------------------------------------------------------------------
    @classmethod
    def pipeline_type(cls) -> type:
        """The diffusers pipeline class (imported only when a model loads)."""
        raise NotImplementedError

    def check_pipeline(self, pipe) -> None:
        """Refuse a loaded pipeline the adapter cannot drive (its config said nothing against it)."""

    def __init__(self, model: Any, dtype: str, runtime: "RuntimeOptions"):
        """The model's pipeline, loaded in `dtype` and placed on its device; `start_run` readies each run."""
        import torch

        from ..config import DTYPES
        from ..errors import ModelUnavailable
        from .loading import check_loaded, quiet_libraries
        from .source import check_components

        check_components(model.folder)
        quiet_libraries()
        torch_dtype = getattr(torch, DTYPES.get(dtype, dtype))
        try:
            pipe = self.pipeline_type().from_pretrained(model.folder, dtype=torch_dtype)
        except Exception as e:
            raise ModelUnavailable(f"cannot load {self.family} pipeline from {model.folder}: {str(e).splitlines()[0]}")
        check_loaded(pipe, model.folder)
        self._adopt(model, pipe, torch_dtype, runtime, runtime.device or ("cuda" if torch.cuda.is_available() else "cpu"))

    @classmethod
    def from_pipeline(cls, model: Any, pipe, dtype: "torch.dtype", runtime: "RuntimeOptions", device: str = "cpu"):
        """An adapter around a pipeline built elsewhere (the planner's, on fake tensors): as loaded, without files."""
        self = cls.__new__(cls)
        self._adopt(model, pipe, dtype, runtime, device)
        return self

    def _adopt(self, model: Any, pipe, dtype: "torch.dtype", runtime: "RuntimeOptions", device: str) -> None:
        self.model, self.words, self.dtype = model, model.vocabulary, dtype
        self.check_pipeline(pipe)
        self._place(pipe, runtime, device)
        self._rope: dict[tuple[int, int, int], Any] = {}

    def _place(self, pipe, runtime: "RuntimeOptions", device: str) -> None:
        """Device placement, memory options, frozen weights (`placement.place_pipeline`)."""
        import torch

        from .placement import place_pipeline

        self.offloaded, self.text_on_cpu = place_pipeline(pipe, runtime, device, self.text_parts)
        self.pipe, self.device = pipe, torch.device(device)
        self._own_scheduler = pipe.scheduler  # the folder's, as loaded: each run's is made from it

    def start_run(self, family: Mapping[str, Any], keeps_latent: bool = False) -> None:
        """Ready the next run: its family settings and a fresh scheduler made from the folder's own. The
        scheduler depends on the run (its settings, whether it optimises the latent), the weights do not, so a
        loaded pipeline is reused across runs (`backbones.loaded`) with no state carried from one to the next."""
        self.run = dict(family)
        self.pipe.scheduler = self.scheduler_for(self._own_scheduler, keeps_latent)

    def scheduler_for(self, own, keeps_latent: bool):
        """The scheduler a run uses (`self.run` holds its settings), built from the folder's own `own` (never
        `own` itself: it is kept)."""
        raise NotImplementedError

    def set_checkpointing(self, on: bool) -> bool:
        """Gradient checkpointing on or off on every expert (`guide` decides it, from the plan where memory is known)."""
        for expert in self.experts:
            if on:
                expert.enable_gradient_checkpointing()
            else:
                expert.disable_gradient_checkpointing()
        return on

    @property
    def transformer(self):
        """The transformer the guidance runs on (the high-noise expert of a two-expert model)."""
        return self.pipe.transformer

    @property
    def experts(self) -> tuple:
        """Every transformer the sampler may call, the guided one first (most models have one)."""
        return (self.pipe.transformer,)

    def expert_for(self, t) -> int:
        """Index into `experts` of the transformer that predicts at timestep t."""
        return 0

    def blocks_of(self, expert):
        """A transformer's blocks, in order (a ModuleList)."""
        raise NotImplementedError

    def after_blocks_of(self, expert):
        """The module that runs right after a transformer's last block (where a forward is stopped)."""
        raise NotImplementedError

    @property
    def scheduler(self):
        return self.pipe.scheduler

    @property
    def blocks(self):
        """The guided transformer's blocks (every expert has the same count)."""
        return self.blocks_of(self.transformer)

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    def block_video(self, out) -> "torch.Tensor":
        """A block's output -> its video tokens of the last batch row [N, C]."""
        raise NotImplementedError

    def geometry(self, frames: int, height: int, width: int) -> Geometry:
        raise NotImplementedError

    # -- text, pixels, latents -----------------------------------------------------------------------
    offloaded = False  # diffusers' model offload moves each submodel itself
    text_on_cpu = False  # the text encoder stays on the CPU and encodes there
    # the components that encode prompts: released after encoding, kept on the CPU with `text_on_cpu`
    text_parts: ClassVar[tuple[str, ...]] = ("text_encoder",)
    _text_released = False

    @property
    def text_device(self) -> "torch.device":
        """Where prompts are encoded."""
        import torch

        return torch.device("cpu") if self.text_on_cpu else self.device

    def release_text_encoder(self) -> bool:
        """Move the text encoders (`text_parts`) off the accelerator once a run's prompts are encoded (T5-XXL weighs
        9.5 GB in bf16, UMT5-XXL 11 GB: nothing else needs them while sampling); the next `encode_prompt` brings them
        back."""
        if self.offloaded or self.text_on_cpu or self.device.type == "cpu":
            return False
        import torch

        for name in self.text_parts:
            self.pipe.components[name].to("cpu")
        self._text_released = True
        if self.device.type == "cuda":
            torch.cuda.empty_cache()
        return True

    def _text_encoder_ready(self) -> None:
        if self._text_released and not self.text_on_cpu:
            for name in self.text_parts:
                self.pipe.components[name].to(self.device)
            self._text_released = False

    @property
    def text_length(self) -> int:
        """Tokens the pipeline pads or cuts a prompt to."""
        raise NotImplementedError

    def encode_prompt(self, prompt: str) -> "torch.Tensor":
        """[1, text_length, D] text embedding, as the pipeline feeds it to the transformer (a toy model's prompt
        checked against its vocabulary first)."""
        import torch

        from .source import check_toy_prompt

        if self.words is not None:
            prompt = check_toy_prompt(prompt, self.words, self.model.arg)
        self._text_encoder_ready()
        with torch.no_grad():
            emb, _ = self.pipe.encode_prompt(prompt, do_classifier_free_guidance=False, max_sequence_length=self.text_length,
                                             device=self.text_device, dtype=self.dtype)
        return emb.to(self.device)

    def encode_video(self, frames: np.ndarray) -> "torch.Tensor":
        """uint8 [F, H, W, 3] -> latent [1, ...] in the layout the transformer takes (the VAE's mean, padded to
        the temporal patch as `geometry` says)."""
        raise NotImplementedError

    frame_axis: ClassVar[int] = 1  # of the transformer's latent: CogVideoX [B, F, C, h, w]; Wan's is 2

    def latent_frames(self, latent: "torch.Tensor") -> int:
        """How many latent frames an encoded latent holds."""
        return int(latent.shape[self.frame_axis])

    def decode(self, latent: "torch.Tensor", geo: Geometry | None = None) -> np.ndarray:
        """Latent -> uint8 frames [F, H, W, 3], without the padding frames of `geo` (None: no padding)."""
        raise NotImplementedError

    # -- image-to-video ------------------------------------------------------------------------------
    needs_image: ClassVar[bool] = False  # an image-to-video pipeline: every run animates an image

    @classmethod
    def image_pipeline(cls, folder) -> str | None:
        """The pipeline class that animates an image with this folder's weights (the registry maps it to its
        adapter): its own for an image-to-video model, another for a model that does both (Wan 2.2 TI2V-5B),
        None for a text-to-video one."""
        return cls.pipeline_class if cls.needs_image else None

    def condition(self, image: np.ndarray, geo: Geometry, generator) -> Any:
        """What the transformer is conditioned on for uint8 [H, W, 3] `image` (called before `initial_noise`,
        with the same generator, as the pipelines draw from it)."""
        raise NotImplementedError

    def guided_latent(self, var: "torch.Tensor") -> "torch.Tensor":
        """What a latent-mode guide feeds forward from its variable: on an image-to-video model latent frame 0
        (the picture's) takes no gradient, so Adam never moves it; on the toy I2V model that keeps frame 0 closer
        to the picture and the path closer to the reference's than optimising it (docs/toy-model.md)."""
        if not self.needs_image:
            return var
        import torch

        n = var.shape[self.frame_axis]
        return torch.cat([var.narrow(self.frame_axis, 0, 1).detach(), var.narrow(self.frame_axis, 1, n - 1)],
                         dim=self.frame_axis)

    def final_latent(self, x: "torch.Tensor", cond: Any) -> "torch.Tensor":
        """The latent to decode after the last step (a model that pastes its image back does so here)."""
        return x

    # -- sampling ------------------------------------------------------------------------------------
    def timesteps(self, steps: int) -> "torch.Tensor":
        """Set the scheduler for `steps` steps; its timesteps, first (noisiest) first."""
        raise NotImplementedError

    def initial_noise(self, geo: Geometry, generator) -> "torch.Tensor":
        """The pipeline's initial latent for this seed (its prepare_latents)."""
        raise NotImplementedError

    def add_noise(self, x0: "torch.Tensor", noise: "torch.Tensor", t) -> "torch.Tensor":
        """x0 noised to timestep t, ready for the transformer."""
        raise NotImplementedError

    def sampler_state(self, generator=None) -> Any:
        """The scheduler's per-run state that `step` threads through (a previous x0, a history)."""
        return None

    def step(self, v: "torch.Tensor", t, x: "torch.Tensor", state: Any) -> tuple["torch.Tensor", "torch.Tensor | None", Any]:
        """One scheduler step: (x_next, predicted x0 or None, state)."""
        raise NotImplementedError

    def cfg_scale(self, cfg: float, steps: int, t) -> float:
        """The CFG scale at timestep t of a `steps`-step run (a family may schedule it)."""
        return cfg

    def x0_coefficients(self, t) -> tuple[float, float]:
        """(a, b) with x̂₀ = a·x_t − b·prediction at timestep t, in the family's own parameterisation (methods
        reason about x̂₀ through it, ditflow.methods.common, and never name a family)."""
        raise NotImplementedError

    # -- the transformer -----------------------------------------------------------------------------
    def forward(self, x: "torch.Tensor", t, text: "torch.Tensor", geo: Geometry, positions=None,
                expert: int | None = None, cond: Any = None) -> "torch.Tensor":
        """The transformer's prediction for latents x [B, ...] at timestep t (0-d) with text [B, L, D];
        `positions` (from `positions()`) replace the model's own; `expert`: this one of `experts` instead of
        the one `expert_for(t)` picks (extraction runs the guided expert at any timestep); `cond`: an
        image-to-video model's `condition` (x is only the noisy latent: the condition is never optimised)."""
        raise NotImplementedError

    def predict(self, x: "torch.Tensor", t, text: "torch.Tensor", scale: float | None, geo: Geometry,
                positions=None, cond: Any = None) -> "torch.Tensor":
        """The (CFG-combined, float32) prediction; text is [2, L, D] (negative, positive); scale None: no CFG
        (the positive prompt only)."""
        raise NotImplementedError

    def install(self, taps: Mapping[int, "Tap"]) -> AbstractContextManager:
        """Our attention processor at every block's self-attention, calling the block's tap (a plain `Tap`
        where none is given); the old processors come back on exit."""
        raise NotImplementedError

    # -- what emb mode optimises ---------------------------------------------------------------------
    def emb_variable(self, geo: Geometry, angles: bool) -> "torch.Tensor":
        """The variable emb mode starts from (float32), e.g. RoPE tables or their angles."""
        raise NotImplementedError

    def emb_value(self, var: "torch.Tensor", angles: bool) -> "torch.Tensor":
        """What the model takes (and `inject` replays) from the optimised variable."""
        return var

    def positions(self, emb: "torch.Tensor") -> Any:
        """An embedding (`emb_value`) as `forward` takes it."""
        return emb
