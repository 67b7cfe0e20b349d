from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from .options import CacheOpt, ConfigOpt, CpuOffloadOpt, DeviceOpt, JsonOpt, QuietOpt


def extract(
    video: Annotated[Path, typer.Argument(help="Reference video: mp4/mov/gif, or a folder of frames.", show_default=False)],
    model: Annotated[Optional[str], typer.Option(help="5b, 2b, toy, a Hugging Face id or a local diffusers folder. [default: 5b]", show_default=False)] = None,
    frames: Annotated[Optional[int], typer.Option(help="Frames to take from the start. [default: the model's, 24 for 2b/5b]", show_default=False)] = None,
    height: Annotated[Optional[int], typer.Option(help="Resize height. [default: the model's, 480]", show_default=False)] = None,
    width: Annotated[Optional[int], typer.Option(help="Resize width. [default: the model's, 720]", show_default=False)] = None,
    blocks: Annotated[Optional[str], typer.Option(help="Guidance blocks, comma-separated. [default: 20 for 5b, 15 for 2b, 6,7 for the toy model]", show_default=False)] = None,
    temperature: Annotated[Optional[float], typer.Option(help="AMF softmax temperature. [default: 2]", show_default=False)] = None,
    crop: Annotated[Optional[str], typer.Option(help="none: squash the video to the model's height and width; center: first crop its largest centred region of that aspect. Either way a note on stderr says what changed. [default: none]", show_default=False)] = None,
    config: ConfigOpt = None,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = False,
    quiet: QuietOpt = False,
    json_out: JsonOpt = False,
) -> None:
    """Extract the Attention Motion Flow of a reference video; print the artifact's hash.

    Same video, model and settings again is a cache hit that loads no model.
    """
    from ditflow.config import ExtractConfig, apply_overrides, section
    from ditflow.stages import extract as run
    from ditflow.store import Store

    from ._common import emit, file_settings, parse_ints, runtime

    data = file_settings(config)
    flags = {"model": model, "frames": frames, "height": height, "width": width,
             "blocks": parse_ints(blocks, "--blocks"), "temperature": temperature, "crop": crop}
    cfg = apply_overrides(ExtractConfig(), section(ExtractConfig(), data, "extract"), flags)
    art = run(video, cfg, runtime=runtime(data, device=device, cpu_offload=cpu_offload or None, quiet=quiet or None),
              store=Store(cache))
    emit(art, json_out, grid=list(art.grid), blocks=art.blocks)


def register(app: typer.Typer) -> None:
    app.command()(extract)
