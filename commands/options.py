"""Options shared by several commands, defined once."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="Cache folder (default: $DITFLOW_CACHE, else the user cache dir).", show_default=False)]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars or logs on stderr.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON object on stdout instead of plain text.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the video here.", show_default=False)]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="mp4, gif or png (a folder of numbered PNG frames, lossless). Default: from --out's suffix, else mp4.", show_default=False)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists. A png folder is replaced frame by frame (0000.png...; stale frames beyond the new count go) and only when it holds nothing but such frames: any other file in it is refused, never deleted.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML or YAML file of settings; flags override it.", show_default=False)]
DeviceOpt = Annotated[Optional[str], typer.Option("--device", help="cuda, cuda:1, cpu... Default: cuda if available.", show_default=False)]
CpuOffloadOpt = Annotated[bool, typer.Option("--cpu-offload", help="Keep idle submodels on the CPU (saves GPU memory).")]
NoInjectionOpt = Annotated[bool, typer.Option("--no-injection", help="No KV injection from the reference.")]
