"""Reading and writing videos as uint8 arrays [frames, height, width, 3]; fitting them to a model's size."""
from __future__ import annotations

import os
import re
from pathlib import Path

import numpy as np

from .config import CROPS
from .errors import InputError
from .fileio import check_target, make_parents, printable, remove_folders, temp_name, writing
from .imagefile import FORMATS, check_frame_size, open_picture

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp"}
VIDEO_EXTS = {".mp4", ".mov", ".avi", ".mkv", ".webm", ".gif"}
OUTPUT_FORMATS = ("mp4", "gif", "png")
FRAME_NAME = re.compile(r"^\d{4,}\.png$")  # the frames `write_video(fmt="png")` names: 0000.png, 0001.png...


# ---------------------------------------------------------------------------------------------- reading
def check_input(path: str | os.PathLike) -> Path:
    """A video path that exists and is a regular file or a folder: a FIFO or device (even behind a
    symlink) is refused before anything opens it, since reading one blocks or never ends."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"video not found: {printable(path)}")
    if not (path.is_dir() or path.is_file()):
        raise InputError(f"{printable(path)} is not a regular file (a device, FIFO or socket); give a video file or a folder of frames")
    return path


def frame_files(folder: Path) -> list[Path]:
    """The image files of a frame folder in name order; an image-named entry that is no regular file is refused."""
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_EXTS)
    odd = [p for p in files if not p.is_file()]
    if odd:
        raise InputError(f"frame {printable(odd[0])} is not a regular file (a folder, device or FIFO); remove it from {printable(folder)}")
    if not files:
        raise InputError(f"folder {printable(folder)} holds no image frames ({', '.join(sorted(IMAGE_EXTS))})")
    return files


def read_video(path: str | os.PathLike, max_frames: int | None = None) -> np.ndarray:
    """All frames (or the first `max_frames`) of a video file or a folder of images, as uint8 RGB."""
    path = check_input(path)
    try:
        if path.is_dir():
            frames = _read_folder(path, max_frames)
        elif path.suffix.lower() == ".gif":
            frames = _read_gif(path, max_frames)
        elif path.suffix.lower() in VIDEO_EXTS:
            _check_stream_size(path)
            frames = _read_with_decord(path, max_frames)
        else:
            raise InputError(f"unsupported video format '{printable(path.suffix)}' ({printable(path)}); use mp4, mov, gif or a folder of frames")
    except InputError:
        raise
    except Exception as e:  # every decoder failure is a bad input file
        raise InputError(f"cannot read video {printable(path)}: {_first_line(e)}")
    if frames.ndim != 4 or frames.shape[0] == 0:
        raise InputError(f"cannot read video {printable(path)}: no frames decoded")
    return frames


def read_range(path: str | os.PathLike, frames: int, frame_range: tuple[int, int, int] | None) -> tuple[np.ndarray, int | None]:
    """The frames an extraction takes: the first `frames` of the video, or of its frames
    range(START, END, STEP) (END exclusive). Returns them with how many were on offer (for `fit_note`;
    None when unknown). A range that runs past the video's end is refused."""
    if frame_range is None:
        return read_video(path, max_frames=frames), count_frames(path)
    start, end, step = frame_range
    video = read_video(path, max_frames=end)
    if len(video) < end:
        raise InputError(f"{printable(path)} has {len(video)} frames, but --frame-range {start},{end},{step} reads up to "
                         f"frame {end - 1} (END is exclusive)")
    picked = video[start:end:step]
    return picked[:frames], len(picked)


def count_frames(path: str | os.PathLike) -> int | None:
    """How many frames a video has, where its header or folder says so cheaply; None when unknown."""
    path = Path(path)
    try:
        if path.is_dir():
            return len(frame_files(path))
        if path.suffix.lower() == ".gif":
            from PIL import Image

            with Image.open(path) as im:
                return int(getattr(im, "n_frames", 1))
        import av

        with av.open(str(path)) as container:
            return int(container.streams.video[0].frames) or None
    except Exception:  # only a note depends on it
        return None


def _first_line(e: Exception) -> str:
    return printable(str(e).splitlines()[0] if str(e) else type(e).__name__)


def _read_folder(path: Path, max_frames: int | None) -> np.ndarray:
    files = frame_files(path)
    files = files[:max_frames] if max_frames else files
    frames = []
    for f in files:
        with open_picture(f, f"frame {printable(f)}") as im:  # its size checked before it is decoded
            try:
                frames.append(np.asarray(im.convert("RGB")))
            except Exception as e:  # truncated or corrupt: strict decoding raises rather than fills with grey
                raise InputError(f"cannot read frame {printable(f)}: {_first_line(e)}")
        if frames[-1].shape != frames[0].shape:
            h, w = frames[0].shape[:2]
            raise InputError(f"frames in {printable(path)} do not all have the same size: {printable(f.name)} is "
                             f"{frames[-1].shape[1]}x{frames[-1].shape[0]}, {printable(files[0].name)} {w}x{h}")
    return np.stack(frames)


def _read_gif(path: Path, max_frames: int | None) -> np.ndarray:
    from PIL import ImageSequence

    what = f"video {printable(path)}"
    with open_picture(path, what, formats=("GIF", *FORMATS)) as im:
        frames = []
        for frame in ImageSequence.Iterator(im):
            check_frame_size(*frame.size, what)  # a later frame may reach past the first's size
            frames.append(np.asarray(frame.convert("RGB")))
            if max_frames and len(frames) >= max_frames:
                break
    return np.stack(frames)


def _check_stream_size(path: Path) -> None:
    """The frame size the container announces, checked before any frame is decoded (a header-only open)."""
    import av

    with av.open(str(path)) as container:
        if not container.streams.video:
            raise InputError(f"cannot read video {printable(path)}: it holds no video stream")
        codec = container.streams.video[0].codec_context
        if codec.width and codec.height:  # 0 where the container does not say: each frame is checked as decoded
            check_frame_size(codec.width, codec.height, f"video {printable(path)}")


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
            check_frame_size(frame.width, frame.height, f"video {printable(path)}")  # a stream may change size mid-way
            frames.append(frame.to_ndarray(format="rgb24"))
            if max_frames and len(frames) >= max_frames:
                break
    if not frames:
        raise InputError(f"cannot read video {printable(path)}: no frames decoded")
    return np.stack(frames)


# ---------------------------------------------------------------------------------------------- fitting
def _check_size(height: int, width: int) -> None:
    # OpenCV answers bad sizes with a two-line assertion; a user gets one line saying which size
    if not all(isinstance(v, (int, np.integer)) and v > 0 for v in (height, width)):
        raise InputError(f"cannot resize frames to {width}x{height} (width x height): sizes must be positive whole numbers")


def resize_frames(frames: np.ndarray, height: int, width: int) -> np.ndarray:
    """Resize every frame to (height, width) with area/bicubic interpolation, as uint8."""
    import cv2

    _check_size(height, width)
    if frames.ndim != 4 or frames.shape[1] < 1 or frames.shape[2] < 1:
        raise InputError(f"cannot resize frames of shape {tuple(frames.shape)}: expected [frames, height, width, 3]")
    if frames.shape[1:3] == (height, width):
        return frames
    shrink = height < frames.shape[1] or width < frames.shape[2]
    interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
    return np.stack([cv2.resize(f, (width, height), interpolation=interp) for f in frames])


def check_crop(mode: str) -> str:
    if mode not in CROPS:
        raise InputError(f"--crop must be 'none' or 'center', not {mode!r}")
    return mode


def crop_box(height: int, width: int, target_h: int, target_w: int) -> tuple[int, int, int, int]:
    """(top, left, h, w): the largest centred region of a height x width frame with the target's aspect."""
    _check_size(target_h, target_w)
    if width * target_h > height * target_w:  # wider than the target: cut the sides
        w = max(1, round(height * target_w / target_h))
        return 0, (width - w) // 2, height, w
    h = max(1, round(width * target_h / target_w))
    return (height - h) // 2, 0, h, width


def fit_frames(frames: np.ndarray, height: int, width: int, crop: str = "none") -> np.ndarray:
    """Frames at (height, width): squashed (crop "none"), or centre-cropped to that aspect first ("center")."""
    if check_crop(crop) == "center":
        top, left, h, w = crop_box(frames.shape[1], frames.shape[2], height, width)
        frames = frames[:, top:top + h, left:left + w]
    return resize_frames(frames, height, width)


def fit_note(source: tuple[int, int, int], total: int | None, height: int, width: int, crop: str = "none") -> str | None:
    """What fitting changed, for stderr: e.g. 'resized 720x480 -> 64x64 (aspect 1.50 -> 1.00); used the first
    17 of 24 frames'. `source` is the (frames, height, width) read, `total` the video's frame count if known."""
    used, h, w = source
    parts = []
    if crop == "center":
        _, _, ch, cw = crop_box(h, w, height, width)
        if (ch, cw) != (h, w):
            parts.append(f"cropped {w}x{h} to its centre {cw}x{ch}")
        h, w = ch, cw
    if (h, w) != (height, width):
        text = f"resized {w}x{h} -> {width}x{height}"
        if abs(w / h - width / height) > 0.01:
            text += f" (aspect {w / h:.2f} -> {width / height:.2f}; --crop center keeps it)"
        parts.append(text)
    if total is not None and total > used:
        parts.append(f"used the first {used} of {total} frames")
    return "; ".join(parts) or None


# ---------------------------------------------------------------------------------------------- writing
def check_output(path: str | os.PathLike, fmt: str | None = None, overwrite: bool = False) -> tuple[Path, str]:
    """The preflight of a video output (pure: it writes nothing), run before any work so a taken --out
    fails at once. Returns (path, format); the format defaults to the suffix, else png (a folder).

    With `overwrite`, a png folder may hold only frames ditflow names (0000.png...): those are replaced
    and the rest of a user's folder is never touched, so any other entry is refused."""
    path = Path(path).expanduser()
    fmt = (fmt or (path.suffix.lstrip(".") if path.suffix else "png")).lower()
    if fmt not in OUTPUT_FORMATS:
        raise InputError(f"unknown output format '{printable(fmt)}': use mp4, gif or png")
    check_target(path, overwrite, folder=fmt == "png")
    if fmt == "png" and path.is_dir():
        try:
            others = sorted(p.name for p in path.iterdir() if not (FRAME_NAME.match(p.name) and p.is_file()))
        except OSError as e:
            raise InputError(f"cannot list {printable(path)}: {e.strerror}")
        if others:
            more = f" and {len(others) - 1} more" if len(others) > 1 else ""
            raise InputError(f"{printable(path)} holds files other than ditflow's frames ({printable(others[0])}{more}); "
                             f"--overwrite replaces only a folder of numbered frames (0000.png...): choose a new or empty --out")
    return path, fmt


def write_video(frames: np.ndarray, path: str | os.PathLike, fmt: str | None = None, fps: int = 8, overwrite: bool = False) -> Path:
    """Write uint8 frames as mp4, gif, or a folder of numbered PNGs (lossless). Refuses to overwrite
    unless asked (see `check_output`); writes under temporary names first, so a failed write (an
    OutputError naming the file) leaves nothing behind and the old output, if any, intact."""
    import imageio.v3 as iio

    path, fmt = check_output(path, fmt, overwrite)
    frames = np.ascontiguousarray(frames, dtype=np.uint8)
    if fmt == "png":
        return _write_frames(frames, path)
    created = make_parents(path)
    tmp = temp_name(path)
    with writing(path, lambda: (tmp.unlink(missing_ok=True), remove_folders(created))):
        if fmt == "gif":
            iio.imwrite(tmp, frames, extension=".gif", duration=1000 / fps, loop=0)
        else:
            if frames.shape[1] % 2 or frames.shape[2] % 2:  # yuv420p (what players read) needs even sizes
                frames = np.pad(frames, ((0, 0), (0, frames.shape[1] % 2), (0, frames.shape[2] % 2), (0, 0)), mode="edge")
            iio.imwrite(tmp, frames, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)
        os.replace(tmp, path)
    return path


def _write_frames(frames: np.ndarray, path: Path) -> Path:
    """Numbered PNGs: a new folder is filled under a temporary name and renamed into place; an existing one
    (checked to hold only ditflow's frames) keeps its identity and permissions: every frame is written
    under a temporary name first, then renamed over the old, then frames beyond the new count go."""
    import shutil

    import imageio.v3 as iio

    if not path.is_dir():
        created = make_parents(path)
        tmp = temp_name(path)
        with writing(path, lambda: (shutil.rmtree(tmp, ignore_errors=True), remove_folders(created))):
            tmp.mkdir()  # the umask's permissions, as any folder the user makes
            for i, f in enumerate(frames):
                iio.imwrite(tmp / f"{i:04d}.png", f, extension=".png")
            os.rename(tmp, path)
        return path
    temps = [path / f".tmp-{os.getpid()}-{i:04d}.png" for i in range(len(frames))]
    with writing(path, lambda: [t.unlink(missing_ok=True) for t in temps]):
        for t, f in zip(temps, frames):
            iio.imwrite(t, f, extension=".png")
        for i, t in enumerate(temps):
            os.replace(t, path / f"{i:04d}.png")
        for p in path.iterdir():
            if FRAME_NAME.match(p.name) and int(p.stem) >= len(frames):
                p.unlink()
    return path
