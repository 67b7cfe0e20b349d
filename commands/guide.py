"""`ditflow guide` and `ditflow inject`: guided generation and zero-shot reuse. Each setting's help comes
from its config field (ditflow/config.py), written once; each flag is declared once, in the signature, under
its field's name, and `flag_settings` maps the parameters onto the config."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ditflow.config import GuideConfig, InjectConfig, RuntimeOptions

from .options import (FAST, GUIDANCE, SAMPLING, WHAT, AudioCfgOpt, CfgRescaleOpt, ModalityCfgOpt, StgScaleOpt, CacheOpt, CheckpointingOpt, MaxMemoryOpt, TextEncoderOpt, VaeTilingOpt, CfgLowNoiseOpt, CfgOpt, ConfigOpt, CpuOffloadOpt,
                      DeviceOpt, DynamicCfgOpt, ImageFitOpt, ImageOpt, FastOpt, FormatOpt, GuidanceRangeOpt, JsonOpt, LrOpt, NegativePromptOpt, NoInjectionOpt,
                      OptStepsOpt, OutOpt, OverwriteOpt, QuietOpt, SchedulerOpt, StepsOpt, Command, MethodOpt,
                      method_setting, option, setting)

PromptOpt = Annotated[str, setting(GuideConfig, "prompt", "--prompt", "-p", panel=WHAT)]
ModelOpt = Annotated[Optional[str], option("--model", metavar="MODEL", panel=WHAT, show_default=False,
                                           help="Must be the AMF's model (checked); default: the AMF's.")]


def guide(
    amf: Annotated[str, option("--amf", metavar="HASH", panel=WHAT, show_default=False,
                               help="Hash (or unique prefix) of an `extract` artifact.")],
    prompt: PromptOpt,
    negative_prompt: NegativePromptOpt = None,
    seed: Annotated[Optional[int], setting(GuideConfig, "seed", panel=WHAT)] = None,
    image: ImageOpt = None,
    image_fit: ImageFitOpt = "crop",
    model: ModelOpt = None,
    method: MethodOpt = None,
    opt_mode: Annotated[Optional[str], setting(GuideConfig, "opt_mode", panel=GUIDANCE)] = None,
    loss: Annotated[Optional[str], setting(GuideConfig, "loss", panel=GUIDANCE)] = None,
    opt_steps: OptStepsOpt = None,
    lr: LrOpt = None,
    guidance_range: GuidanceRangeOpt = None,
    loss_weighting: Annotated[Optional[str], setting(GuideConfig, "loss_weighting", panel=GUIDANCE)] = None,
    reference_flow: Annotated[Optional[str], setting(GuideConfig, "reference_flow", panel=GUIDANCE)] = None,
    emb_param: Annotated[Optional[str], setting(GuideConfig, "emb_param", panel=GUIDANCE)] = None,
    no_guidance: Annotated[bool, option("--no-guidance", panel=GUIDANCE,
                                        help="No optimisation (the paper's injection-only / backbone runs).")] = False,
    no_injection: NoInjectionOpt = False,
    injection_blocks: Annotated[Optional[str], setting(GuideConfig, "injection_blocks", panel=GUIDANCE)] = None,
    steps: StepsOpt = None,
    cfg: CfgOpt = None,
    scheduler: SchedulerOpt = None,
    dynamic_cfg: DynamicCfgOpt = None,
    cfg_low_noise: CfgLowNoiseOpt = None,
    audio_cfg: AudioCfgOpt = None,
    modality_cfg: ModalityCfgOpt = None,
    cfg_rescale: CfgRescaleOpt = None,
    stg_scale: StgScaleOpt = None,
    fast: FastOpt = False,
    amf_window: Annotated[Optional[int], setting(GuideConfig, "amf_window", panel=FAST)] = None,
    amf_frame_distance: Annotated[Optional[int], setting(GuideConfig, "amf_frame_distance", panel=FAST)] = None,
    grad_reuse: Annotated[Optional[int], setting(GuideConfig, "grad_reuse", panel=FAST)] = None,
    alpha: Annotated[Optional[float], method_setting("alpha")] = None,
    beta: Annotated[Optional[float], method_setting("beta")] = None,
    gamma: Annotated[Optional[float], method_setting("gamma")] = None,
    source_latent: Annotated[Optional[str], method_setting("source_latent")] = None,
    flow: Annotated[Optional[str], method_setting("flow")] = None,
    flow_smoothing: Annotated[Optional[float], method_setting("flow_smoothing")] = None,
    mse_weight: Annotated[Optional[float], method_setting("mse_weight")] = None,
    window: Annotated[Optional[int], method_setting("window")] = None,
    tile: Annotated[Optional[str], method_setting("tile")] = None,
    pair_distance: Annotated[Optional[int], method_setting("pair_distance")] = None,
    far_weight: Annotated[Optional[float], method_setting("far_weight")] = None,
    amf_weight: Annotated[Optional[float], method_setting("amf_weight")] = None,
    window_weight: Annotated[Optional[float], method_setting("window_weight")] = None,
    attn_temperature: Annotated[Optional[float], method_setting("attn_temperature")] = None,
    out: OutOpt = None,
    fmt: FormatOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = None,
    gradient_checkpointing: CheckpointingOpt = None,
    text_encoder: TextEncoderOpt = None,
    vae_tiling: VaeTilingOpt = None,
    max_memory: MaxMemoryOpt = None,
) -> None:
    """Generate a video whose motion follows the reference AMF; print the `gen` artifact's hash."""
    params = dict(locals())
    from ditflow.stages import guide as run
    from ditflow.store import Store

    from ._common import check_out, emit, write_output

    target = check_out(out, fmt, overwrite, inputs=[("--config", config)], cache=Store(cache).root)
    gcfg, rt = guide_configs(params)
    art = run(amf, gcfg, image=image, image_fit=image_fit, model=model, runtime=rt, store=Store(cache))
    written = write_output(art, target, overwrite, rt.quiet)
    emit(art, as_json, video=written)


def inject(
    emb: Annotated[str, option("--emb", metavar="HASH", panel=WHAT, show_default=False,
                               help="Hash of a `guide --opt-mode emb` artifact.")],
    prompt: PromptOpt,
    negative_prompt: Annotated[Optional[str], setting(InjectConfig, "negative_prompt", panel=WHAT)] = None,
    seed: Annotated[Optional[int], setting(InjectConfig, "seed", panel=WHAT)] = None,
    image: Annotated[Optional[Path], option("--image", metavar="FILE", panel=WHAT, show_default=False,
                                            help="Image-to-video: another picture to animate. [default: the guide run's]")] = None,
    image_fit: ImageFitOpt = "crop",
    model: ModelOpt = None,
    cfg: Annotated[Optional[float], setting(InjectConfig, "cfg", "--cfg", panel=SAMPLING)] = None,
    no_injection: NoInjectionOpt = False,
    out: OutOpt = None,
    fmt: FormatOpt = None,
    overwrite: OverwriteOpt = False,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = None,
    text_encoder: TextEncoderOpt = None,
    vae_tiling: VaeTilingOpt = None,
    max_memory: MaxMemoryOpt = None,
) -> None:
    """Zero-shot motion transfer: reuse a guide run's optimised embeddings on a new prompt (no optimisation)."""
    params = dict(locals())
    from ditflow.stages import inject as run
    from ditflow.store import Store

    from ._common import check_out, emit, write_output

    target = check_out(out, fmt, overwrite, cache=Store(cache).root)
    icfg, rt = inject_configs(params)
    art = run(emb, icfg, image=image, image_fit=image_fit, model=model, runtime=rt, store=Store(cache))
    written = write_output(art, target, overwrite, rt.quiet)
    emit(art, as_json, video=written)


def guide_configs(params: dict) -> tuple[GuideConfig, RuntimeOptions]:
    """guide's settings from its parameters (its config file under them); shared with `ditflow ui`, which parses
    its form as these flags, so a page run hashes as the same command line would."""
    from ditflow.config_file import apply_overrides, section

    from ._common import file_settings, flag_settings, runtime

    data = file_settings(params.get("config"))
    gcfg = apply_overrides(GuideConfig(), section(GuideConfig(), data, "guide"), flag_settings(GuideConfig, params))
    return gcfg, runtime(data, **flag_settings(RuntimeOptions, params))


def inject_configs(params: dict) -> tuple[InjectConfig, RuntimeOptions]:
    """inject's settings from its parameters (shared with `ditflow ui`)."""
    from ._common import flag_settings, runtime

    return InjectConfig(**flag_settings(InjectConfig, params)), runtime({}, **flag_settings(RuntimeOptions, params))


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(guide)
