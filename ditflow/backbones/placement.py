"""Where a loaded pipeline's models live: on the device, behind diffusers' model offload, the text encoder on the CPU
(a plan's choice where it would not fit beside the rest), and the VAE's slicing/tiling; the same for every family."""
from __future__ import annotations

from typing import TYPE_CHECKING, Iterable

if TYPE_CHECKING:
    from ..config import RuntimeOptions


def place_pipeline(pipe, runtime: "RuntimeOptions", device: str, text_parts: Iterable[str]) -> tuple[bool, bool]:
    """Place `pipe`'s models for `runtime` on `device`, frozen; returns (offloaded, text encoder on the CPU)."""
    import torch

    text_parts = set(text_parts)
    offloaded = bool(runtime.cpu_offload) and device.startswith("cuda")
    text_on_cpu = runtime.text_encoder == "cpu" and device != "cpu"
    if offloaded:
        pipe.enable_model_cpu_offload()  # every model to the CPU, each moved over while it runs
        if text_on_cpu:  # ... but the text encoder, which encodes where it is
            from accelerate.hooks import remove_hook_from_module

            for name in text_parts:
                remove_hook_from_module(pipe.components[name], recurse=True)
    for name, part in pipe.components.items():
        if isinstance(part, torch.nn.Module) and not offloaded and not (text_on_cpu and name in text_parts):
            first = next(part.parameters(), None)
            if first is None or first.device != torch.device(device):  # (a fake pipeline's are where they stay)
                part.to(device)
    if runtime.vae_slicing:
        pipe.vae.enable_slicing()
    if runtime.vae_tiling:
        pipe.vae.enable_tiling()
    pipe.set_progress_bar_config(disable=True)
    for part in pipe.components.values():  # every submodel: both experts of a two-expert model too
        if isinstance(part, torch.nn.Module):
            part.requires_grad_(False)
    return offloaded, text_on_cpu
