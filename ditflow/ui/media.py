"""What the page shows of artifacts, drawn by ditflow.viz and written by ditflow.video into the page's work
folder (the only place outside the cache that `ditflow ui` writes): the reference, its AMF still and animation
(`viz amf`), side-by-side videos (`viz compare`), loss curves (`viz loss`), thumbnails, exports. Every file is
named after the artifacts it shows, so a picture drawn once is served again."""
from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Sequence

import numpy as np

from ..artifacts import AmfArtifact, GenArtifact


def _out(work: Path, name: str) -> Path:
    folder = work / "out"
    folder.mkdir(exist_ok=True)
    return folder / name


def video_file(art: AmfArtifact | GenArtifact, work: Path, fps: int = 8) -> Path:
    """The artifact's frames (an AMF's reference, a generation's video) as an mp4 a browser plays."""
    from ..video import write_video

    path = _out(work, f"{art.kind}-{art.hash[:16]}.mp4")
    return path if path.exists() else write_video(art.frames, path, fmt="mp4", fps=fps)


def amf_files(art: AmfArtifact, work: Path, block: int | None = None) -> tuple[Path, Path]:
    """`viz amf`'s still (every frame pair in a grid, PNG) and its animation (GIF) of one block's AMF."""
    from ..video import write_video
    from ..viz import amf_pictures, parse_pairs, picture_grid, write_still

    block = art.blocks[0] if block is None else block
    still, anim = _out(work, f"amf-{art.hash[:16]}-b{block}.png"), _out(work, f"amf-{art.hash[:16]}-b{block}.gif")
    if not (still.exists() and anim.exists()):
        pictures = amf_pictures(art.frames, art.amf(block).numpy(), art.grid, parse_pairs(None, art.grid[0]),
                                title=f"AMF {art.hash[:12]} block {block}")
        still.exists() or write_still(picture_grid(pictures), still)
        anim.exists() or write_video(pictures, anim, fmt="gif", fps=2)
    return still, anim


def compare_file(items: Sequence[AmfArtifact | GenArtifact | np.ndarray], labels: Sequence[str], work: Path,
                 fps: int = 8) -> Path:
    """`viz compare`: the videos side by side under their labels, as mp4. An item may be a picture, uint8
    [H, W, 3] (an image-to-video run's image), shown still for the length of the others."""
    from ..image import image_digest
    from ..video import write_video
    from ..viz import side_by_side

    keys = [image_digest(a)[:10] if isinstance(a, np.ndarray) else a.hash[:10] for a in items]
    path = _out(work, "compare-" + "-".join(keys) + ".mp4")
    if not path.exists():
        length = min(len(a.frames) for a in items if not isinstance(a, np.ndarray))
        videos = [np.repeat(a[None], length, axis=0) if isinstance(a, np.ndarray) else a.frames for a in items]
        write_video(side_by_side(videos, list(labels)), path, fmt="mp4", fps=fps)
    return path


def loss_file(art: GenArtifact, work: Path) -> Path | None:
    """`viz loss`'s plot of a guide run's losses; None for a run without guidance."""
    from ..viz import plot_losses

    if not art.losses:
        return None
    path = _out(work, f"loss-{art.hash[:16]}.png")
    return path if path.exists() else plot_losses(art.losses, path, title=f"guidance loss of {art.hash[:12]}")


def export_file(art: AmfArtifact | GenArtifact, work: Path) -> Path:
    """`cache export`'s mp4 of the artifact, under a name that says what it is, for the browser to download."""
    from ..video import write_video

    path = _out(work, f"ditflow-{art.kind}-{art.hash[:12]}.mp4")
    return path if path.exists() else write_video(art.frames, path, fmt="mp4")


def thumbnail(frames: np.ndarray, height: int = 48, count: int = 3) -> str:
    """A data: URL of `count` evenly spaced frames side by side, `height` pixels high (the cache table's)."""
    from PIL import Image

    picks = np.linspace(0, len(frames) - 1, num=min(count, len(frames))).round().astype(int)
    tiles = []
    for f in frames[picks]:
        width = max(1, round(f.shape[1] * height / f.shape[0]))
        tiles.append(np.asarray(Image.fromarray(f).resize((width, height), Image.BILINEAR)))
    buf = io.BytesIO()
    Image.fromarray(np.concatenate(tiles, axis=1)).save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
