"""The option factory and the options shared by several commands, each defined once.

Every option goes through `option()` or `setting()` so that --help reads well: a flag shows no value, a
setting with choices shows them (`[latent|emb]`), any other option a short metavar (INT, PATH, HI,LO), and
each sits in a panel of related options. A setting's help, choices and default come from its config field's
metadata (`rule(...)` in ditflow/checks.py), written once there.
"""
from __future__ import annotations

import inspect
import typing
from dataclasses import MISSING, Field, fields
from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from typer.core import TyperCommand, TyperGroup, TyperOption

from ditflow.config import ExtractConfig, GuideConfig, RuntimeOptions
from ditflow.eval.settings import EvalSettings
from ditflow.image import IMAGE_FIT_HELP, IMAGE_FITS, IMAGE_HELP

from ._common import stdout_guard

# Panels of --help. Options without one (--config, --help) form typer's "Options" panel, printed first.
WHAT = "What to make"
VIDEO = "Model and reference video"
GUIDANCE = "Guidance"
SAMPLING = "Sampling"
FAST = "Fast mode"
EVALUATION = "Evaluation"
OUTPUT = "Output"
RUNTIME = "Runtime"


def family_panel(family: str) -> str:
    """The panel of the settings that only one model family reads."""
    return f"{family} models only"


_WORDS = {int: "INT", float: "FLOAT", str: "TEXT", Path: "PATH"}


def escape(text: str) -> str:
    """Help text as Typer's rich help shows it: `[default: ...]` (or `ditflow[ray]`) is text, not a markup tag
    to swallow."""
    return text.replace("[", "\\[")


def choices(values: tuple[str, ...]) -> str:
    """The metavar of an option that takes one of `values`."""
    return "[" + "|".join(values) + "]"


def option(*flags: str, help: str, metavar: str = "", panel: str | None = None, **kw: Any) -> typer.models.OptionInfo:
    """A Typer option. `metavar` is the value it takes as --help shows it (INT, PATH, [a|b]); a flag takes
    none and keeps the empty default (tests/test_cli.py checks that every value option names one)."""
    return typer.Option(*flags, help=escape(help), metavar=metavar, rich_help_panel=panel, **kw)


def argument(*, help: str, metavar: str, **kw: Any) -> typer.models.ArgumentInfo:
    """A Typer argument, named `metavar` in the usage line, its help and errors (Typer would write `{video}`)."""
    return typer.Argument(help=escape(help), metavar=metavar, show_default=False, **kw)


def setting(cls: type, name: str, *flags: str, panel: str | None = None,
            metavar: str | None = None) -> typer.models.OptionInfo:
    """An option for field `name` of config class `cls`: its help, choices and default from the field, its
    metavar from the field's type unless given (a comma list's shape, say HI,LO, reads better than INT,INT)."""
    from ditflow.checks import flag

    f = next(f for f in fields(cls) if f.name == name)
    flags = flags or (flag(name),)  # the field's own name, whatever the command calls its parameter
    text = " ".join(t for t in (f.metadata.get("help", ""), _default_note(f)) if t)
    return option(*flags, help=text, metavar=_metavar(cls, f) if metavar is None else metavar, panel=panel,
                  show_default=False)


def family_setting(name: str, *flags: str) -> typer.models.OptionInfo:
    """An option for a setting only one model family understands (`GuideConfig.family`): its help and rules from
    the family adapter's settings, in a panel named after the family, which the registry says."""
    from ditflow.backbones import family_settings

    adapter = family_settings()[name]
    return setting(adapter.settings, name, *flags, panel=family_panel(adapter.family))


def method_setting(name: str, *flags: str) -> typer.models.OptionInfo:
    """An option for a setting only one method reads (`GuideConfig.method_settings`): its help and rules from the
    method's settings, in a panel named after the method."""
    from ditflow.methods import method_panel, method_settings

    method = method_settings()[name]
    return setting(method.settings, name, *flags, panel=method_panel(method))


def _metavar(cls: type, f: Field) -> str:
    allowed = f.metadata.get("rule", {}).get("choices")
    if allowed:
        return choices(allowed)
    tp = _without_none(typing.get_type_hints(cls)[f.name])
    if tp is bool:
        return ""  # a flag (or an on/off pair of them)
    if typing.get_origin(tp) is tuple:
        args = typing.get_args(tp)
        if len(args) == 2 and args[1] is Ellipsis:
            return f"{_WORDS[args[0]]},..."
        return ",".join(_WORDS[a] for a in args)
    return _WORDS[tp]


def _without_none(tp: Any) -> Any:
    args = [a for a in typing.get_args(tp) if a is not type(None)]
    return args[0] if type(None) in typing.get_args(tp) and len(args) == 1 else tp


def _default_note(f: Field) -> str:
    """`[default: X]` for a field whose default is a value; a None default is the model's, which the field's
    help describes, and a flag's False goes without saying."""
    value = f.default
    if value is MISSING or value is None or isinstance(value, bool) or value in ("", ()) or "[default" in f.metadata.get("help", ""):
        return ""
    shown = ",".join(map(_shown, value)) if isinstance(value, tuple) else _shown(value)
    return f"[default: {shown}]"


def _shown(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


PANELS_FROM = 10  # options: a shorter --help reads best as one list, not as panels of one or two


class _GuardsStdout:
    """Parsing (which prints --help) and running, with a closed stdout reported as `StdoutClosed`."""

    def make_context(self, *args: Any, **kw: Any) -> Any:
        with stdout_guard():
            return super().make_context(*args, **kw)

    def invoke(self, ctx: Any) -> Any:
        with stdout_guard():
            return super().invoke(ctx)


class Command(_GuardsStdout, TyperCommand):
    """A command whose help reads as its docstring's paragraphs, whose options are in panels only when it
    has many, and whose own --help flag shows no value either (Typer shows `<bool>` for a flag without a
    metavar)."""

    def __init__(self, *args: Any, help: str | None = None, **kw: Any) -> None:
        super().__init__(*args, help=_reflow(help), **kw)
        options = [p for p in self.params if isinstance(p, TyperOption)]
        if len(options) < PANELS_FROM:
            for p in options:
                p.rich_help_panel = None

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        return _as_flag(super().get_help_option(ctx))


class Group(_GuardsStdout, TyperGroup):
    """A group (`ditflow`, `ditflow cache`), shown as `Command` is."""

    def __init__(self, *args: Any, help: str | None = None, **kw: Any) -> None:
        super().__init__(*args, help=_reflow(help), **kw)

    def get_help_option(self, ctx: Any) -> TyperOption | None:
        return _as_flag(super().get_help_option(ctx))


def _reflow(text: str | None) -> str | None:
    """Each paragraph of a docstring on one line: Typer's rich help keeps the source's line breaks, which then
    break again where the terminal wraps."""
    if not text:
        return text
    return "\n\n".join(" ".join(p.split()) for p in inspect.cleandoc(text).split("\n\n"))


def _as_flag(help_option: TyperOption | None) -> TyperOption | None:
    if help_option is not None:
        help_option.metavar = ""
    return help_option


# -- output and runtime: every command that writes or runs something --------------------------------------
CacheOpt = Annotated[Optional[Path], option("--cache", metavar="PATH", panel=RUNTIME,
                                            help="Cache folder (default: $DITFLOW_CACHE, else the user cache dir).")]
ConfigOpt = Annotated[Optional[Path], option("--config", metavar="FILE",
                                             help="TOML or YAML file of settings; flags override it.")]
DeviceOpt = Annotated[Optional[str], setting(RuntimeOptions, "device", "--device", panel=RUNTIME, metavar="DEVICE")]
CpuOffloadOpt = Annotated[Optional[bool], setting(RuntimeOptions, "cpu_offload", "--cpu-offload/--no-cpu-offload",
                                                   panel=RUNTIME)]
CheckpointingOpt = Annotated[Optional[bool], setting(
    RuntimeOptions, "gradient_checkpointing", "--gradient-checkpointing/--no-gradient-checkpointing", panel=RUNTIME)]
VaeTilingOpt = Annotated[Optional[bool], setting(RuntimeOptions, "vae_tiling", "--vae-tiling/--no-vae-tiling",
                                                 panel=RUNTIME)]
TextEncoderOpt = Annotated[Optional[str], setting(RuntimeOptions, "text_encoder", panel=RUNTIME)]
MaxMemoryOpt = Annotated[Optional[float], setting(RuntimeOptions, "max_memory", panel=RUNTIME, metavar="GIB")]
QuietOpt = Annotated[bool, setting(RuntimeOptions, "quiet", "--quiet", "-q", panel=OUTPUT)]
JsonOpt = Annotated[bool, option("--json", panel=OUTPUT, help=(
    "Print the command's result on stdout as one JSON document; notes and summaries go to stderr."))]
JsonOutOpt = Annotated[Optional[Path], option("--json-out", metavar="FILE", panel=OUTPUT, help=(
    "Write the result as JSON to FILE (atomically; an existing FILE only with --overwrite)."))]
CsvOpt = Annotated[Optional[Path], option("--csv", metavar="FILE", panel=OUTPUT, help=(
    "Write the result rows as CSV to FILE (atomically; an existing FILE only with --overwrite)."))]
OutOpt = Annotated[Optional[Path], option("--out", "-o", metavar="PATH", panel=OUTPUT, help="Also write the video here.")]
# ditflow.video.OUTPUT_FORMATS (tests/test_cli.py checks), not imported: it would load numpy for --help
FormatOpt = Annotated[Optional[str], option("--format", metavar="[mp4|gif|png]", panel=OUTPUT, help=(
    "mp4, gif or png (a folder of numbered PNG frames, lossless). Default: from --out's suffix, else mp4."))]
OverwriteOpt = Annotated[bool, option("--overwrite", panel=OUTPUT, help=(
    "Replace outputs that exist (without it they are refused, exit 2). A png folder is replaced frame by frame, "
    "and only when it holds nothing but numbered frames: any other file in it is refused, never deleted."))]

HashArg = Annotated[str, argument(metavar="HASH", help="Artifact hash (or a unique prefix of at least 6 characters).")]

# -- what extract (and batch) reads ------------------------------------------------------------------------
def _model_option() -> typer.models.OptionInfo:
    """--model, its names listed from the registry (a new preset or family shows up without touching this)."""
    from ditflow.backbones import model_help

    return option("--model", metavar="MODEL", panel=VIDEO, show_default=False,
                  help=f"{model_help()} [default: {ExtractConfig.model}]")


ModelSetting = Annotated[Optional[str], _model_option()]
FramesOpt = Annotated[Optional[int], setting(ExtractConfig, "frames", panel=VIDEO)]
HeightOpt = Annotated[Optional[int], setting(ExtractConfig, "height", panel=VIDEO)]
WidthOpt = Annotated[Optional[int], setting(ExtractConfig, "width", panel=VIDEO)]
BlocksOpt = Annotated[Optional[str], setting(ExtractConfig, "blocks", panel=VIDEO)]
CropOpt = Annotated[Optional[str], setting(ExtractConfig, "crop", panel=VIDEO)]

# -- how guide (and batch) generates -----------------------------------------------------------------------
NegativePromptOpt = Annotated[Optional[str], setting(GuideConfig, "negative_prompt", panel=WHAT)]
OptStepsOpt = Annotated[Optional[int], setting(GuideConfig, "opt_steps", panel=GUIDANCE)]
LrOpt = Annotated[Optional[str], setting(GuideConfig, "lr", panel=GUIDANCE, metavar="START,END")]
GuidanceRangeOpt = Annotated[Optional[str], setting(GuideConfig, "guidance_range", panel=GUIDANCE, metavar="HI,LO")]
NoInjectionOpt = Annotated[bool, option("--no-injection", panel=GUIDANCE, help="No KV injection from the reference.")]
StepsOpt = Annotated[Optional[int], setting(GuideConfig, "steps", panel=SAMPLING)]
CfgOpt = Annotated[Optional[float], setting(GuideConfig, "cfg", "--cfg", panel=SAMPLING)]
SchedulerOpt = Annotated[Optional[str], family_setting("scheduler")]
DynamicCfgOpt = Annotated[Optional[bool], family_setting("dynamic_cfg", "--dynamic-cfg/--no-dynamic-cfg")]
CfgLowNoiseOpt = Annotated[Optional[float], family_setting("cfg_low_noise")]
AudioCfgOpt = Annotated[Optional[float], family_setting("audio_cfg")]
ModalityCfgOpt = Annotated[Optional[float], family_setting("modality_cfg")]
CfgRescaleOpt = Annotated[Optional[float], family_setting("cfg_rescale")]
StgScaleOpt = Annotated[Optional[float], family_setting("stg_scale")]
# image-to-video: the picture a run animates (help written once, in ditflow/image.py)
ImageOpt = Annotated[Optional[Path], option("--image", metavar="FILE", panel=WHAT, show_default=False, help=IMAGE_HELP)]
# a Literal: Typer checks the choice as it parses, whether or not an --image comes (exit 2, one line)
ImageFitOpt = Annotated[Literal[IMAGE_FITS], option("--image-fit", metavar=choices(IMAGE_FITS), panel=WHAT,
                                                    help=IMAGE_FIT_HELP + " [default: crop]", show_default=False)]
FastOpt = Annotated[bool, setting(GuideConfig, "fast", "--fast", panel=FAST)]
MethodOpt = Annotated[Optional[str], setting(GuideConfig, "method", panel=GUIDANCE)]

# -- how eval (and batch) scores ---------------------------------------------------------------------------
MetricsOpt = Annotated[Optional[str], setting(EvalSettings, "metrics", panel=EVALUATION, metavar="METRIC,...")]
TrackerOpt = Annotated[Optional[str], setting(EvalSettings, "tracker", panel=EVALUATION)]
VariantOpt = Annotated[Optional[str], setting(EvalSettings, "mf_variant", panel=EVALUATION)]
