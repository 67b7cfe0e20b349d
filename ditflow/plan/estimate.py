"""From a `Simulation` to a `Plan`: device memory per phase under a placement (gradient checkpointing, the text
encoder on the device or the CPU, model offload), whether it fits, and a roofline time on a named GPU.

The margin: the simulation counts what torch allocates, not the caching allocator's rounding and split blocks
nor the CUDA context; `MARGIN_FRACTION` of the peak plus `MARGIN_BYTES` is added before comparing with a limit
(an assumption, stated in every plan, until measured on a GPU: docs/performance.md).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from .gpus import Gpu
from .simulate import PHASE_PARTS, Simulation

MARGIN_FRACTION = 0.08
MARGIN_BYTES = 512 << 20
GIB = 2**30


@dataclass(frozen=True)
class Placement:
    """Where a run's weights live and what it recomputes: the settings a plan chooses among."""

    checkpointing: bool = False
    text_encoder: str = "device"  # or "cpu"
    offload: bool = False
    vae_tiling: bool = False

    def flags(self) -> str:
        return " ".join(f for f in ("--gradient-checkpointing" if self.checkpointing else "",
                                    "--cpu-offload" if self.offload else "",
                                    "--text-encoder cpu" if self.text_encoder == "cpu" else "",
                                    "--vae-tiling" if self.vae_tiling else "") if f) or "(none)"


# cheapest first: offload moves each model over once per run (the transformer stays while the loop runs), VAE tiling
# decodes in overlapping tiles (a little slower, seams blended), gradient checkpointing costs every guided step a
# second forward, a CPU text encoder tens of seconds per prompt
CANDIDATES = (Placement(), Placement(offload=True), Placement(vae_tiling=True), Placement(offload=True, vae_tiling=True),
              Placement(True), Placement(True, offload=True), Placement(True, vae_tiling=True),
              Placement(True, offload=True, vae_tiling=True), Placement(True, "cpu", True, True))


@dataclass
class PhaseMemory:
    name: str
    weights: dict[str, int]  # resident components
    state: int  # the run's tensors when the phase starts (latents, text embeddings, the reference's AMF)
    activations: int  # what the phase adds at its peak (activations, saved tensors, optimiser state)

    @property
    def peak(self) -> int:
        return sum(self.weights.values()) + self.state + self.activations


# the phases of each stage: `extract` and `guide` run (and are planned) apart; `ditflow plan` counts both
STAGE_PHASES = {"extract": ("text encoding", "reference encoding", "extraction"),
                "guide": ("text encoding", "guided step", "unguided step", "decode")}


@dataclass
class Plan:
    placement: Placement
    phases: list[PhaseMemory]
    seconds: dict[str, float] = field(default_factory=dict)
    gpu: str | None = None
    stage: str | None = None  # the stage whose phases count (None: every phase, the whole chain)

    @property
    def counted(self) -> list[PhaseMemory]:
        names = STAGE_PHASES.get(self.stage)
        return [p for p in self.phases if names is None or p.name in names]

    @property
    def peak_bytes(self) -> int:
        return max(p.peak for p in self.counted)

    @property
    def peak_phase(self) -> str:
        return max(self.counted, key=lambda p: p.peak).name

    @property
    def needed_bytes(self) -> int:
        """The peak with the margin: what the device must have free."""
        return int(self.peak_bytes * (1 + MARGIN_FRACTION) + MARGIN_BYTES)

    def fits(self, limit: int | None) -> bool:
        return limit is None or self.needed_bytes <= limit

    def as_dict(self) -> dict[str, Any]:
        return {"placement": asdict(self.placement), "peak_bytes": self.peak_bytes, "needed_bytes": self.needed_bytes,
                "margin": {"fraction": MARGIN_FRACTION, "bytes": MARGIN_BYTES},
                "phases": [{"name": p.name, "peak_bytes": p.peak, "weights": p.weights, "state_bytes": p.state,
                            "activation_bytes": p.activations} for p in self.phases],
                "gpu": self.gpu, "seconds": self.seconds}


def _resident(sim: Simulation, phase: str, placement: Placement) -> dict[str, int]:
    """The weights on the device in `phase`: the text encoder leaves it once the prompts are encoded."""
    away = set(sim.text_parts) if placement.text_encoder == "cpu" or phase != "text encoding" else set()
    if placement.offload:
        parts = {p for tag in PHASE_PARTS[phase] for p in
                 (sim.text_parts if tag == "text" else sim.image_parts if tag == "image" else (tag,))}
        return {k: v for k, v in sim.weights.items() if k in parts - away}
    return {k: v for k, v in sim.weights.items() if k not in away}


def plan_of(sim: Simulation, placement: Placement, gpu: Gpu | None = None, steps: int = 0, guided_steps: int = 0,
            stage: str | None = None) -> Plan:
    """The device memory of each phase of `sim` under `placement` (`stage`: only its phases count towards the peak);
    with `gpu`, roofline seconds per step and run."""
    windows = dict(sim.phases)
    if sim.guided:
        windows["guided step"] = sim.guided[placement.checkpointing]
    if sim.decode:
        windows["decode"] = sim.decode.get(placement.vae_tiling, sim.decode[False])
    if sim.encode_tiled is not None and placement.vae_tiling:  # tiling splits the VAE's encoder too
        windows["reference encoding"] = sim.encode_tiled
    out = []
    for name in PHASE_PARTS:
        if name not in windows:
            continue
        w = windows[name]
        activations = w.peak - w.start
        if name == "text encoding" and placement.text_encoder == "cpu":
            activations = max(w.end - w.start, 0)  # it ran on the CPU; only its embeddings come over
        out.append(PhaseMemory(name, _resident(sim, name, placement), w.start, activations))
    plan = Plan(placement, out, stage=stage)
    if gpu is not None:
        s = {name: w.seconds(gpu.bf16_flops, gpu.bandwidth) for name, w in windows.items()}
        plan.gpu = gpu.name
        plan.seconds = {"guided step": s.get("guided step", 0.0), "unguided step": s.get("unguided step", 0.0),
                        "decode": s.get("decode", 0.0),
                        "run": guided_steps * s.get("guided step", 0.0) + (steps - guided_steps) * s.get("unguided step", 0.0)
                        + s.get("decode", 0.0) + s.get("text encoding", 0.0)}
    return plan


def allowed(fixed: dict[str, Any], tiling: bool = True) -> list[Placement]:
    """The candidates the user's flags leave (`fixed`: checkpointing, text_encoder, offload, vae_tiling; None or
    "auto": free), cheapest first, without tiling where the VAE cannot tile the size; where no candidate has the
    flags' combination (e.g. offload without checkpointing), that combination."""
    out = [c for c in CANDIDATES if all(v is None or v == "auto" or getattr(c, k) == v for k, v in fixed.items())
           and (tiling or not c.vae_tiling)]
    return out or [Placement(bool(fixed.get("checkpointing")), "cpu" if fixed.get("text_encoder") == "cpu" else "device",
                             bool(fixed.get("offload")), bool(fixed.get("vae_tiling")))]


def choose(sim: Simulation, limit: int | None, fixed: dict[str, Any], stage: str | None = None
           ) -> tuple[Plan | None, list[Plan]]:
    """The cheapest placement `allowed` by the user's flags that fits `limit` (bytes), and every candidate's plan."""
    plans = [plan_of(sim, c, stage=stage) for c in allowed(fixed, sim.tiling)]
    return next((p for p in plans if p.fits(limit)), None), plans
