from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ditflow.config import ExtractConfig

from .options import CacheOpt, ConfigOpt, CpuOffloadOpt, DeviceOpt, JsonOpt, QuietOpt, setting


def extract(
    video: Annotated[Path, typer.Argument(help="Reference video: mp4/mov/gif, or a folder of frames.", show_default=False)],
    model: Annotated[Optional[str], setting(ExtractConfig, "model", extra="[default: 5b]")] = None,
    frames: Annotated[Optional[int], setting(ExtractConfig, "frames")] = None,
    height: Annotated[Optional[int], setting(ExtractConfig, "height")] = None,
    width: Annotated[Optional[int], setting(ExtractConfig, "width")] = None,
    blocks: Annotated[Optional[str], setting(ExtractConfig, "blocks")] = None,
    temperature: Annotated[Optional[float], setting(ExtractConfig, "temperature", extra="[default: 2]")] = None,
    frame_range: Annotated[Optional[str], setting(ExtractConfig, "frame_range", "--frame-range")] = None,
    crop: Annotated[Optional[str], setting(ExtractConfig, "crop", extra="[default: none]")] = None,
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
    from ditflow.config_file import apply_overrides, section
    from ditflow.stages import extract as run
    from ditflow.store import Store

    from ._common import emit, file_settings, parse_ints, parse_range, runtime

    data = file_settings(config)
    flags = {"model": model, "frames": frames, "height": height, "width": width,
             "blocks": parse_ints(blocks, "--blocks"), "temperature": temperature, "crop": crop,
             "frame_range": parse_range(frame_range)}
    cfg = apply_overrides(ExtractConfig(), section(ExtractConfig(), data, "extract"), flags)
    art = run(video, cfg, runtime=runtime(data, device=device, cpu_offload=cpu_offload or None, quiet=quiet or None),
              store=Store(cache))
    emit(art, json_out, grid=list(art.grid), blocks=art.blocks)


def register(app: typer.Typer) -> None:
    app.command()(extract)
