"""What the one-pass probes (probe_amf, probe_text) share: the model, without gradient checkpointing, and the
held-out references of its world."""
from __future__ import annotations


def load(model_arg: str):
    """(preset, backbone, geometry, Model) for `--model` at its default size."""
    from ditflow.backbones import load_backbone, resolve_model
    from ditflow.config import RuntimeOptions
    from ditflow.model import Model

    spec = resolve_model(model_arg)
    pre = spec.preset
    backbone = load_backbone(spec, pre.dtype, RuntimeOptions(quiet=True, gradient_checkpointing=False), pre.family)
    geo = backbone.geometry(pre.frames, pre.height, pre.width)
    return pre, backbone, geo, Model(backbone, geo)


def references(model_arg: str, pre, n: int):
    """(seed, clip) of the first n held-out single-object clips, drawn in the model's world."""
    from ditflow.backbones import resolve_model
    from ditflow.toyworld.references import held_out_clips, model_world

    world = model_world(resolve_model(model_arg).folder)
    return held_out_clips(n, pre.frames, pre.height, pre.width, world.radius, shapes=world.shapes)
