"""What the one-pass probes (probe_amf, probe_text) share: the model, without gradient checkpointing, and the
held-out references of its world."""
from __future__ import annotations


def load(model_arg: str):
    """(preset, backbone, geometry, Model) for `--model` at its default size."""
    from ditflow.backbones import load_backbone, preset
    from ditflow.config import RuntimeOptions
    from ditflow.model import Model

    pre = preset(model_arg)
    backbone = load_backbone(model_arg, pre.dtype, RuntimeOptions(quiet=True, gradient_checkpointing=False))
    geo = backbone.geometry(pre.frames, pre.height, pre.width)
    return pre, backbone, geo, Model(backbone, geo)


def references(model_arg: str, pre, n: int):
    """(seed, clip) of the first n held-out single-object clips, drawn in the model's world."""
    from ditflow.backbones import resolve_folder
    from ditflow.toyworld.references import held_out_clips, model_world

    world = model_world(resolve_folder(model_arg))
    return held_out_clips(n, pre.frames, pre.height, pre.width, world.radius, shapes=world.shapes)
