"""The reference's foreground for masked motion fidelity and FTD's foreground/background split: a mask video,
a folder of per-frame masks, one mask image, or a box `x0,y0,x1,y1`. Only its first frame is used (the grid
points are placed on frame 0), as DeT's MTBench and RoPECraft's ftd.py both read their first mask file."""
from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..fileio import printable

_BOX = re.compile(r"^\s*[-+]?[\w.]+\s*(,\s*[-+]?[\w.]+\s*){3}$")  # four comma-separated tokens: meant as a box
MASK_LEVEL = 64  # of 255, on any channel: DAVIS's palette colours (128, 0, 0) count, compression noise does not


def parse_box(text: str) -> tuple[int, int, int, int] | None:
    """"x0,y0,x1,y1" -> (x0, y0, x1, y1) whole pixels, x1 and y1 exclusive; None when `text` is no box at all
    (a path). Raises InputError for a box that is malformed or empty."""
    if not _BOX.match(text) or Path(text).expanduser().exists():
        return None
    parts = [p.strip() for p in text.split(",")]
    try:
        values = [float(p) for p in parts]
    except ValueError:
        raise InputError(f"--mask box {printable(text)} must be four whole numbers x0,y0,x1,y1 (pixels of the reference)")
    if not all(math.isfinite(v) and v == int(v) for v in values):
        raise InputError(f"--mask box {printable(text)} must be four whole numbers x0,y0,x1,y1 (pixels of the reference)")
    x0, y0, x1, y1 = (int(v) for v in values)
    if not (0 <= x0 < x1 and 0 <= y0 < y1):
        raise InputError(f"--mask box {printable(text)} must have 0 <= x0 < x1 and 0 <= y0 < y1 (x1, y1 exclusive)")
    return x0, y0, x1, y1


def check_mask(text: str) -> None:
    """Refuse a --mask that cannot be read, before any model loads: a bad box, a missing path, a FIFO or device."""
    if parse_box(text) is not None:
        return
    path = Path(text).expanduser()
    if not path.exists():
        raise InputError(f"mask not found: {printable(text)} (not a file, a folder, nor a box x0,y0,x1,y1)")
    if not (path.is_dir() or path.is_file()):
        raise InputError(f"mask {printable(text)} is not a regular file (a device, FIFO or socket); give a mask "
                         "video, a folder of masks, an image or a box x0,y0,x1,y1")


def load_mask(text: str, height: int, width: int) -> np.ndarray:
    """The foreground of the reference's first frame, bool [height, width] (the reference's own size): a box
    drawn on it, or the first frame of a mask video/folder/image (a pixel is foreground when any channel is at
    least MASK_LEVEL). A mask of another size than the reference, or a box reaching past it, is refused."""
    box = parse_box(text)
    if box is not None:
        x0, y0, x1, y1 = box
        if x1 > width or y1 > height:
            raise InputError(f"--mask box {printable(text)} reaches past the reference's {width}x{height} frame")
        mask = np.zeros((height, width), bool)
        mask[y0:y1, x0:x1] = True
        return mask
    check_mask(text)
    frame = _first_frame(Path(text).expanduser())
    if frame.shape[:2] != (height, width):
        raise InputError(f"mask {printable(text)} is {frame.shape[1]}x{frame.shape[0]} but the reference is "
                         f"{width}x{height}: give a mask of the reference's size")
    return frame.max(axis=-1) >= MASK_LEVEL


def _first_frame(path: Path) -> np.ndarray:
    """uint8 RGB [H, W, 3] of the first frame of a mask video, folder or image."""
    from ..video import IMAGE_EXTS, read_video

    if path.is_file() and path.suffix.lower() in IMAGE_EXTS:
        from ..imagefile import open_picture

        with open_picture(path, f"mask {printable(path)}") as im:
            try:
                return np.asarray(im.convert("RGB"))
            except Exception as e:  # truncated or corrupt
                raise InputError(f"cannot read mask {printable(path)}: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
    return read_video(path, max_frames=1)[0]


def resize_mask(mask: np.ndarray, height: int, width: int) -> np.ndarray:
    """bool [H, W] -> bool [height, width], nearest neighbour (the reference is resized to the generation's size)."""
    if mask.shape == (height, width):
        return mask
    import cv2

    return cv2.resize(mask.astype(np.uint8), (width, height), interpolation=cv2.INTER_NEAREST).astype(bool)


def inside(points: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Which points (x, y) px [N, 2] fall on the mask bool [H, W] (rounded to the nearest pixel): bool [N]."""
    h, w = mask.shape
    x = np.clip(np.rint(points[:, 0]).astype(int), 0, w - 1)
    y = np.clip(np.rint(points[:, 1]).astype(int), 0, h - 1)
    return mask[y, x]
