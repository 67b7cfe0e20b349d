"""One run of ditflow's own code on fake weights, phase by phase: the extraction (`runs.reference_tensors`), a guide
run's preparation (`runs.prepare_run`), its first guided step, an unguided step and the decode, each measured by a
`Ledger` window. `plan.estimate` turns the windows into device memory under each placement (offload, the text
encoder on the CPU) and into time on a named GPU.

    sim = simulate(spec, ecfg, gcfg, runtime, image=False)
    sim.guided[True].peak                    # bytes live at the guided step's peak (checkpointing), weights apart
"""
from __future__ import annotations

import gc
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import torch
from torch._subclasses.fake_tensor import FakeTensorMode

from ..config import DTYPES, ExtractConfig, GuideConfig, RuntimeOptions, guidance_steps
from .fake import fake_backbone
from .ledger import Ledger, Window

# what runs in each phase: the components a model offload keeps on the device then ("text" and "image": the
# adapter's text parts, and its image encoder and VAE when it animates a picture)
PHASE_PARTS = {"text encoding": ("text", "image"), "reference encoding": ("vae",), "extraction": ("transformer",),
               "guided step": ("transformer",), "unguided step": ("transformer",), "decode": ("vae",)}
# the laps of the extraction (its progress marks) -> the phase each belongs to
EXTRACT_LAPS = {"encoded video": "reference encoding", "encoded prompt": "text encoding", "transformer pass": "extraction",
                "AMF": "extraction"}


@dataclass
class Simulation:
    """What one simulated run measured: weights per component, its phases, the attention kernels it ran."""

    weights: dict[str, int]
    text_parts: tuple[str, ...]
    image_parts: tuple[str, ...]
    phases: dict[str, Window] = field(default_factory=dict)  # the others, by name
    guided: dict[bool, Window] = field(default_factory=dict)  # the guided step with checkpointing off / on
    decode: dict[bool, Window] = field(default_factory=dict)  # the decode whole / in tiles
    encode_tiled: Window | None = None  # the reference's encoding in tiles
    tiling: bool = True  # whether the VAE can tile at this size (encode and decode)
    reference_bytes: int = 0  # what the guide run reads of the reference (part of its phases' state)
    attention: set[str] = field(default_factory=set)

    def add(self, name: str, window: Window) -> None:
        """A window into its phase (a phase measured twice keeps its higher peak and both windows' ops)."""
        old = self.phases.get(name)
        if old is not None and old.peak >= window.peak:
            old.ops.extend(window.ops)
            return
        if old is not None:
            window.ops.extend(old.ops)
        self.phases[name] = window


class PlannedAmf:
    """Stands for the AMF artifact a guide run reads: the same accessors, each returning a new tensor of the
    extracted shape (what loading it from the store makes), counted where the run moves it."""

    def __init__(self, ref: dict[str, Any], frames: np.ndarray, cfg: ExtractConfig, grid, model_arg: str):
        self._shapes = {k: ({b: (t.shape, t.dtype) for b, t in v.items()} if isinstance(v, dict) else (v.shape, v.dtype))
                        for k, v in ref.items()}
        self.frames, self.grid, self.blocks = frames, tuple(grid), list(cfg.blocks)
        self.temperature = float(cfg.temperature)
        self.hash = "0" * 64
        self.inputs = {"frames": cfg.frames, "height": cfg.height, "width": cfg.width, "dtype": cfg.dtype,
                       "seed": cfg.seed, "temperature": cfg.temperature, "blocks": list(cfg.blocks), "model_arg": model_arg}
        self.meta = {"grid": list(grid)}
        self.read_bytes = 0  # what the run read of the reference (its AMF, features, latent)

    def _new(self, key: str, block: int | None = None) -> torch.Tensor:
        shape, dtype = self._shapes[key] if block is None else self._shapes[key][block]
        t = torch.zeros(shape, dtype=dtype)
        self.read_bytes += t.numel() * t.element_size()
        return t

    def latent(self):
        return self._new("latent")

    def amf(self, block):
        return self._new("amf", block)

    def soft_amf(self, block):
        return self._new("soft", block)

    def confidence(self, block):
        return self._new("confidence", block)

    def features(self, block):
        return self._new("features", block)

    def moft_channels(self, block):
        return self._new("moft", block)


def _decode(backbone, latent, cond, geo) -> None:
    """The decode; its last act, reading the frames back into numpy, has no values to read on fake tensors."""
    try:
        backbone.decode(backbone.final_latent(latent, cond), geo)
    except RuntimeError as e:  # FakeTensor.numpy(): the VAE has run by then
        if "numpy" not in str(e).lower() and "data" not in str(e).lower():
            raise


def simulate(spec, ecfg: ExtractConfig, gcfg: GuideConfig, runtime: RuntimeOptions, *, image: bool = False,
             checkpointing: tuple[bool, ...] = (False, True), costs: bool = True) -> Simulation:
    """Run the extraction and a guide run's phases of `spec` (a ResolvedModel whose folder holds its config
    files) on fake weights, the guided step once per `checkpointing` setting; `ecfg` and `gcfg` resolved.
    `costs`: count each op's FLOPs and bytes moved (what a time estimate needs)."""
    mode = FakeTensorMode(allow_non_fake_inputs=True)
    dtype = getattr(torch, DTYPES.get(ecfg.dtype, ecfg.dtype))
    backbone = fake_backbone(spec, spec.run_adapter(image), dtype, RuntimeOptions(device="cpu", quiet=True), mode)
    sim = run_phases(backbone, Ledger(fake=True, costs=costs), mode, spec, ecfg, gcfg, runtime, image, checkpointing)
    del backbone
    gc.collect()  # this mode's fake tensors, freed here: collected inside a later mode, some crash the process
    return sim


def measure(spec, ecfg: ExtractConfig, gcfg: GuideConfig, runtime: RuntimeOptions, *, image: bool = False,
            checkpointing: tuple[bool, ...] = (False, True)) -> Simulation:
    """The same phases on the model's real weights on the CPU, counted by the same ledger on real tensors (what
    validates the simulation: docs/performance.md)."""
    from contextlib import nullcontext

    from ..backbones import load_backbone

    backbone = load_backbone(spec, ecfg.dtype, RuntimeOptions(device="cpu", quiet=True), image=image)
    return run_phases(backbone, Ledger(fake=False), nullcontext(), spec, ecfg, gcfg, runtime, image, checkpointing)


def run_phases(backbone, ledger: Ledger, mode, spec, ecfg: ExtractConfig, gcfg: GuideConfig, runtime: RuntimeOptions,
               image: bool, checkpointing: tuple[bool, ...]) -> Simulation:
    """Extraction, a guide run's preparation, its guided step (once per `checkpointing`), an unguided step and the
    decode of `backbone`, each in a `ledger` window (under `mode`: the fake tensors' or none)."""
    from ..runs import prepare_run

    pipe = backbone.pipe
    weights = {name: ledger.weights(part) for name, part in pipe.components.items() if isinstance(part, torch.nn.Module)}
    image_parts = tuple(p for p in ("image_encoder", "vae") if image and p in weights)
    sim = Simulation(weights, tuple(p for p in backbone.text_parts if p in weights), image_parts)
    frames = np.zeros((ecfg.frames, ecfg.height, ecfg.width, 3), np.uint8)
    picture = frames[0] if image else None
    passes = -(-gcfg.opt_steps // (gcfg.grad_reuse or 1))  # forward-backward passes of a guided step
    gcfg = replace(gcfg, opt_steps=1)  # one pass shows the peak (Adam's state included); its ops count `passes` times
    with mode, ledger:
        backbone.start_run(gcfg.family, keeps_latent=gcfg.guidance and gcfg.opt_mode == "latent")
        geo = backbone.geometry(ecfg.frames, ecfg.height, ecfg.width)
        with _Laps(ledger, sim, EXTRACT_LAPS) as laps:
            ref = _reference(backbone, frames, ecfg, laps)
        amf = PlannedAmf(ref, frames, ecfg, geo.grid, spec.arg)
        del ref
        sim.encode_tiled = _tiled(pipe, ledger, lambda: backbone.encode_video(frames))  # the VAE's encoder tiles too
        with ledger.window() as w:
            run = prepare_run(backbone, amf, gcfg, runtime, image=picture, store=None)  # a method's caches: not kept
        sim.add("text encoding", w)
        sim.reference_bytes = amf.read_bytes
        active = guidance_steps(gcfg.steps, gcfg.guidance_range)
        x, state = run.x, run.state
        steps = [(active.start, ck) for ck in checkpointing] if run.guide is not None and len(active) else []
        for i, ck in [*steps, (len(run.timesteps) - 1, None)]:  # None: the unguided step
            t = run.timesteps[i]
            backbone.set_checkpointing(bool(ck))
            positions = None
            with ledger.window() as guided:
                if ck is not None:
                    x, positions = run.guide(x, i, t)
            with ledger.window() as w:
                v = run.denoise(x, i, t, positions)
                x = backbone.step(v, t, x, state)[0].to(x.dtype)
            if ck is None:
                sim.add("unguided step", w)
            else:
                w.peak, w.start = max(w.peak, guided.peak), guided.start
                w.ops[:0] = guided.ops * passes
                sim.guided[ck] = w
        with ledger.window() as w:
            _decode(backbone, x, run.cond, geo)
        sim.decode[False] = w
        tiled = _tiled(pipe, ledger, lambda: _decode(backbone, x, run.cond, geo))
        if tiled is not None:
            sim.decode[True] = tiled
        sim.tiling = sim.encode_tiled is not None and tiled is not None
    sim.attention = {n for n in ledger.ops_seen if "attention" in n}
    return sim


def _tiled(pipe, ledger: Ledger, run) -> Window | None:
    """`run()` with the VAE tiling, in a ledger window; None at a size below the VAE's tiles (a real run could not
    tile it either)."""
    pipe.vae.enable_tiling()
    try:
        with ledger.window() as w:
            run()
        return w
    except RuntimeError:
        return None
    finally:
        pipe.vae.disable_tiling()


def _reference(backbone, frames, ecfg, laps):
    from ..runs import reference_tensors

    return reference_tensors(backbone, frames, ecfg, laps.lap)


class _Laps:
    """Consecutive ledger windows, one per progress mark of the extraction, each added to its phase."""

    def __init__(self, ledger: Ledger, sim: Simulation, phases: dict[str, str]):
        self.ledger, self.sim, self.phases = ledger, sim, phases

    def __enter__(self):
        self._cm = self.ledger.window()
        self._w = self._cm.__enter__()
        return self

    def lap(self, mark: str) -> None:
        self._cm.__exit__(None, None, None)
        self.sim.add(self.phases[mark], self._w)
        self.__enter__()

    def __exit__(self, *exc):
        self._cm.__exit__(*exc)
        return False
