"""`ditflow extract`: the Attention Motion Flow of a reference video, as a cached `amf` artifact."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ditflow.config import ExtractConfig, RuntimeOptions

from .options import (VIDEO, BlocksOpt, CacheOpt, ConfigOpt, CpuOffloadOpt, CropOpt, DeviceOpt, FramesOpt, HeightOpt,
                      JsonOpt, MaxMemoryOpt, ModelSetting, QuietOpt, TextEncoderOpt, VaeTilingOpt, WidthOpt, Command,
                      argument, setting)


def extract(
    video: Annotated[Path, argument(metavar="VIDEO", help="Reference video: mp4/mov/gif, or a folder of frames.")],
    model: ModelSetting = None,
    frames: FramesOpt = None,
    height: HeightOpt = None,
    width: WidthOpt = None,
    blocks: BlocksOpt = None,
    temperature: Annotated[Optional[float], setting(ExtractConfig, "temperature", panel=VIDEO)] = None,
    frame_range: Annotated[Optional[str], setting(ExtractConfig, "frame_range", "--frame-range", panel=VIDEO,
                                                  metavar="START,END,STEP")] = None,
    crop: CropOpt = None,
    timestep: Annotated[Optional[int], setting(ExtractConfig, "timestep", panel=VIDEO)] = None,
    seed: Annotated[Optional[int], setting(ExtractConfig, "seed", panel=VIDEO)] = None,
    as_json: JsonOpt = False,
    quiet: QuietOpt = False,
    config: ConfigOpt = None,
    cache: CacheOpt = None,
    device: DeviceOpt = None,
    cpu_offload: CpuOffloadOpt = None,
    text_encoder: TextEncoderOpt = None,
    vae_tiling: VaeTilingOpt = None,
    max_memory: MaxMemoryOpt = None,
) -> None:
    """Extract the Attention Motion Flow of a reference video; print the artifact's hash.

    Same video, model and settings again is a cache hit that loads no model.
    """
    params = dict(locals())
    from ditflow.stages import extract as run
    from ditflow.store import Store

    from ._common import emit

    cfg, rt = configs(params)
    art = run(video, cfg, runtime=rt, store=Store(cache))
    emit(art, as_json, grid=list(art.grid), blocks=art.blocks)


def configs(params: dict) -> tuple[ExtractConfig, RuntimeOptions]:
    """The stage's settings from the command's parameters (its config file under them): shared with `ditflow ui`,
    which parses its form as these flags, so a page run hashes as the same command line would."""
    from ditflow.config_file import apply_overrides, section

    from ._common import file_settings, flag_settings, runtime

    data = file_settings(params.get("config"))
    cfg = apply_overrides(ExtractConfig(), section(ExtractConfig(), data, "extract"), flag_settings(ExtractConfig, params))
    return cfg, runtime(data, **flag_settings(RuntimeOptions, params))


def register(app: typer.Typer) -> None:
    app.command(cls=Command)(extract)
