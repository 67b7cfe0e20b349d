"""The computations of a stage, given a loaded backbone: what `stages` runs on real weights and `plan` on fake
ones (one code path, so a plan follows every change to it).

    reference_tensors(backbone, frames, cfg)          the extraction: latent, AMF, features, MOFT channels
    prepare_run(backbone, amf, gcfg, ...) -> Run      a guide/inject run up to its first denoising step
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
import torch

from .config import ExtractConfig, GuideConfig, RuntimeOptions, guidance_steps
from .errors import InputError
from .finite import WEIGHTS, check_finite


def reference_tensors(backbone, frames: np.ndarray, cfg: ExtractConfig,
                      advance: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """The reference's latent and, per guidance block, its AMF (argmax and soft), confidence, video features
    and MOFT channels (`cfg` resolved; `frames` fitted uint8 [F, H, W, 3]). `advance(text)` marks progress."""
    from .amf import attention_confidence, attention_motion_flow
    from .losses import moft_channels
    from .model import BlockTaps, Model
    from .processors import QKRecorder

    geo = backbone.geometry(cfg.frames, cfg.height, cfg.width)
    # an image-to-video model sees the reference as an animation of its own first frame
    cond = backbone.condition(frames[0], geo, torch.Generator().manual_seed(cfg.seed)) if backbone.needs_image else None
    model = Model(backbone, geo, cond)
    # the prompt first: the text encoder leaves the GPU before the VAE's encoder needs the room
    text = backbone.encode_prompt(cfg.source_prompt)
    backbone.release_text_encoder()
    advance("encoded prompt")
    latent = backbone.encode_video(frames)
    encoded = backbone.latent_frames(latent)
    if encoded != geo.latent_frames:
        raise InputError(f"{cfg.frames} frames encode to {encoded} latent frames, not {geo.latent_frames}; pick another --frames")
    advance("encoded video")
    recorders = {b: QKRecorder() for b in cfg.blocks}
    t = torch.tensor(cfg.timestep, device=backbone.device)
    seen = latent
    if cfg.timestep:
        noise = torch.randn(latent.shape, generator=torch.Generator().manual_seed(cfg.seed)).to(latent)
        seen = backbone.add_noise(latent, noise, t)
    # the guided expert (a two-expert model's high-noise one) at any timestep: its AMF is what guidance matches
    with torch.no_grad(), backbone.install(recorders), \
            BlockTaps(backbone, cfg.blocks, geo.grid, features=True, stop=True) as taps:
        model.forward(seen, t, text, expert=0)
    advance("transformer pass")
    flows, soft, confidence = {}, {}, {}
    for b, r in recorders.items():
        q, k = r.q.float(), r.k.float()  # one fp32 copy per block for the three maps
        flows[b] = attention_motion_flow(q, k, geo.grid, cfg.temperature, mode="argmax").float()
        soft[b] = attention_motion_flow(q, k, geo.grid, cfg.temperature, mode="soft").float()
        confidence[b] = attention_confidence(q, k, geo.grid, cfg.temperature)
    feats = {b: taps.features[b].float() for b in cfg.blocks}
    check_finite("the reference's latent and AMF", latent, *soft.values(), *confidence.values(), *feats.values(),
                 hint=f"try a lower --temperature; {WEIGHTS}")  # before MOFT's SVD, which fails on NaN
    moft = {b: moft_channels(f, cfg.moft_fraction) for b, f in feats.items()}
    advance("AMF")
    return {"latent": latent, "amf": flows, "soft": soft, "confidence": confidence, "features": feats, "moft": moft}


@dataclass
class Run:
    """A run readied for its denoising loop: what `sampling.sample` takes, and what comes after it."""

    model: Any
    denoise: Any
    guide: Any
    x: torch.Tensor
    state: Any
    timesteps: torch.Tensor
    cond: Any


def prepare_run(backbone, amf, gcfg: GuideConfig, runtime: RuntimeOptions, *, replay: dict | None = None,
                image: np.ndarray | None = None, store=None, on_loss: Callable | None = None) -> Run:
    """Prompts encoded, noise drawn, KV injection and the guide (the method's, or a replay of embeddings) built,
    as the pipelines order them (`gcfg` resolved; `amf`: the reference's artifact)."""
    from .guides import ReplayGuide
    from .injection import KVInjection
    from .methods import BuildContext, get_method
    from .methods.common import reference_condition
    from .model import Model
    from .sampling import Denoiser

    inp = amf.inputs
    geo = backbone.geometry(inp["frames"], inp["height"], inp["width"])
    device, dtype = backbone.device, backbone.dtype
    neg, pos = backbone.encode_prompt(gcfg.negative_prompt), backbone.encode_prompt(gcfg.prompt)
    text = torch.cat([neg, pos])
    method = get_method(gcfg.method)
    own_prompts = {p: backbone.encode_prompt(p) for p in method.prompts} if replay is None and gcfg.guidance else {}
    backbone.release_text_encoder()
    timesteps = backbone.timesteps(gcfg.steps)
    generator = torch.Generator().manual_seed(gcfg.seed)
    cond = None if image is None else backbone.condition(image, geo, generator)  # before the noise, as the pipelines
    x = backbone.initial_noise(geo, generator)
    noise = x.clone()
    model = Model(backbone, geo, cond)
    state = backbone.sampler_state(generator)
    active = guidance_steps(gcfg.steps, gcfg.guidance_range)
    injection = None
    if gcfg.injection and gcfg.injection_blocks:
        # the reference's pass is conditioned on its own first frame, as at extraction
        injection = KVInjection(model, gcfg.injection_blocks, amf.latent().to(device, dtype), noise, pos, set(active),
                                reference_condition(model, amf, gcfg.seed))
    denoise = Denoiser(model, text, gcfg.cfg, gcfg.steps, injection)
    guide = None
    if replay is not None:
        guide = ReplayGuide(model, replay)
    elif gcfg.guidance:
        ctx = BuildContext(model=model, amf=amf, cfg=gcfg, steps_active=active, text=text, text_pos=pos,
                           injection=injection, noise=noise, runtime=runtime, prompts=own_prompts, store=store,
                           on_loss=on_loss)
        guide = get_method(gcfg.method).build(ctx)
    return Run(model, denoise, guide, x, state, timesteps, cond)
