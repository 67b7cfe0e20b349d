"""Reading and writing videos as uint8 arrays [frames, height, width, 3]."""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"}


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first `max_frames`) of a video file or a folder of images, as uint8 RGB."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"video not found: {path}")
    try:
        if path.is_dir():
            frames = _read_folder(path, max_frames)
        elif path.suffix.lower() == ".gif":
            frames = _read_gif(path, max_frames)
        elif path.suffix.lower() in VIDEO_EXTS:
            frames = _read_with_decord(path, max_frames)
        else:
            raise InputError(f"unsupported video format '{path.suffix}' ({path}); use mp4, mov, gif or a folder of frames")
    except InputError:
        raise
    except Exception as e:  # every decoder failure is a bad input file
        raise InputError(f"cannot read video {path}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InputError(f"cannot read video {path}: no frames decoded")
    return frames


def _read_folder(path: Path, max_frames: int | None) -> np.ndarray:
    from PIL import Image

    files = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    if not files:
        raise InputError(f"folder {path} holds no image frames ({', '.join(sorted(IMAGE_EXTS))})")
    files = files[:max_frames] if max_frames else files
    frames = [np.asarray(Image.open(f).convert("RGB")) for f in files]
    if len({f.shape for f in frames}) != 1:
        raise InputError(f"frames in {path} do not all have the same size")
    return np.stack(frames)


def _read_gif(path: Path, max_frames: int | None) -> np.ndarray:
    from PIL import Image, ImageSequence

    with Image.open(path) as im:
        frames = []
        for frame in ImageSequence.Iterator(im):
            frames.append(np.asarray(frame.convert("RGB")))
            if max_frames and len(frames) >= max_frames:
                break
    return np.stack(frames)


def _read_with_decord(path: Path, max_frames: int | None) -> np.ndarray:
    try:
        import decord
    except ImportError:  # decord has no wheel for some platforms: PyAV reads the same files
        return _read_with_av(path, max_frames)
    try:
        vr = decord.VideoReader(str(path), ctx=decord.cpu(0))
        n = len(vr) if not max_frames else min(len(vr), max_frames)
        return vr.get_batch(list(range(n))).asnumpy()
    except Exception:  # decord rejects some pixel formats and containers that PyAV reads
        return _read_with_av(path, max_frames)


def _read_with_av(path: Path, max_frames: int | None) -> np.ndarray:
    import av

    frames = []
    with av.open(str(path)) as container:
        for frame in container.decode(video=0):
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise InputError(f"cannot read video {path}: no frames decoded")
    return np.stack(frames)


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize every frame to (height, width) with area/bicubic interpolation, as uint8."""
    import cv2

    if frames.shape[1:3] == (height, width):
        return frames
    shrink = height < frames.shape[1] or width < frames.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def write_video(frames: np.ndarray, path: str | os.PathLike, fmt: str | None = None, fps: int = 8, overwrite: bool = False) -> Path:
    """Write uint8 frames as mp4, gif, or a folder of numbered PNGs (lossless). Refuses to overwrite
    unless asked; writes to a temporary name first so a failed write leaves nothing behind."""
    import shutil
    import tempfile

    import imageio.v3 as iio

    path = Path(path)
    fmt = (fmt or (path.suffix.lstrip(".").lower() if path.suffix else "png")).lower()
    if fmt not in ("mp4", "gif", "png"):
        raise InputError(f"unknown output format '{fmt}': use mp4, gif or png")
    if path.exists() and not overwrite:
        raise InputError(f"{path} already exists; choose another --out or pass --overwrite")
    path.parent.mkdir(parents=True, exist_ok=True)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if fmt == "png":
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=path.parent))
        for i, f in enumerate(frames):
            iio.imwrite(tmp / f"{i:04d}.png", f)
        if path.exists():
            shutil.rmtree(path) if path.is_dir() else path.unlink()
        os.replace(tmp, path)
        return path
    tmp = path.with_name(f".tmp-{path.name}")
    try:
        if fmt == "gif":
            iio.imwrite(tmp, frames, extension=".gif", duration=1000 / fps, loop=0)
        else:
            if frames.shape[1] % 2 or frames.shape[2] % 2:  # yuv420p (what players read) needs even sizes
                frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
            iio.imwrite(tmp, frames, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path
