"""`ditflow viz amf|compare|loss`: pictures of artifacts. Written paths go to stdout."""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ._common import help_when_bare
from .options import CacheOpt, Command, Group, HashArg, OverwriteOpt, argument, option

viz_app = typer.Typer(cls=Group, help="Pictures of artifacts: AMF flow, side-by-side videos, guidance loss curves.", invoke_without_command=True,
                       callback=help_when_bare)

VizOutOpt = Annotated[Optional[Path], option("--out", "-o", metavar="PATH", show_default=False,
                                             help="Output file (default: a new name in the current folder).")]
STILL_ROWS = 4  # frames in a still of `viz compare`
FpsOpt = Annotated[int, option("--fps", metavar="INT", help="Frames per second of the written video.")]


def register(app: typer.Typer) -> None:
    app.add_typer(viz_app, name="viz")


def _target(out: Optional[Path], default: str) -> Path:
    """--out as given (write_video/plot_losses refuse to replace it without --overwrite), else a free
    default name in the current folder (a numeric suffix instead of overwriting)."""
    from ditflow.viz import free_path

    return out if out is not None else free_path(Path.cwd() / default)


def _video_target(path: Path, default: str, overwrite: bool, still: bool = False) -> tuple[Path, str]:
    """--out's format (.gif or .mp4, or with `still` a .png picture) and its preflight, before any picture is drawn."""
    from ditflow.errors import InputError
    from ditflow.fileio import check_target
    from ditflow.video import check_output

    fmt = path.suffix.lstrip(".").lower() or default
    if still and fmt == "png":
        return check_target(path, overwrite), fmt
    if fmt not in ("gif", "mp4"):
        raise InputError(f"--out {path}: write a .gif or .mp4{' (or a .png still)' if still else ''}")
    return check_output(path, fmt, overwrite)


@viz_app.command("amf", cls=Command)
def amf_command(
    ref: HashArg,
    block: Annotated[Optional[int], option("--block", "-b", metavar="INT", show_default=False,
                                           help="Transformer block (default: the artifact's first).")] = None,
    pairs: Annotated[Optional[str], option("--pairs", metavar="I-J,...", show_default=False,
                                           help="Latent frame pairs i-j, e.g. 0-1,0-3 (default: 0 to every later frame).")] = None,
    out: VizOutOpt = None,
    fps: FpsOpt = 2,
    cache: CacheOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """AMF of an amf artifact as a GIF or MP4, one picture per latent frame pair, or as one PNG still of
    all pairs in a grid (`--out x.png`: a paper figure).

    Left: arrows over the reference frame (latent frame i is pixel frame ≈ i·(frames-1)/(latents-1)). Right: the flow colour-coded (hue = direction, saturation = magnitude, white = still; legend wheel in the corner), one colour scale for all pairs.
    """
    from ditflow.artifacts import load
    from ditflow.errors import InputError
    from ditflow.store import Store
    from ditflow.video import write_video
    from ditflow.viz import amf_pictures, parse_pairs, picture_grid, write_still

    from ditflow.fileio import check_not_inputs

    store = Store(cache)
    art = load(store, ref, kind="amf")
    blocks = art.blocks
    block = blocks[0] if block is None and blocks else block
    if block not in blocks:
        raise InputError(f"artifact {art.hash[:12]} has no AMF of block {block}; it has blocks {', '.join(map(str, blocks)) or 'none'}")
    path, fmt = _video_target(_target(out, f"amf-{art.hash[:12]}-b{block}.gif"), "gif", overwrite, still=True)
    check_not_inputs({"--out": path}, [], cache=store.root)
    grid = art.grid
    chosen = parse_pairs(pairs, grid[0])
    pictures = amf_pictures(art.frames, art.amf(block).numpy(), grid, chosen, title=f"AMF {art.hash[:12]} block {block}")
    if fmt == "png":
        typer.echo(str(write_still(picture_grid(pictures), path, overwrite=overwrite)))
        return
    typer.echo(str(write_video(pictures, path, fmt=fmt, fps=fps, overwrite=overwrite)))


def _still_or_frames(arg: str, store):
    """A video's (or artifact's) frames, or an image file as one frame marked `still`."""
    from types import SimpleNamespace

    from ditflow.eval import resolve_frames
    from ditflow.video import IMAGE_EXTS

    path = Path(arg).expanduser()
    if path.is_file() and path.suffix.lower() in IMAGE_EXTS:
        from ditflow.fileio import printable
        from ditflow.image import read_image

        return SimpleNamespace(frames=read_image(path, f"image {printable(path)}")[None], label=str(arg), artifact=None, still=True)
    source = resolve_frames(arg, store)
    return SimpleNamespace(frames=source.frames, label=source.label, artifact=source.artifact, still=False)


@viz_app.command("compare", cls=Command)
def compare_command(
    ref: Annotated[str, argument(metavar="REF", help="Reference: a video file/folder, or an artifact hash (amf: its reference frames).")],
    gens: Annotated[list[str], argument(metavar="GEN", help="Generated videos: files/folders or gen artifact hashes; an image "
                                                       "file (image-to-video's picture) is shown as a still.")],
    labels: Annotated[Optional[str], option("--labels", metavar="TEXT,...", show_default=False,
                                            help="Comma-separated labels, one per video (reference first).")] = None,
    out: VizOutOpt = None,
    fps: FpsOpt = 8,
    cache: CacheOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Side-by-side video: reference | generated (| more), labelled, cut to the shortest and resized to the
    reference's height; or, with `--out x.png`, one still of it at 4 evenly spaced frames, one row each."""
    import numpy as np

    from ditflow.errors import InputError
    from ditflow.store import Store
    from ditflow.video import write_video
    from ditflow.viz import side_by_side, side_by_side_still, write_still

    store = Store(cache)
    if out is not None:  # before reading any video
        from ditflow.fileio import check_not_inputs

        _video_target(out, "mp4", overwrite, still=True)
        check_not_inputs({"--out": out}, [(f"the video {a}", Path(a)) for a in [ref, *gens]], cache=store.root)
    sources = [_still_or_frames(a, store) for a in [ref, *gens]]
    longest = max(len(s.frames) for s in sources)
    for s in sources:  # a still image (image-to-video's picture) stands beside every frame (a view: no copies)
        if s.still:
            s.frames = np.broadcast_to(s.frames, (longest, *s.frames.shape[1:]))
    names = [s.label if s.artifact is not None else Path(s.label).stem or s.label for s in sources]
    if labels is not None:
        names = [x.strip() for x in labels.split(",")]
        if len(names) != len(sources):
            raise InputError(f"--labels has {len(names)} labels for {len(sources)} videos (reference first)")
    slug = "".join(c if c.isalnum() or c in "-_" else "_" for c in names[1].split(":")[-1])[:40]
    path, fmt = _video_target(_target(out, f"compare-{slug}.mp4"), "mp4", overwrite, still=True)
    if fmt == "png":
        still = side_by_side_still([s.frames for s in sources], names, rows=STILL_ROWS)
        typer.echo(str(write_still(still, path, overwrite=overwrite)))
        return
    frames = side_by_side([s.frames for s in sources], names)
    typer.echo(str(write_video(frames, path, fmt=fmt, fps=fps, overwrite=overwrite)))


@viz_app.command("loss", cls=Command)
def loss_command(
    ref: HashArg,
    out: VizOutOpt = None,
    cache: CacheOpt = None,
    overwrite: OverwriteOpt = False,
) -> None:
    """Loss curves of a guide run (a gen artifact) as PNG: loss per optimisation step, per guided timestep."""
    from ditflow.artifacts import load
    from ditflow.errors import InputError
    from ditflow.store import Store
    from ditflow.viz import plot_losses

    from ditflow.fileio import check_outputs

    store = Store(cache)
    art = load(store, ref, kind="gen")
    path = _target(out, f"loss-{art.hash[:12]}.png")
    if path.suffix.lower() != ".png":
        raise InputError(f"--out {path}: the loss plot is a .png")
    check_outputs({"--out": path}, overwrite, cache=store.root)
    if not art.losses:
        raise InputError(f"artifact {art.hash[:12]} has no recorded losses (was it generated without guidance?)")
    typer.echo(str(plot_losses(art.losses, path, title=f"guidance loss of {art.hash[:12]}", overwrite=overwrite)))
