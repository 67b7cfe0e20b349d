from __future__ import annotations

from typing import Annotated, Optional

import typer

from .options import (CacheOpt, ConfigOpt, CpuOffloadOpt, DeviceOpt, FormatOpt, JsonOpt, NoInjectionOpt, OutOpt,
                      OverwriteOpt, QuietOpt)

PromptOpt = Annotated[str, typer.Option("--prompt", "-p", help="What to generate.", show_default=False)]
NegOpt = Annotated[Optional[str], typer.Option(help="Negative prompt. [default: the paper's]", show_default=False)]
SeedOpt = Annotated[Optional[int], typer.Option(help="Noise seed. [default: 1]", show_default=False)]
CfgOpt = Annotated[Optional[float], typer.Option("--cfg", help="Classifier-free guidance scale. [default: 7]", show_default=False)]


def guide(
    amf: Annotated[str, typer.Option("--amf", help="Hash (or unique prefix) of an `extract` artifact.", show_default=False)],
    prompt: PromptOpt,
    negative_prompt: NegOpt = None,
    opt_mode: Annotated[Optional[str], typer.Option(help="latent: optimise the noisy latent; emb: the positional embeddings (RoPE tables, or sincos for 2b). [default: latent]", show_default=False)] = None,
    loss: Annotated[Optional[str], typer.Option(help="flow (AMF, DiTFlow), moft or smm. [default: flow]", show_default=False)] = None,
    opt_steps: Annotated[Optional[int], typer.Option(help="Adam steps per guidance step. [default: 5]", show_default=False)] = None,
    lr: Annotated[Optional[str], typer.Option(help="Learning rate at the start,end of the guidance range. [default: the model's: 0.002,0.001 for 5b/2b; the toy model: 0.015,0.005 in latent mode, 0.08,0.03 in emb mode]", show_default=False)] = None,
    guidance_range: Annotated[Optional[str], typer.Option(help="HI,LO: guide from step HI to LO counted from the end. [default: 50,40]", show_default=False)] = None,
    loss_weighting: Annotated[Optional[str], typer.Option(help="AMF loss: none (the paper), confidence (weight each entry by how sharply the reference attends there; flat background counts little) or salient (confidence times how distinct the reference patch looks from the rest of its frame: the object over a moving scene) or mutual (confidence times the generated video's own attention confidence, so guidance does not ask a plain background to move). [default: none; the toy model: mutual]", show_default=False)] = None,
    reference_flow: Annotated[Optional[str], typer.Option(help="AMF loss target: the reference's argmax AMF (argmax, the paper) or its soft AMF (soft: expected key positions, scored like the generated side; the entries stay those the argmax marks moving). [default: argmax; the toy model: soft]", show_default=False)] = None,
    emb_param: Annotated[Optional[str], typer.Option(help="emb mode, RoPE models: optimise the tables (table, the paper) or their rotation angles (angle: they stay rotations). [default: table]", show_default=False)] = None,
    emb_after: Annotated[Optional[str], typer.Option(help="emb mode, after the guidance range: restore the model's embeddings (restore, the paper) or carry the last optimised ones to the end (carry). [default: restore]", show_default=False)] = None,
    optimizer: Annotated[Optional[str], typer.Option(help="adam (the paper) or normalized: gradient steps scaled by the gradient's RMS, so entries with small gradients (a plain background) move little. [default: adam]", show_default=False)] = None,
    grad_blur: Annotated[Optional[float], typer.Option(help="latent mode: blur each gradient step over the latent's height and width by a Gaussian of this sigma (latent pixels), so the update moves things rather than painting texture; 0 is off (the paper). [default: 0]", show_default=False)] = None,
    latent_stride: Annotated[Optional[int], typer.Option(help="latent mode: optimise one offset per N x N latent pixels, spread bilinearly over them, so each step moves the latent smoothly instead of painting pixel-scale texture; 1 is every latent pixel (the paper). [default: 1]", show_default=False)] = None,
    no_guidance: Annotated[bool, typer.Option("--no-guidance", help="No optimisation (the paper's injection-only / backbone runs).")] = False,
    no_injection: NoInjectionOpt = False,
    injection_blocks: Annotated[Optional[str], typer.Option(help="Blocks with KV injection. [default: 0]", show_default=False)] = None,
    steps: Annotated[Optional[int], typer.Option(help="Denoising steps. [default: 50]", show_default=False)] = None,
    cfg: CfgOpt = None,
    seed: SeedOpt = None,
    scheduler: Annotated[Optional[str], typer.Option(help="dpm or ddim. [default: dpm for 5b, ddim for 2b]", show_default=False)] = None,
    model: Annotated[Optional[str], typer.Option(help="Must be the AMF's model (checked); default: the AMF's.", show_default=False)] = None,
    out: OutOpt = None,
    fmt: FormatOpt = None,
    overwrite: OverwriteOpt = False,
    config: ConfigOpt = None,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Generate a video whose motion follows the reference AMF; print the `gen` artifact's hash."""
    from ditflow.config import GuideConfig, apply_overrides, section
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
             "seed": seed, "scheduler": scheduler, "emb_param": emb_param, "emb_after": emb_after,
             "loss_weighting": loss_weighting, "reference_flow": reference_flow, "optimizer": optimizer,
             "grad_blur": grad_blur, "latent_stride": latent_stride}
    gcfg = apply_overrides(GuideConfig(), section(GuideConfig(), data, "guide"), flags)
    rt = runtime(data, device=device, cpu_offload=cpu_offload or None, quiet=quiet or None)
    art = run(amf, gcfg, model=model, runtime=rt, store=Store(cache))
    written = write_output(art, target, overwrite, rt.quiet)
    emit(art, json_out, video=written)


def inject(
    emb: Annotated[str, typer.Option("--emb", help="Hash of a `guide --opt-mode emb` artifact.", show_default=False)],
    prompt: PromptOpt,
    negative_prompt: NegOpt = None,
    seed: SeedOpt = None,
    cfg: CfgOpt = None,
    no_injection: NoInjectionOpt = False,
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
    from ditflow.stages import InjectConfig
    from ditflow.stages import inject as run
    from ditflow.store import Store

    from ._common import check_out, emit, runtime, write_output

    target = check_out(out, fmt, overwrite)
    icfg = InjectConfig(prompt=prompt, negative_prompt=negative_prompt, seed=seed, cfg=cfg,
                        injection=False if no_injection else None)
    rt = runtime({}, device=device, cpu_offload=cpu_offload or None, quiet=quiet or None)
    art = run(emb, icfg, runtime=rt, store=Store(cache))
    written = write_output(art, target, overwrite, rt.quiet)
    emit(art, json_out, video=written)


def register(app: typer.Typer) -> None:
    app.command()(guide)
