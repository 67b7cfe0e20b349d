"""`plan_run`: a run's device memory and time from its settings alone (what `ditflow plan` prints), and
`fit_runtime`: the memory options a guide run takes so that it fits (what `ditflow guide` does before loading).

    report = plan_run("5b", ExtractConfig(frames=49), GuideConfig(prompt="x"), RuntimeOptions(), limit=24 * 2**30)
    report.chosen.peak_bytes, report.fits, report.max_frames
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any, Iterator

from ..config import ExtractConfig, GuideConfig, RuntimeOptions, guidance_steps, hashed_settings, settings
from ..errors import InputError
from .estimate import GIB, Plan, allowed, choose, plan_of
from .gpus import GPUS

FRAME_SEARCH_CAP = 4  # the largest frame count looked for: this many times the asked one


@dataclass
class PlanReport:
    model: str
    frames: int
    height: int
    width: int
    method: str
    mode: str
    image: bool
    limit: int | None
    chosen: Plan | None  # the cheapest placement that fits (None: none does)
    candidates: list[Plan]
    attention: list[str]
    max_frames: int | None = None
    frames_searched: int | None = None  # the longest count the search tried (a fit there may go further)
    reference_bytes: int = 0  # the reference's AMF, features and latent as the guide run holds them
    seconds_simulated: float = 0.0

    @property
    def shown(self) -> Plan:
        """The plan to print: the chosen one, else the leanest candidate."""
        return self.chosen or min(self.candidates, key=lambda p: p.peak_bytes)

    @property
    def fits(self) -> bool:
        return self.chosen is not None

    def as_dict(self) -> dict[str, Any]:
        shown = self.shown
        return {"model": self.model, "frames": self.frames, "height": self.height, "width": self.width,
                "method": self.method, "opt_mode": self.mode, "image": self.image, "max_memory_bytes": self.limit,
                "fits": self.fits, "peak_bytes": shown.peak_bytes, "needed_bytes": shown.needed_bytes,
                "max_frames": self.max_frames, "frames_searched": self.frames_searched, "attention_kernels": self.attention, "plan": shown.as_dict(),
                "candidates": [c.as_dict() for c in self.candidates], "seconds_simulated": self.seconds_simulated,
                "reference_bytes": self.reference_bytes, "simulated": True}


@contextmanager
def planned_model(arg: str) -> Iterator[Any]:
    """`arg` resolved with a folder of its config files: a named preset's released configs (no download), or the
    local folder / HF cache entry it names (its config files read, never its weights)."""
    from ..backbones.registry import ADAPTERS, ALIASES, PRESETS, ResolvedModel, resolve_model
    from .fake import released_folder

    name = ALIASES.get(arg, arg)
    if name in PRESETS:
        with released_folder(name) as folder:
            if folder is not None:
                adapter = next(a for a in ADAPTERS if name in a.presets)
                spec = ResolvedModel(arg, name, str(folder), adapter)
                spec.__dict__["folder"] = folder
                yield spec
                return
    yield resolve_model(arg)


def _frames_to_try(spec, asked: int, height: int, width: int) -> list[int]:
    """Frame counts the model takes, up to FRAME_SEARCH_CAP times `asked` (its VAE's 4k+1 / 8k+1 rules)."""
    out = []
    for n in range(1, asked * FRAME_SEARCH_CAP + 1):
        try:
            spec.geometry(n, height, width)
        except InputError:
            continue
        out.append(n)
    return out


def _simulate(spec, ecfg, gcfg, image, fixed, costs: bool = False):
    from .simulate import simulate

    ck = fixed.get("checkpointing")
    return simulate(spec, ecfg, gcfg, RuntimeOptions(device="cpu", quiet=True), image=image,
                    checkpointing=(False, True) if ck is None else (bool(ck),), costs=costs)


def plan_run(model: str, ecfg: ExtractConfig, gcfg: GuideConfig, runtime: RuntimeOptions, *, image: bool = False,
             limit: int | None = None, gpu: str | None = None, search_frames: bool | None = True,
             stage: str | None = None) -> PlanReport:
    """Simulate `model`'s extraction and guide run at `ecfg`'s size with `gcfg`'s settings on fake weights; choose
    the cheapest placement that fits `limit` bytes among those `runtime`'s flags leave free (`stage`: "extract" or
    "guide", that stage's phases only; None: the whole chain). `search_frames`: look for the largest frame count
    that fits (None: only when the asked one does not)."""
    start = time.perf_counter()
    with planned_model(model) as spec:
        ecfg = spec.extract_config(replace(ecfg, model=model))
        gcfg = spec.guide_config(gcfg)
        image = image or spec.adapter.needs_image
        spec.run_adapter(image)
        spec.check_blocks(ecfg.blocks, "--blocks")
        fixed = {"checkpointing": runtime.gradient_checkpointing, "text_encoder": runtime.text_encoder,
                 "offload": runtime.cpu_offload, "vae_tiling": runtime.vae_tiling}
        sim = _simulate(spec, ecfg, gcfg, image, fixed, costs=gpu is not None)
        chosen, candidates = choose(sim, limit, fixed, stage)
        if gpu is not None:
            steps, guided = gcfg.steps, len(guidance_steps(gcfg.steps, gcfg.guidance_range)) if gcfg.guidance else 0
            for p in candidates:
                timed = plan_of(sim, p.placement, GPUS[gpu], steps, guided, stage)
                p.seconds, p.gpu = timed.seconds, timed.gpu
        report = PlanReport(model, ecfg.frames, ecfg.height, ecfg.width, gcfg.method, gcfg.opt_mode, image, limit, chosen,
                            candidates, sorted(sim.attention), reference_bytes=sim.reference_bytes)
        if limit is not None and (search_frames or (search_frames is None and chosen is None)):
            report.max_frames = _max_frames(spec, ecfg, gcfg, image, sim, limit, fixed, stage)
            report.frames_searched = _frames_to_try(spec, ecfg.frames, ecfg.height, ecfg.width)[-1]
    report.seconds_simulated = time.perf_counter() - start
    return report


def _max_frames(spec, ecfg, gcfg, image, sim, limit, fixed, stage=None) -> int | None:
    """The largest frame count whose cheapest allowed placement fits `limit`: each phase's peak is linear in the
    latent frames between the asked count and a second, shorter simulated one (attention kernels and the AMF's
    chunks keep it so), extrapolated past them."""
    counts = _frames_to_try(spec, ecfg.frames, ecfg.height, ecfg.width)
    shorter = [n for n in counts if n <= max(ecfg.frames // 2, 1)]
    if not shorter or shorter[-1] == ecfg.frames:
        return None
    other = shorter[-1]
    sim2 = _simulate(spec, replace(ecfg, frames=other), gcfg, image, fixed)
    lat = {n: spec.geometry(n, ecfg.height, ecfg.width).latent_frames for n in (ecfg.frames, other, *counts)}

    def needed(n: int) -> int:
        best = None
        for c in allowed(fixed, sim.tiling and sim2.tiling):  # a length too short to tile: no line through tiling
            a, b = plan_of(sim2, c, stage=stage).needed_bytes, plan_of(sim, c, stage=stage).needed_bytes
            span = lat[ecfg.frames] - lat[other]
            v = a + (b - a) * (lat[n] - lat[other]) / span if span else b
            best = v if best is None else min(best, v)
        return int(best)

    fitting = [n for n in counts if needed(n) <= limit]
    return max(fitting) if fitting else None


def device_limit(runtime: RuntimeOptions) -> int | None:
    """The memory a run may use: --max-memory, else the CUDA device's free memory (None: no limit known)."""
    if runtime.max_memory is not None:
        return int(runtime.max_memory * GIB)
    import torch

    device = runtime.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and torch.cuda.is_available():
        dev = torch.device(device)
        free, _ = torch.cuda.mem_get_info(dev)
        # what this process holds counts as available: a batch worker's loaded model is reused or released
        return int(free + torch.cuda.memory_reserved(dev))
    return None


def describe_refusal(report: PlanReport) -> str:
    """One line: the estimate at the leanest placement, and the frame count that would fit."""
    best = report.shown
    top = best.peak_phase
    fits = (f"--frames {report.max_frames} would fit" if report.max_frames else
            f"no frame count fits at {report.height}x{report.width}")
    return (f"this run needs about {best.needed_bytes / GIB:.1f} GiB of GPU memory at its leanest ({best.placement.flags()}; "
            f"peak {best.peak_bytes / GIB:.1f} GiB in its {top}, plus the margin), more than the {report.limit / GIB:.1f} "
            f"GiB available; {fits} (`ditflow plan` shows each phase)")


_CHOSEN: dict[tuple, PlanReport] = {}


def fit_runtime(model: str, ecfg: ExtractConfig, gcfg: GuideConfig | None, runtime: RuntimeOptions, *, image: bool,
                stage: str = "guide") -> RuntimeOptions:
    """`runtime` with checkpointing, VAE tiling, text-encoder placement and offload chosen so the `stage` ("guide",
    or "extract": `gcfg` None) fits its memory limit (--max-memory, else the GPU's free memory); unchanged where no
    limit is known (a CPU without --max-memory) except what is off unless asked. A run that cannot fit is an
    InputError (exit 2), before loading."""
    limit = device_limit(runtime)
    if limit is None:
        return replace(runtime, gradient_checkpointing=bool(runtime.gradient_checkpointing),
                       cpu_offload=bool(runtime.cpu_offload), vae_tiling=bool(runtime.vae_tiling),
                       text_encoder="device" if runtime.text_encoder == "auto" else runtime.text_encoder)
    if gcfg is None:  # the extraction alone: a guide run's cheapest shape, its phases not counted
        gcfg = GuideConfig(prompt="plan", guidance=False, injection=False)
    same = {k: v for k, v in hashed_settings(gcfg).items() if k not in ("prompt", "negative_prompt", "seed")}
    key = (model, repr(settings(ecfg)), repr(same), repr(runtime), image, limit >> 28, stage)  # in 256 MiB steps
    if key not in _CHOSEN:  # a batch's rows share their settings: one simulation for all of them
        # the frame search only for a refusal, which names the count that would fit
        _CHOSEN[key] = plan_run(model, ecfg, gcfg, runtime, image=image, limit=limit, search_frames=None, stage=stage)
    report = _CHOSEN[key]
    if report.chosen is None:
        raise InputError(describe_refusal(report))
    p = report.chosen.placement
    return replace(runtime, gradient_checkpointing=p.checkpointing, cpu_offload=p.offload, text_encoder=p.text_encoder,
                   vae_tiling=p.vae_tiling)
