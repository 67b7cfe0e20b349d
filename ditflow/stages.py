"""The stages: cache look-up -> compute -> store, each returning a typed artifact.

    extract(video, ExtractConfig) -> AmfArtifact     reference AMF (and what MOFT/SMM/injection need)
    guide(amf, GuideConfig)       -> GenArtifact     guided generation
    inject(gen, InjectConfig)     -> GenArtifact     zero-shot reuse of a guide run's embeddings
"""
from __future__ import annotations

import hashlib
import os
import time
from dataclasses import replace

from . import artifacts
from .artifacts import AmfArtifact, GenArtifact
from .backbones import ResolvedModel, load_backbone, resolve_model
from .backbones.source import check_toy_prompt
from .checks import check_rules
from .config import (ExtractConfig, GuideConfig, InjectConfig, RuntimeOptions, from_settings, hashed_settings, settings)
from .errors import IncompatibleArtifact, InputError
from .fileio import printable
from .finite import check_finite
from .image import IMAGE_FITS, image_digest
from .progress import Progress
from .store import Store, content_key, hash_file_into
from .video import check_input, fit_frames, fit_note, read_range

AMF_FORMAT = 4  # part of the hash: a format change never reuses an older cache's artifacts


# -------------------------------------------------------------------------------------------- helpers
def video_digest(path: str | os.PathLike) -> str:
    """sha256 of a video file's bytes, or of a frame folder's (name, bytes) pairs."""
    path = check_input(path)  # a FIFO or device would never finish hashing
    h = hashlib.sha256()
    files = sorted(p for p in path.iterdir() if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            h.update(os.fsencode(f.name) + b"\0")  # the name's bytes: a non-UTF-8 name has no str encoding
        hash_file_into(h, f)
    return h.hexdigest()


def _model(arg: str, resolved: ResolvedModel | None) -> ResolvedModel:
    """The model `arg` names: `resolved` when the caller resolved it already (a batch does, once)."""
    return resolved if resolved is not None and resolved.arg == arg else resolve_model(arg)


# -------------------------------------------------------------------------------------------- extract
def check_extract(cfg: ExtractConfig, resolved: ResolvedModel | None = None) -> tuple[ExtractConfig, ResolvedModel]:
    """`cfg` resolved against its model and checked (sizes, blocks) from config files alone."""
    cfg.validate()
    spec = _model(cfg.model, resolved)
    cfg = spec.extract_config(cfg)
    spec.geometry(cfg.frames, cfg.height, cfg.width)  # size errors before any weights load
    spec.check_blocks(cfg.blocks, "--blocks")
    return cfg, spec


def extract(video: str | os.PathLike, cfg: ExtractConfig = ExtractConfig(), *, runtime: RuntimeOptions = RuntimeOptions(),
            store: Store | None = None, resolved: ResolvedModel | None = None) -> AmfArtifact:
    """Reference AMF of `video` at the guidance blocks. A cache hit loads no model. `resolved`: `cfg.model`
    resolved already (a batch resolves it once for all its rows)."""
    store = store or Store()
    progress = Progress(runtime.quiet)
    cfg.validate()
    runtime.validate()
    digest = video_digest(video)
    cfg, spec = check_extract(cfg, resolved)
    inputs = {**settings(cfg), "model_arg": cfg.model, "model": spec.identity, "video_sha256": digest,
              "format": AMF_FORMAT}
    if cfg.frame_range is None:  # hashed only when given: the AMFs of whole videos keep their hashes
        del inputs["frame_range"]
    if not cfg.timestep and not spec.adapter.needs_image:  # a clean reference keeps the hashes it had before the
        del inputs["timestep"], inputs["seed"]  # setting (an image-to-video model's condition may draw from the seed)
    h = content_key("amf", inputs)
    if store.exists(h):
        progress.log(f"cache hit: amf {h[:12]}")
        art = artifacts.load(store, h, "amf")
        if art.meta.get("input_note"):  # the same video was fitted the same way: say so again
            progress.log(f"note: {art.meta['input_note']}")
        return art
    store.check_writable()  # after the hit check (a read-only cache still serves hits), before any model loads

    frames, offered = read_range(video, cfg.frames, cfg.frame_range)
    if len(frames) < cfg.frames:
        where = "" if cfg.frame_range is None else f" in --frame-range {','.join(map(str, cfg.frame_range))}"
        raise InputError(f"{printable(video)} has {len(frames)} frames{where}, fewer than the {cfg.frames} asked (--frames)")
    offered_size = frames.shape[1:3]  # the reference's own (height, width): an image's aspect is checked against it
    note = fit_note(frames.shape[:3], offered, cfg.height, cfg.width, cfg.crop)
    if note:
        progress.log(f"note: {note}")
    frames = fit_frames(frames, cfg.height, cfg.width, cfg.crop)

    from .plan.api import fit_runtime
    from .runs import reference_tensors

    # offload, tiling and the text encoder's place: what fits the GPU (or --max-memory), else refused here
    runtime = fit_runtime(cfg.model, cfg, None, runtime, image=spec.adapter.needs_image, stage="extract")
    progress.log(f"loading {cfg.model} ...")
    backbone = load_backbone(spec, cfg.dtype, runtime)
    geo = backbone.geometry(cfg.frames, cfg.height, cfg.width)
    with progress.task("extract", total=4) as bar:
        ref = reference_tensors(backbone, frames, cfg, bar.advance)
    latent = ref["latent"]
    extra = {"grid": list(geo.grid), "source": str(video), "latent_shape": list(latent.shape), "input_note": note,
             "source_size": list(offered_size)}
    with store.writer(h, "amf", inputs, extra=extra) as folder:
        artifacts.write_amf(folder, frames=frames, latent=latent, amf=ref["amf"], features=ref["features"],
                            moft=ref["moft"], confidence=ref["confidence"], soft=ref["soft"])
    return artifacts.load(store, h, "amf")


# ---------------------------------------------------------------------------------------------- guide
def _check_amf_matches(amf: AmfArtifact, model: str | None, frames: int | None, height: int | None, width: int | None) -> None:
    inp = amf.inputs
    if model is not None and resolve_model(model).identity != inp["model"]:
        raise IncompatibleArtifact(f"AMF {amf.hash[:12]} was extracted with model '{inp['model_arg']}', not '{model}'; "
                                   f"extract again with --model {model}")
    for name, value in (("frames", frames), ("height", height), ("width", width)):
        if value is not None and value != inp[name]:
            raise IncompatibleArtifact(f"AMF {amf.hash[:12]} has {name} {inp[name]}, but this run asks for {value}; "
                                       f"extract again with --{name} {value}")


def _generate(spec: ResolvedModel, amf: AmfArtifact, gcfg: GuideConfig, runtime: RuntimeOptions, progress: Progress,
              replay: dict | None = None, image=None, store: Store | None = None):
    """The denoising run shared by guide and inject (`gcfg` resolved and checked). Returns (latent, frames, guide
    or None, seconds, peak memory): seconds of loading, sampling (the denoising loop with its guidance) and decoding,
    and the run's peak memory after loading (`memory.PeakMemory`), recorded with the artifact."""
    import torch

    from .memory import PeakMemory
    from .plan.api import fit_runtime
    from .runs import prepare_run
    from .sampling import sample

    inp = amf.inputs
    spec.check_blocks(gcfg.injection_blocks, "--injection-blocks")  # from its config, before the weights
    # checkpointing, tiling, offload, the text encoder's place: what fits the GPU (or --max-memory), else refused here
    runtime = fit_runtime(inp["model_arg"], from_settings(ExtractConfig, inp), gcfg, runtime, image=image is not None,
                          stage="guide")
    progress.log(f"loading {spec.arg} ...")
    start = time.perf_counter()
    backbone = load_backbone(spec, inp["dtype"], runtime, family=gcfg.family, image=image is not None,
                             keeps_latent=replay is None and gcfg.guidance and gcfg.opt_mode == "latent")
    geo = backbone.geometry(inp["frames"], inp["height"], inp["width"])
    peak = PeakMemory(backbone.device)
    peak.start()  # after loading: the CPU figure is what the run holds above the weights
    run = prepare_run(backbone, amf, gcfg, runtime, replay=replay, image=image, store=store,
                      on_loss=lambda r: progress.note(f"t={r['timestep']} loss {r['loss']:.4f}"))
    device, timesteps, guide = backbone.device, run.timesteps, run.guide
    loaded = time.perf_counter()
    with progress.task("denoise", total=len(timesteps)) as bar:
        latent = sample(run.denoise, run.x, timesteps, backbone, run.state, guide=guide, callback=lambda **_: bar.advance())
    if device.type == "cuda":  # time the kernels, not their launches
        torch.cuda.synchronize(device)
    sampled = time.perf_counter()
    latent = backbone.final_latent(latent, run.cond)
    frames = backbone.decode(latent, geo)  # drops CogVideoX 1.5's padding frames
    end = time.perf_counter()
    seconds = {"total": end - start, "load": loaded - start, "sample": sampled - loaded, "decode": end - sampled,
               "guidance_steps": list(getattr(guide, "seconds", []))}
    return latent, frames, guide, seconds, peak.result()


def check_guide(cfg: GuideConfig, spec: ResolvedModel) -> GuideConfig:
    """`cfg` resolved against the model and checked before any file of it is read (the family's settings, the
    guidance range, a toy model's words): a cache hit needs no model. `_generate` checks the blocks against its
    config before loading."""
    resolved = spec.guide_config(cfg)
    _check_prompts(spec, resolved)
    return resolved


def _check_prompts(spec: ResolvedModel, cfg: GuideConfig) -> None:
    """A toy model's vocabulary (the encoder checks again as it encodes)."""
    if spec.vocabulary is not None:
        for text in (cfg.prompt, cfg.negative_prompt or ""):
            check_toy_prompt(text, spec.vocabulary, spec.arg)


def _image_input(spec: ResolvedModel, amf: AmfArtifact, image, fit: str, progress: Progress, stored=None):
    """The fitted uint8 image of a run (`image`: a file; else `stored`, an earlier run's), or None; checked against
    what the model takes (`run_adapter`) before any weights load."""
    from .image import aspect_warning, load_image

    if fit not in IMAGE_FITS:  # checked with or without an image: a bad value is never silently ignored
        raise InputError(f"--image-fit must be one of {', '.join(IMAGE_FITS)}, not {fit!r}")
    pixels = stored
    if image is not None:
        pic = load_image(image, amf.inputs["height"], amf.inputs["width"], fit)
        for line in (pic.note and f"note: {pic.note}",
                     aspect_warning(pic.source_hw, tuple(amf.meta.get("source_size") or pic.source_hw), fit)):
            if line:
                progress.log(line)
        pixels = pic.pixels
    spec.run_adapter(pixels is not None)
    return pixels


def guide(amf_ref: str, cfg: GuideConfig, *, image: str | os.PathLike | None = None, image_fit: str = "crop",
          model: str | None = None, frames: int | None = None, height: int | None = None, width: int | None = None,
          runtime: RuntimeOptions = RuntimeOptions(), store: Store | None = None,
          resolved: ResolvedModel | None = None) -> GenArtifact:
    """Guided generation against the reference AMF `amf_ref` (hash or prefix). model/frames/height/width,
    when given, must match the AMF's (it is the reference they were extracted at). `image`: the picture an
    image-to-video model animates (fitted by `image_fit`). `resolved`: the AMF's model resolved already."""
    store = store or Store()
    progress = Progress(runtime.quiet)
    if not cfg.prompt.strip():
        raise InputError("--prompt is required and must not be empty")
    runtime.validate()
    amf = artifacts.load(store, amf_ref, "amf")
    _check_amf_matches(amf, model, frames, height, width)
    spec = _model(amf.inputs["model_arg"], resolved)
    cfg = check_guide(cfg, spec)
    pixels = _image_input(spec, amf, image, image_fit, progress)
    inputs = {"amf": amf.hash, "model": amf.inputs["model"], **hashed_settings(cfg)}
    if pixels is not None:  # hashed only when given: text-to-video runs keep their hashes
        inputs["image"] = image_digest(pixels)
        inputs["image_frame"] = "fixed"  # latent mode no longer steps the picture's latent frame: older gens differ
    h = content_key("gen", inputs)
    if store.exists(h):
        progress.log(f"cache hit: gen {h[:12]}")
        return artifacts.load(store, h, "gen")
    store.check_writable()
    latent, frames_out, g, seconds, peak = _generate(spec, amf, cfg, runtime, progress, image=pixels, store=store)
    embeddings = getattr(g, "embeddings", {})
    check_finite("the optimised embeddings", *embeddings.values(), hint="try a lower --lr")  # what inject replays
    extra = {"settings": settings(cfg), "losses": g.losses if g is not None else [], "stage": "guide",
             "embedding_timesteps": sorted(embeddings), "seconds": seconds, "peak_memory": peak}  # meta: not hashed
    with store.writer(h, "gen", inputs, parents=[amf.hash], extra=extra) as folder:
        artifacts.write_gen(folder, frames=frames_out, latent=latent, embeddings=embeddings, image=pixels)
    return artifacts.load(store, h, "gen")


def inject(emb_ref: str, cfg: InjectConfig, *, image: str | os.PathLike | None = None, image_fit: str = "crop",
           model: str | None = None, runtime: RuntimeOptions = RuntimeOptions(), store: Store | None = None,
           resolved: ResolvedModel | None = None) -> GenArtifact:
    """Zero-shot motion transfer: generate `cfg.prompt` with the embeddings of an emb-mode guide run.
    `model`, when given, must be the model of that run (checked). An image-to-video run animates that run's
    image again unless `image` gives another."""
    store = store or Store()
    progress = Progress(runtime.quiet)
    if not cfg.prompt.strip():
        raise InputError("--prompt is required and must not be empty")
    check_rules(cfg)
    runtime.validate()
    src = artifacts.load(store, emb_ref, "gen")
    # Everything replayed comes from the inputs, which the store checked against the hash; meta's
    # "settings" and "parents" are unhashed copies that an edit could change unnoticed.
    if "emb" in src.inputs or src.opt_mode != "emb":
        method = src.inputs.get("method", "ditflow")
        why = "" if method == "ditflow" else f" (--method {method} leaves nothing to replay)"
        raise IncompatibleArtifact(f"artifact {src.hash[:12]} holds no optimised embeddings{why}: inject needs a "
                                   f"`ditflow guide --opt-mode emb` or `--method ropecraft` result")
    amf = artifacts.load(store, src.inputs["amf"], "amf")
    _check_amf_matches(amf, model, None, None, None)
    spec = _model(amf.inputs["model_arg"], resolved)
    base = from_settings(GuideConfig, src.inputs)  # the verified, hashed inputs: not an editable copy
    gcfg = replace(base, prompt=cfg.prompt, guidance=False,
                   negative_prompt=base.negative_prompt if cfg.negative_prompt is None else cfg.negative_prompt,
                   seed=base.seed if cfg.seed is None else cfg.seed, cfg=base.cfg if cfg.cfg is None else cfg.cfg,
                   injection=base.injection if cfg.injection is None else cfg.injection)
    gcfg.validate()
    gcfg.check_steps()
    _check_prompts(spec, gcfg)
    pixels = _image_input(spec, amf, image, image_fit, progress, stored=src.image)
    inputs = {"emb": src.hash, "amf": amf.hash, "model": amf.inputs["model"], **hashed_settings(gcfg)}
    if pixels is not None:
        inputs["image"] = image_digest(pixels)
    h = content_key("gen", inputs)
    if store.exists(h):
        progress.log(f"cache hit: gen {h[:12]}")
        return artifacts.load(store, h, "gen")
    store.check_writable()
    latent, frames_out, _, seconds, peak = _generate(spec, amf, gcfg, runtime, progress, replay=src.embeddings(), image=pixels)
    extra = {"settings": settings(gcfg), "losses": [], "stage": "inject", "seconds": seconds, "peak_memory": peak}
    with store.writer(h, "gen", inputs, parents=[amf.hash, src.hash], extra=extra) as folder:
        artifacts.write_gen(folder, frames=frames_out, latent=latent, embeddings={}, image=pixels)
    return artifacts.load(store, h, "gen")


__all__ = ["check_extract", "check_guide", "extract", "guide", "inject", "InjectConfig", "video_digest"]
