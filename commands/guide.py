"""`ditflow guide` and `ditflow inject`: guided generation and zero-shot reuse. Each setting's help comes
from its config field (ditflow/config.py), written once."""
from __future__ import annotations

from typing import Annotated, Optional

import typer

from ditflow.config import GuideConfig, InjectConfig, RuntimeOptions

from .options import (CacheOpt, ConfigOpt, CpuOffloadOpt, DeviceOpt, FormatOpt, JsonOpt, NoInjectionOpt, OutOpt,
                      OverwriteOpt, QuietOpt, family_setting, setting)

PromptOpt = Annotated[str, setting(GuideConfig, "prompt", "--prompt", "-p")]
NegOpt = Annotated[Optional[str], setting(GuideConfig, "negative_prompt")]
SeedOpt = Annotated[Optional[int], setting(GuideConfig, "seed", extra="[default: 1]")]
CfgOpt = Annotated[Optional[float], setting(GuideConfig, "cfg", "--cfg")]
ModelOpt = Annotated[Optional[str], typer.Option(help="Must be the AMF's model (checked); default: the AMF's.", show_default=False)]


def guide(
    amf: Annotated[str, typer.Option("--amf", help="Hash (or unique prefix) of an `extract` artifact.", show_default=False)],
    prompt: PromptOpt,
    negative_prompt: NegOpt = None,
    opt_mode: Annotated[Optional[str], setting(GuideConfig, "opt_mode")] = None,
    loss: Annotated[Optional[str], setting(GuideConfig, "loss", extra="[default: flow]")] = None,
    opt_steps: Annotated[Optional[int], setting(GuideConfig, "opt_steps")] = None,
    lr: Annotated[Optional[str], setting(GuideConfig, "lr")] = None,
    guidance_range: Annotated[Optional[str], setting(GuideConfig, "guidance_range")] = None,
    loss_weighting: Annotated[Optional[str], setting(GuideConfig, "loss_weighting")] = None,
    reference_flow: Annotated[Optional[str], setting(GuideConfig, "reference_flow")] = None,
    emb_param: Annotated[Optional[str], setting(GuideConfig, "emb_param")] = None,
    fast: Annotated[bool, setting(GuideConfig, "fast", "--fast")] = False,
    amf_window: Annotated[Optional[int], setting(GuideConfig, "amf_window")] = None,
    amf_frame_distance: Annotated[Optional[int], setting(GuideConfig, "amf_frame_distance")] = None,
    grad_reuse: Annotated[Optional[int], setting(GuideConfig, "grad_reuse")] = None,
    no_guidance: Annotated[bool, typer.Option("--no-guidance", help="No optimisation (the paper's injection-only / backbone runs).")] = False,
    no_injection: NoInjectionOpt = False,
    injection_blocks: Annotated[Optional[str], setting(GuideConfig, "injection_blocks", extra="[default: 0]")] = None,
    steps: Annotated[Optional[int], setting(GuideConfig, "steps")] = None,
    cfg: CfgOpt = None,
    dynamic_cfg: Annotated[Optional[bool], family_setting("dynamic_cfg", "--dynamic-cfg/--no-dynamic-cfg")] = None,
    seed: SeedOpt = None,
    scheduler: Annotated[Optional[str], family_setting("scheduler", "--scheduler")] = None,
    model: ModelOpt = None,
    out: OutOpt = None,
    fmt: FormatOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = False,
    gradient_checkpointing: Annotated[Optional[bool], setting(
        RuntimeOptions, "gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing")] = None,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate a video whose motion follows the reference AMF; print the `gen` artifact's hash."""
    from ditflow.config_file import apply_overrides, section
    from ditflow.stages import guide as run
    from ditflow.store import Store

    from ._common import check_out, emit, file_settings, parse_ints, parse_pair, runtime, write_output

    target = check_out(out, fmt, overwrite)
    data = file_settings(config)
    flags = {"prompt": prompt, "negative_prompt": negative_prompt, "opt_mode": opt_mode, "loss": loss,
             "opt_steps": opt_steps, "lr": parse_pair(lr, "--lr"),
             "guidance_range": parse_pair(guidance_range, "--guidance-range", int),
             "guidance": False if no_guidance else None, "injection": False if no_injection else None,
             "injection_blocks": parse_ints(injection_blocks, "--injection-blocks"), "steps": steps, "cfg": cfg,
             "dynamic_cfg": dynamic_cfg, "seed": seed, "scheduler": scheduler, "emb_param": emb_param,
             "loss_weighting": loss_weighting, "reference_flow": reference_flow, "fast": fast or None,
             "amf_window": amf_window, "amf_frame_distance": amf_frame_distance, "grad_reuse": grad_reuse}
    gcfg = apply_overrides(GuideConfig(), section(GuideConfig(), data, "guide"), flags)
    rt = runtime(data, device=device, cpu_offload=cpu_offload or None, quiet=quiet or None,
                 gradient_checkpointing=gradient_checkpointing)
    art = run(amf, gcfg, model=model, runtime=rt, store=Store(cache))
    written = write_output(art, target, overwrite, rt.quiet)
    emit(art, json_out, video=written)


def inject(
    emb: Annotated[str, typer.Option("--emb", help="Hash of a `guide --opt-mode emb` artifact.", show_default=False)],
    prompt: PromptOpt,
    negative_prompt: Annotated[Optional[str], setting(InjectConfig, "negative_prompt")] = None,
    seed: Annotated[Optional[int], setting(InjectConfig, "seed")] = None,
    cfg: Annotated[Optional[float], setting(InjectConfig, "cfg", "--cfg")] = None,
    no_injection: NoInjectionOpt = False,
    model: ModelOpt = None,
    out: OutOpt = None,
    fmt: FormatOpt = None,
    overwrite: OverwriteOpt = False,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Zero-shot motion transfer: reuse a guide run's optimised embeddings on a new prompt (no optimisation)."""
    from ditflow.stages import inject as run
    from ditflow.store import Store

    from ._common import check_out, emit, runtime, write_output

    target = check_out(out, fmt, overwrite)
    icfg = InjectConfig(prompt=prompt, negative_prompt=negative_prompt, seed=seed, cfg=cfg,
                        injection=False if no_injection else None)
    rt = runtime({}, device=device, cpu_offload=cpu_offload or None, quiet=quiet or None)
    art = run(emb, icfg, model=model, runtime=rt, store=Store(cache))
    written = write_output(art, target, overwrite, rt.quiet)
    emit(art, json_out, video=written)


def register(app: typer.Typer) -> None:
    app.command()(guide)
