"""Options shared by several commands, defined once."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ditflow.config import RuntimeOptions


def setting(cls: type, name: str, *flags: str, extra: str = "") -> typer.models.OptionInfo:
    """A Typer option whose help (and choices) come from the config field's metadata, written once there."""
    from ditflow.checks import help_of

    text = " ".join(t for t in (help_of(cls, name), extra) if t)
    return typer.Option(*flags, help=escape(text), show_default=False)


def family_setting(name: str, *flags: str) -> typer.models.OptionInfo:
    """An option for a setting only one model family understands: its help from the family adapter's settings,
    under a help panel named after the family (the registry says which family owns it)."""
    from ditflow.backbones import family_settings
    from ditflow.checks import help_of

    adapter = family_settings()[name]
    text = f"{help_of(adapter.settings, name)} {adapter.family} models only."
    return typer.Option(*flags, help=escape(text), show_default=False, rich_help_panel=f"{adapter.family} models")


def escape(text: str) -> str:
    """Help text as Typer's rich help shows it: `[default: ...]` is text, not a markup tag to swallow."""
    return text.replace("[", "\\[")


CacheOpt = Annotated[Optional[Path], typer.Option("--cache", help="Cache folder (default: $DITFLOW_CACHE, else the user cache dir).", show_default=False)]
QuietOpt = Annotated[bool, setting(RuntimeOptions, "quiet", "--quiet", "-q")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print a JSON object on stdout instead of plain text.")]
OutOpt = Annotated[Optional[Path], typer.Option("--out", "-o", help="Also write the video here.", show_default=False)]
FormatOpt = Annotated[Optional[str], typer.Option("--format", help="mp4, gif or png (a folder of numbered PNG frames, lossless). Default: from --out's suffix, else mp4.", show_default=False)]
OverwriteOpt = Annotated[bool, typer.Option("--overwrite", help="Replace --out if it exists. A png folder is replaced frame by frame (0000.png...; stale frames beyond the new count go) and only when it holds nothing but such frames: any other file in it is refused, never deleted.")]
ConfigOpt = Annotated[Optional[Path], typer.Option("--config", help="TOML or YAML file of settings; flags override it.", show_default=False)]
DeviceOpt = Annotated[Optional[str], setting(RuntimeOptions, "device", "--device")]
CpuOffloadOpt = Annotated[bool, setting(RuntimeOptions, "cpu_offload", "--cpu-offload")]
NoInjectionOpt = Annotated[bool, typer.Option("--no-injection", help="No KV injection from the reference.")]
