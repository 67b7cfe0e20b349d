"""Decoding a picture file a user names (an --image, a frame of a reference folder) without trusting it: its
size, read from the header, is checked before any pixel is decoded; truncated or corrupt data is an error,
never grey fill; transparent pixels are composited over white instead of showing what lies under them."""
from __future__ import annotations

import os
import re
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np

from .errors import InputError
from .fileio import printable

MAX_PIXELS = 40_000_000  # per picture or video frame (8K UHD, 7680x4320, is 33 MP); checked before decoding
MAX_ASPECT = 50  # long side over short side: a panorama is rarely past 10:1, a 1x1,000,000 strip is no picture
# What a picture may hold, whatever its suffix says. Pillow knows many more formats, some of which run
# helpers (EPS runs Ghostscript): a renamed file of another kind is refused, not handed to them.
FORMATS = ("PNG", "JPEG", "BMP", "WEBP")  # JPEG opens camera MPOs too
WHITE = 255  # what transparent pixels become


@dataclass(frozen=True)
class Decoded:
    """uint8 RGB [H, W, 3] of a picture, and whether some of its pixels were transparent (composited over white)."""

    pixels: np.ndarray
    transparent: bool = False


def check_frame_size(width: int, height: int, what: str) -> None:
    """Refuse a picture or video frame of more than MAX_PIXELS or an aspect past MAX_ASPECT, from the size its
    header announces: a 1 MB PNG can hold 400 MP of zeros, and a thin strip makes a padded canvas huge."""
    if width < 1 or height < 1:
        raise InputError(f"{what} has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise InputError(f"{what} is {width}x{height} ({width * height / 1e6:.0f} megapixels); ditflow reads pictures and "
                         f"video frames of up to {MAX_PIXELS // 1_000_000} megapixels (8K is 33): shrink it first")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise InputError(f"{what} is {width}x{height}, an aspect of {max(width, height) / min(width, height):.0f}:1; "
                         f"ditflow reads pictures and video frames up to {MAX_ASPECT}:1: crop it first")


@contextmanager
def strict_decoding() -> Iterator[None]:
    """Pillow's truncation leniency off while decoding. It is one process-wide switch (code that reads damaged
    files turns it on); here a truncated file must be an error, not an image filled with grey."""
    from PIL import ImageFile

    saved = ImageFile.LOAD_TRUNCATED_IMAGES
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    try:
        yield
    finally:
        ImageFile.LOAD_TRUNCATED_IMAGES = saved


@contextmanager
def open_picture(path: str | os.PathLike, what: str, formats: tuple[str, ...] | None = FORMATS) -> Iterator[Any]:
    """The PIL image of `path`, opened (header only) and its size checked, in strict decoding; nothing decoded yet."""
    from PIL import Image

    try:
        with warnings.catch_warnings():  # the size check below speaks instead of Pillow's warning
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path, formats=formats)
    except Image.DecompressionBombError as e:  # Pillow's own bound (179 MP), far above ours: the same refusal
        pixels = re.search(r"\((\d+) pixels\)", str(e))  # its message holds the count, not the sides
        size = f"{int(pixels[1]) / 1e6:.0f} megapixels" if pixels else f"over {2 * Image.MAX_IMAGE_PIXELS // 1_000_000} megapixels"
        raise InputError(f"{what} is {size}; ditflow reads pictures and video frames of up to {MAX_PIXELS // 1_000_000} "
                         f"megapixels (8K is 33): shrink it first")
    except Exception as e:  # not a picture of an accepted format, unreadable
        raise InputError(f"cannot read {what}: {first_line(e)}")
    with image, strict_decoding():
        check_frame_size(*image.size, what)
        yield image


def decode_picture(path: str | os.PathLike, what: str) -> Decoded:
    """The pixels of a picture file as `cv2.imread` gave them (the same bytes for RGB, grey, palette and 16-bit
    files, EXIF orientation applied) but bounded, strict and with transparency composited over white."""
    from PIL import ImageOps

    with open_picture(path, what) as image:
        try:
            image.load()
        except Exception as e:  # truncated or corrupt data: OSError, SyntaxError, ValueError, EOFError, zlib.error...
            raise InputError(f"cannot read {what}: {first_line(e)}")
        try:
            ImageOps.exif_transpose(image, in_place=True)  # a phone's photo upright, as cv2.imread turned it
        except Exception:  # a damaged EXIF block is metadata only: the pixels are read
            pass
        return to_rgb(image)


def to_rgb(image: Any) -> Decoded:
    """uint8 RGB of a loaded PIL image: 16-bit grey keeps its high byte (as OpenCV does); alpha, if any pixel is
    not opaque, is composited over white (dropping it would show the colours an editor left under it)."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.clip(np.asarray(image).astype(np.int64) >> 8, 0, 255).astype(np.uint8)
        return Decoded(np.repeat(grey[..., None], 3, axis=-1))
    if image.has_transparency_data:
        rgba = np.asarray(image.convert("RGBA"))
        alpha = rgba[..., 3:].astype(np.uint32)
        if (alpha < 255).any():
            over = (rgba[..., :3] * alpha + WHITE * (255 - alpha) + 127) // 255
            return Decoded(over.astype(np.uint8), transparent=True)
        return Decoded(np.ascontiguousarray(rgba[..., :3]))
    return Decoded(np.array(image.convert("RGB")))


def first_line(e: BaseException) -> str:
    return printable(str(e).splitlines()[0] if str(e).strip() else type(e).__name__)
