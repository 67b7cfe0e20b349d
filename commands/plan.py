"""`ditflow plan`: a run's GPU memory by phase and its time, simulated on fake weights before anything loads."""
from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions

from .options import (FAST, GUIDANCE, RUNTIME, WHAT, BlocksOpt, CheckpointingOpt, Command, CpuOffloadOpt, FastOpt,
                      FramesOpt, GuidanceRangeOpt, HeightOpt, JsonOpt, MaxMemoryOpt, MethodOpt, ModelSetting,
                      NoInjectionOpt, OptStepsOpt, StepsOpt, TextEncoderOpt, VaeTilingOpt, WidthOpt, option, setting)

from ditflow.plan.gpus import GPUS  # noqa: E402  (a table: no torch at --help time)

_GPU_HELP = (f"Estimate the time on this GPU ({', '.join(GPUS)}): a roofline from its published peak bf16 FLOP/s and "
             "memory bandwidth, a lower bound, not a measurement; without --max-memory its memory is the limit.")


def plan(
    model: ModelSetting = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    blocks: BlocksOpt = None,
    dtype: Annotated[Optional[str], setting(ExtractConfig, "dtype", panel=WHAT)] = None,
    image: Annotated[bool, option("--image", panel=WHAT, help=(
        "Plan an image-to-video run (the model's image pipeline; implied by image-to-video models)."))] = False,
    method: MethodOpt = None,
    opt_mode: Annotated[Optional[str], setting(GuideConfig, "opt_mode", panel=GUIDANCE)] = None,
    loss: Annotated[Optional[str], setting(GuideConfig, "loss", panel=GUIDANCE)] = None,
    opt_steps: OptStepsOpt = None,
    guidance_range: GuidanceRangeOpt = None,
    no_guidance: Annotated[bool, option("--no-guidance", panel=GUIDANCE, help="Plan a run without optimisation.")] = False,
    no_injection: NoInjectionOpt = False,
    steps: StepsOpt = None,
    fast: FastOpt = False,
    amf_window: Annotated[Optional[int], setting(GuideConfig, "amf_window", panel=FAST)] = None,
    max_memory: MaxMemoryOpt = None,
    gpu: Annotated[Optional[str], option("--gpu", metavar="NAME", panel=RUNTIME, help=_GPU_HELP)] = None,
    gradient_checkpointing: CheckpointingOpt = None,
    text_encoder: TextEncoderOpt = None,
    vae_tiling: VaeTilingOpt = None,
    cpu_offload: CpuOffloadOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Predict a run's peak GPU memory by phase and whether it fits, with no weights (fake tensors on the CPU).

    Runs ditflow's own extraction, one guided step, one unguided step and the decode on the model's released
    configuration (a preset) or a folder's config files, counting every live tensor. Exit 0 whether or not it
    fits; `--json` for scripts (`fits`, `peak_bytes`).
    """
    params = dict(locals())
    from ditflow.errors import InputError
    from ditflow.plan.api import device_limit, plan_run

    from ._common import flag_settings

    if gpu is not None and gpu not in GPUS:
        raise InputError(f"--gpu must be one of {', '.join(GPUS)}, not {gpu!r}")
    ecfg = ExtractConfig(**{k: v for k, v in flag_settings(ExtractConfig, params).items() if v is not None})
    gcfg = GuideConfig(prompt="plan", **{k: v for k, v in flag_settings(GuideConfig, params).items() if v is not None})
    rt = RuntimeOptions(**{k: v for k, v in flag_settings(RuntimeOptions, params).items() if v is not None})
    rt.validate()
    limit = device_limit(rt)
    if limit is None and gpu is not None:
        limit = int(GPUS[gpu].memory_gib * 2**30)
    if limit is None:
        raise InputError("this machine has no GPU: give --max-memory GIB (or --gpu NAME) to plan against")
    report = plan_run(model or ecfg.model, ecfg, gcfg, rt, image=image, limit=limit, gpu=gpu)
    if as_json:
        print(json.dumps(report.as_dict()))
    else:
        print("\n".join(lines(report)))


# the fused kernels the simulation ran (on the CPU: the same tensors kept as the GPU's flash kernel keeps)
_KERNELS = {"_scaled_dot_product_flash_attention_for_cpu.default": "fused flash (no attention matrix kept)",
            "_scaled_dot_product_flash_attention.default": "fused flash (no attention matrix kept)",
            "_scaled_dot_product_efficient_attention.default": "memory-efficient (no attention matrix kept)"}


def lines(report) -> list[str]:
    """The plan as text: one line per phase, then the verdict."""
    from ditflow.plan.estimate import MARGIN_BYTES, MARGIN_FRACTION

    p = report.shown
    unit, size = ("GiB", 2**30) if p.peak_bytes >= 2**30 else ("MiB", 2**20)
    kernels = ", ".join(sorted({_KERNELS.get(k, k) for k in report.attention if "backward" not in k})) or "none"
    out = [f"plan (simulated, no weights): {report.model}, {report.frames} frames {report.height}x{report.width}, "
           f"{report.method} {report.mode}{', image-to-video' if report.image else ''}; placement {p.placement.flags()}; "
           f"attention kernel {kernels}; {report.seconds_simulated:.0f} s",
           f"{'phase':20s} {'peak ' + unit:>9s} {'weights':>8s} {'state':>7s} {'activ.':>7s}  resident weights ({unit})"]
    for ph in p.phases:
        parts = ", ".join(f"{k} {v / size:.1f}" for k, v in ph.weights.items())
        out.append(f"{ph.name:20s} {ph.peak / size:9.2f} {sum(ph.weights.values()) / size:8.2f} {ph.state / size:7.2f} "
                   f"{ph.activations / size:7.2f}  {parts}")
    out += [f"state: the run's tensors as a phase starts (latents, text embeddings; from the guided step on, the "
            f"reference's AMF and features: {report.reference_bytes / 2**20:.1f} MiB);",
            "activ.: what the phase adds at its peak (saved activations, gradients, Adam's state)"]
    top = next(ph for ph in p.phases if ph.name == p.peak_phase)
    gib = 2**30
    out.append(f"peak {p.peak_bytes / size:.2f} {unit} ({top.name}); with the margin ({MARGIN_FRACTION:.0%} + "
               f"{MARGIN_BYTES / gib:.1f} GiB for the allocator and workspaces): {p.needed_bytes / gib:.2f} GiB")
    verdict = "fits" if report.fits else "does not fit"
    out.append(f"{verdict} in {report.limit / gib:.1f} GiB" + (f" with {p.placement.flags()}" if report.fits else ""))
    if report.max_frames is not None:
        more = " or more" if report.max_frames == report.frames_searched else ""
        out.append(f"largest frame count that fits: {report.max_frames}{more} (estimated: linear in frames between two "
                   f"simulated lengths; searched up to {report.frames_searched})")
    if p.gpu:
        s = p.seconds
        out.append(f"time on {p.gpu} (roofline estimate, a lower bound): guided step {s['guided step']:.1f} s, "
                   f"unguided step {s['unguided step']:.2f} s, decode {s['decode']:.1f} s, run {s['run'] / 60:.1f} min")
    return out


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(plan)
