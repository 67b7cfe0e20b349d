"""What a motion-transfer method is to the rest of ditflow: a name, its own settings (a dataclass of rules and
the peer's published defaults, its `--help` panel), its published values of the shared settings (lr, Adam steps,
guidance range, KV injection), what it can check before any weights load, and `build`, which makes the guide
the sampler calls at the guided steps. The denoising loop, CFG, KV injection, the adapters and the store are
shared; a method never names a model family (the adapter's `x0_from` / `prediction_for` carry each family's
parameterisation).

Light on imports: the CLI reads the settings for `--help` without torch."""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from ..errors import InputError

if TYPE_CHECKING:
    from ..config import GuideConfig

# Shared settings only DiTFlow's guide reads: another method refuses them when given (None: not given).
DITFLOW_ONLY = ("opt_mode", "loss_weighting", "reference_flow", "emb_param", "amf_window", "amf_frame_distance")


@dataclass(frozen=True)
class BuildContext:
    """What `_generate` hands a method: the model at its geometry, the reference artifact, the resolved config,
    the run's guided step indices, its encoded prompts, KV injection (or None), the initial noise, where loss
    records go, and the store."""

    model: Any
    amf: Any
    cfg: "GuideConfig"
    steps_active: range
    text: Any  # [2, L, D] (negative, positive)
    text_pos: Any  # [1, L, D]
    injection: Any
    noise: Any
    runtime: Any
    on_loss: Any
    prompts: dict  # the method's own prompts (`Method.prompts`), encoded: text -> [1, L, D]
    store: Any = None  # the run's store: where a method keeps what it derives from the reference (a flow)


class Method:
    """One motion-transfer method (see the module docstring). Subclasses set the class attributes and `build`."""

    name: ClassVar[str]
    title: ClassVar[str]  # the paper's name, as shown in help and tables
    summary: ClassVar[str]  # one line: what it optimises against what
    settings: ClassVar[type | None] = None
    # the peer's values of the shared schedule settings it publishes (opt_steps, lr as (start, end),
    # guidance_range, injection, grad_reuse); the model's preset fills the rest
    published: ClassVar[dict[str, Any]] = {}
    prompts: ClassVar[tuple[str, ...]] = ()  # extra prompts it encodes (e.g. an empty source prompt)
    opt_mode: ClassVar[str] = "latent"  # what it moves: the noisy latent, or positional embeddings ("emb")

    # -- before any weights load ---------------------------------------------------------------------
    def check(self, cfg: "GuideConfig", model: Any) -> None:
        """Refuse what this method cannot do on `model` (a `ResolvedModel`), or settings it does not read."""
        if self.name == "ditflow":
            return
        given = [n for n in DITFLOW_ONLY if getattr(cfg, n) is not None]
        if cfg.loss != "flow":
            given.insert(0, "loss")
        if cfg.fast:
            given.append("fast")
        if given:
            from ..checks import flag

            raise InputError(f"{flag(given[0])} is a setting of DiTFlow's guide; --method {self.name} does not read it")

    def setting_names(self) -> tuple[str, ...]:
        from dataclasses import fields

        return tuple(f.name for f in fields(self.settings)) if self.settings is not None else ()

    # -- the run -------------------------------------------------------------------------------------
    def build(self, ctx: BuildContext):
        """The guide the sampler calls at the guided steps (`active(i)`, `__call__(x, i, t) -> (x, positions)`)."""
        raise NotImplementedError

    def replayable(self, cfg: "GuideConfig") -> bool:
        """Whether a run leaves per-timestep embeddings `inject` can replay."""
        return False
