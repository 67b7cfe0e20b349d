"""One frozen config per stage, with the checks of its settings; nothing here knows a model family.

A field left at None means "the model's default" (a `backbones.ModelPreset`); `resolve()` fills it in once the
model is known, so the resolved config is what gets hashed and recorded. A family's own settings (declared by its
adapter in ditflow/backbones/) travel in `GuideConfig.family`, a method's own (ditflow/methods/) in
`GuideConfig.method_settings`. Each setting's help, range and
choices are written once, in its field's metadata (`rule`): the CLI, its validation and docs/cli.md read them.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field, fields, replace
from typing import Any

from .checks import MAX_SEED, check_rules, rule
from .errors import InputError

DTYPES = {"float32": "float32", "fp32": "float32", "float16": "float16", "fp16": "float16",
          "bfloat16": "bfloat16", "bf16": "bfloat16"}
MODES = ("latent", "emb")
FAST_SETTINGS = ("amf_window", "amf_frame_distance", "grad_reuse")
# --fast on a model without measured values: FastVMT's (a 21x21 key window, frame pairs at most 4 latent frames
# apart, a full backward every 3rd Adam step), not measured on these models; the toy model's are measured
# (docs/performance.md, "Fast mode").
FAST_DEFAULTS = {"amf_window": 10, "amf_frame_distance": 4, "grad_reuse": 3}
CROPS = ("none", "center")  # how extract fits a video to the model's aspect
# Upper bounds of settings that are meaningless (and overflow to NaN) when huge, generous for real use:
MAX_CFG = 100  # ComfyUI's KSampler limit; the pipelines use 5-7 (the toy model 2.5)
MAX_LR = 1  # Adam moves each element about lr per step: 1 is a whole std of the latent (defaults 0.002-0.04)
MAX_TEMPERATURE = 100  # multiplies the logits: at 100 the softmax is already an argmax (default 2)
MAX_STEPS = 1000  # the schedulers' training timesteps: DDIM and DPM refuse more steps after loading


def guidance_steps(steps: int, guidance_range: tuple[int, int]) -> range:
    """Step indices with guidance: the paper's range (50, 40) of 50 steps is steps 0..9."""
    hi, lo = guidance_range
    return range(max(steps - hi, 0), max(steps - lo, 0))


TEXT_ENCODER_PLACES = ("auto", "device", "cpu")
MAX_MEMORY_GIB = 4096  # a bound for typos, not a machine


@dataclass(frozen=True)
class RuntimeOptions:
    """How to run, not what to compute: never part of an artifact's hash."""

    device: str | None = field(default=None, metadata=rule("cuda, cuda:1, cpu, mps... Default: cuda if available."))
    cpu_offload: bool | None = field(default=None, metadata=rule(
        "Keep idle submodels on the CPU, each moved to the GPU while it runs (saves GPU memory, costs time). [default: "
        "only where the plan says the run would not fit --max-memory otherwise]"))
    text_encoder: str = field(default="auto", metadata=rule(
        "Where the text encoder runs: on the device (moved off once the prompts are encoded), on the cpu (slower; "
        "it never takes GPU memory: T5-XXL is 9.5 GB in bf16, UMT5-XXL 11 GB), or auto: the device unless the plan "
        "says the run would not fit --max-memory there.", choices=TEXT_ENCODER_PLACES))
    vae_slicing: bool = True
    vae_tiling: bool | None = field(default=None, metadata=rule(
        "Decode the video in overlapping tiles (far less memory; seams blended, so pixels differ slightly). "
        "[default: only where the plan says the run would not fit --max-memory otherwise]"))
    gradient_checkpointing: bool | None = field(default=None, metadata=rule(
        "Recompute block activations in backward instead of keeping them (saves memory, costs time). [default: only "
        "where the plan says the run would not fit --max-memory otherwise; off where no limit is known]"))
    max_memory: float | None = field(default=None, metadata=rule(
        "GPU memory the run may use, in GiB, above 0 and at most 4096: guide picks checkpointing, VAE tiling, "
        "text-encoder placement and offload to fit it and refuses a run that cannot fit, before loading (ditflow plan "
        "shows the estimate). [default: the GPU's free memory; no limit on a CPU]", gt=0, le=MAX_MEMORY_GIB))
    quiet: bool = field(default=False, metadata=rule("No progress bars or logs on stderr."))

    def validate(self) -> None:
        from .checks import check_device

        check_rules(self)
        check_device(self.device)


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one AMF extraction. None: the model's default."""

    model: str = field(default="5b", metadata=rule("A preset name, a Hugging Face id or a local diffusers folder."))
    frames: int | None = field(default=None, metadata=rule("Frames to take from the start. [default: the model's, 24 for 2b/5b, 17 for the toy model]", ge=1))
    height: int | None = field(default=None, metadata=rule("Resize height. [default: the model's, 480 for 2b/5b, 64 for the toy model]", ge=1))
    width: int | None = field(default=None, metadata=rule("Resize width. [default: the model's, 720 for 2b/5b, 64 for the toy model]", ge=1))
    blocks: tuple[int, ...] | None = field(default=None, metadata=rule("Guidance blocks, comma-separated. [default: 20 for 5b, 15 for 2b, 6,7 for the toy model]", ge=0))
    temperature: float = field(default=2.0, metadata=rule(
        f"AMF softmax temperature, multiplying the attention logits: above 0, at most {MAX_TEMPERATURE} (the guide "
        "uses the artifact's).", gt=0, le=MAX_TEMPERATURE))
    source_prompt: str = field(default="", metadata=rule("Text the reference is encoded with (the paper: none)."))
    moft_fraction: float = field(default=0.04, metadata=rule("Share of channels MOFT keeps as motion channels: above 0, at most 1.", gt=0, le=1))
    dtype: str | None = field(default=None, metadata=rule("Weights' dtype. [default: the model's]", choices=tuple(DTYPES)))
    frame_range: tuple[int, int, int] | None = field(default=None, metadata=rule(
        "START,END,STEP: the frames range(START, END, STEP) of the video, END exclusive as in Python (0,48,2: 24 "
        "frames, as the DiTFlow benchmark takes them), then the first --frames of them. [default: from the first frame]",
        ge=0))
    timestep: int | None = field(default=None, metadata=rule(
        "Noise the reference to this timestep before the extraction forward (0: the clean latent, the paper). "
        "[default: the model's: 0; 500 for the Wan 2.2 A14B models, whose guided expert only knows noisy inputs]", ge=0, le=999))
    seed: int = field(default=1, metadata=rule("Seed of the noise --timestep adds.", ge=0, le=MAX_SEED))
    crop: str = field(default="none", metadata=rule(
        "none: squash the video to the model's height and width; center: first crop its largest centred region of "
        "that aspect. Either way a note on stderr says what changed.", choices=CROPS))

    def resolve(self, preset: Any) -> "ExtractConfig":
        def pick(name, preset_name=None):
            value = getattr(self, name)
            return getattr(preset, preset_name or name) if value is None else value

        return replace(self, frames=pick("frames"), height=pick("height"), width=pick("width"),
                       blocks=tuple(pick("blocks", "guidance_blocks")), dtype=pick("dtype"),
                       timestep=pick("timestep", "extract_timestep"))

    def validate(self) -> None:
        if not self.model:
            raise InputError("--model must not be empty")
        if self.blocks is not None and not self.blocks:
            raise InputError("--blocks needs at least one block index")
        check_rules(self)
        if self.frame_range is not None:
            start, end, step = self.frame_range
            if not (step >= 1 and end > start):
                raise InputError(f"--frame-range START,END,STEP needs END > START >= 0 and STEP >= 1, got {start},{end},{step}")


@dataclass(frozen=True)
class GuideConfig:
    """Settings of one guided generation. None: the model's default (`ModelPreset`: the paper's for 5B/2B,
    the measured ones a model folder's ditflow.json gives)."""

    prompt: str = field(default="", metadata=rule("What to generate."))
    negative_prompt: str | None = field(default=None, metadata=rule("Negative prompt. [default: the paper's for 2b/5b; none for other folders]"))
    opt_mode: str | None = field(default=None, metadata=rule(
        "latent: optimise the noisy latent; emb: the positional embeddings (RoPE tables, or sincos for 2b). [default: latent]",
        choices=MODES))
    loss: str = field(default="flow", metadata=rule("flow (AMF, DiTFlow), moft or smm.", choices=("flow", "moft", "smm")))
    opt_steps: int | None = field(default=None, metadata=rule("Adam steps per guidance step. [default: 5]", ge=1))
    lr: tuple[float, float] | None = field(default=None, metadata=rule(
        f"Learning rate at the start,end of the guidance range, each above 0 and at most {MAX_LR}. [default: the "
        "model's for the mode: 0.002,0.001 for 5b/2b; the toy model: 0.015,0.005 in latent mode, 0.04,0.015 in emb "
        "mode]", gt=0, le=MAX_LR))
    guidance_range: tuple[int, int] | None = field(default=None, metadata=rule(
        f"HI,LO: guide from step HI to LO counted from the end, each at most {MAX_STEPS} (as --steps). [default: "
        "50,40; the toy model: 35,15]", ge=0, le=MAX_STEPS))
    guidance: bool = field(default=True, metadata=rule("Optimise at the guidance steps (off: the paper's injection-only and backbone runs)."))
    injection: bool | None = field(default=None, metadata=rule("KV injection from the reference. [default: on]"))
    injection_blocks: tuple[int, ...] = field(default=(0,), metadata=rule("Blocks with KV injection.", ge=0))
    steps: int | None = field(default=None, metadata=rule(
        f"Denoising steps, at most {MAX_STEPS} (the schedulers' training timesteps). [default: 50]", ge=1, le=MAX_STEPS))
    cfg: float | None = field(default=None, metadata=rule(
        f"Classifier-free guidance scale, from 1 (off) to {MAX_CFG}. [default: 7 for 2b/5b, 6 (the pipeline's) for "
        "other folders]", ge=1, le=MAX_CFG))
    seed: int = field(default=1, metadata=rule("Noise seed.", ge=0, le=MAX_SEED))
    threshold_loss: bool = field(default=True, metadata=rule("AMF loss only where the reference moves (the paper's)."))
    loss_weighting: str | None = field(default=None, metadata=rule(
        "AMF loss: none (the paper), confidence (weight each entry by how sharply the reference attends there; flat "
        "background counts little) or mutual (confidence times the generated video's own attention confidence, so "
        "guidance does not ask a plain background to move). [default: none; the toy model: mutual]",
        choices=("none", "confidence", "mutual")))
    reference_flow: str | None = field(default=None, metadata=rule(
        "AMF loss target: the reference's argmax AMF (argmax, the paper) or its soft AMF (soft: expected key "
        "positions, scored like the generated side, on the entries the argmax marks moving). [default: argmax; "
        "the toy model: soft]", choices=("argmax", "soft")))
    emb_param: str | None = field(default=None, metadata=rule(
        "emb mode, RoPE models: optimise the tables (table, the paper) or their rotation angles (angle: they stay "
        "rotations). [default: table; the toy model: angle]", choices=("table", "angle")))
    fast: bool = field(default=False, metadata=rule(
        "Fast mode: the model's measured local AMF window, frame distance and gradient reuse, for the three "
        "settings below that are not given (the toy model's: measured; other models': FastVMT's 10, 4, 3)."))
    amf_window: int | None = field(default=None, metadata=rule(
        "AMF loss: each query patch looks only at key patches within this many patches of its own position "
        "(a (2R+1)x(2R+1) window). [default: the whole frame; --fast: the model's]", ge=1))
    amf_frame_distance: int | None = field(default=None, metadata=rule(
        "AMF loss: only frame pairs at most this many token frames apart (latent frames; 2 per token on CogVideoX 1.5). [default: all pairs; --fast: the model's]",
        ge=1))
    grad_reuse: int | None = field(default=None, metadata=rule(
        "A full forward and backward every k-th Adam step; the steps between reuse the last gradient. "
        "[default: 1 (every step); --fast: the model's]", ge=1))
    family: dict[str, Any] = field(default_factory=dict, metadata=rule(
        "The model family's own settings by name (e.g. a scheduler); the family's adapter declares and checks them."))
    method: str = field(default="ditflow", metadata=rule(
        "The motion-transfer method: ditflow (DiTFlow, with --loss and --opt-mode), flowmotion (FlowMotion), "
        "ropecraft (RoPECraft) or fastvmt (FastVMT), each with its published defaults and its own settings below.",
        choices=("ditflow", "flowmotion", "ropecraft", "fastvmt")))
    method_settings: dict[str, Any] = field(default_factory=dict, metadata=rule(
        "The method's own settings by name (e.g. FlowMotion's alpha); the method declares and checks them."))

    def resolve(self, preset: Any, method: Any = None) -> "GuideConfig":
        """Every None filled in: from `method` (a `methods.Method`: a peer's published schedule and its own
        settings' defaults; None: DiTFlow's, which has neither), then from the model's `preset`."""
        published = method.published if method is not None else {}
        ditflow = self.method == "ditflow"

        def pick(name):
            value = getattr(self, name)
            return published.get(name, getattr(preset, name)) if value is None else value

        def fast(name, off):
            value = getattr(self, name)
            return value if value is not None else (preset.fast.get(name, off) if self.fast else published.get(name, off))

        opt_mode = pick("opt_mode") if ditflow or method is None else method.opt_mode
        own = {} if method is None or method.settings is None else dataclasses.asdict(method.settings())  # hashed, shown
        return replace(
            self,
            amf_window=fast("amf_window", None), amf_frame_distance=fast("amf_frame_distance", None),
            grad_reuse=fast("grad_reuse", 1), opt_mode=opt_mode,
            lr=tuple(self.lr) if self.lr else tuple(published.get("lr") or preset.lr[opt_mode]),
            guidance_range=tuple(pick("guidance_range")),
            injection_blocks=tuple(self.injection_blocks),
            family={**preset.family, **{k: v for k, v in self.family.items() if v is not None}},
            method_settings={**own, **{k: v for k, v in self.method_settings.items() if v is not None}},
            **{name: pick(name) for name in ("negative_prompt", "opt_steps", "injection", "steps", "cfg")},
            # DiTFlow's own: a peer method leaves them unset (they are not its settings, and not its hash's)
            **{name: pick(name) if ditflow else None for name in ("loss_weighting", "reference_flow", "emb_param")},
        )

    def validate(self) -> None:
        check_rules(self)
        for name in ("family", "method_settings"):
            value = getattr(self, name)
            if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
                raise InputError(f"GuideConfig.{name} must be a dict of setting names, got {value!r}")
        if self.guidance_range is not None:
            hi, lo = self.guidance_range
            if not hi > lo:
                raise InputError(f"--guidance-range HI,LO needs HI > LO >= 0, got {hi},{lo}")

    def check_steps(self) -> None:
        """A resolved config's guidance range must select steps when it guides or injects."""
        if (self.guidance or self.injection) and not guidance_steps(self.steps, self.guidance_range):
            hi, lo = self.guidance_range
            raise InputError(f"--guidance-range {hi},{lo} selects none of the {self.steps} steps (it counts steps "
                             f"from the end: HI,LO with HI > LO, LO < --steps)")


@dataclass(frozen=True)
class InjectConfig:
    """Zero-shot injection: what may differ from the guide run whose embeddings are replayed. None: the guide run's."""

    prompt: str = field(default="", metadata=rule("What to generate."))
    negative_prompt: str | None = field(default=None, metadata=rule("Negative prompt. [default: the guide run's]"))
    seed: int | None = field(default=None, metadata=rule("Noise seed. [default: the guide run's]", ge=0, le=MAX_SEED))
    cfg: float | None = field(default=None, metadata=rule(
        f"Classifier-free guidance scale, from 1 (off) to {MAX_CFG}. [default: the guide run's]", ge=1, le=MAX_CFG))
    injection: bool | None = None  # KV injection from the reference; None: as the guide run


def settings(cfg: Any) -> dict[str, Any]:
    """A config as plain JSON-able data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(cfg)))


def hashed_settings(cfg: Any) -> dict[str, Any]:
    """What a gen artifact's hash takes of its config: `settings`, without the method's keys for DiTFlow (the
    default), so every DiTFlow run keeps the hash it had before methods existed."""
    out = settings(cfg)
    if out.get("method", "ditflow") == "ditflow":
        out.pop("method", None), out.pop("method_settings", None)
    return out


def from_settings(cls: type, data: dict[str, Any]) -> Any:
    """The config `settings()` gave (lists back to tuples); keys that are not fields are left out."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: tuple(v) if isinstance(v, list) else v for k, v in data.items() if k in names})


__all__ = ["RuntimeOptions", "ExtractConfig", "GuideConfig", "InjectConfig", "settings", "hashed_settings",
           "from_settings"]
