"""The image an image-to-video run animates: read from an image file (or a video's first frame), fitted to the
model's size the way extract fits a reference, and the digest that goes into the run's hash."""
from __future__ import annotations

import hashlib
import math
import os
from dataclasses import dataclass, replace

import numpy as np

from .errors import InputError
from .fileio import printable
from .imagefile import MAX_ASPECT, MAX_PIXELS, Decoded, decode_picture
from .video import IMAGE_EXTS, VIDEO_EXTS, check_input, crop_box, read_video, resize_frames

IMAGE_FITS = ("crop", "pad", "squash")
IMAGE_HELP = (f"Image-to-video: the picture to animate (png, jpg, webp, or a video's first frame; up to "
              f"{MAX_PIXELS // 1_000_000} megapixels and an aspect of {MAX_ASPECT}:1; transparent pixels are "
              f"composited over white).")
IMAGE_FIT_HELP = ("How the image is fitted to the reference's size: crop its largest centred region of that aspect, "
                  "pad it with black bars, or squash it.")
ASPECT_TOLERANCE = 0.05  # relative aspect difference the fit absorbs without a warning


@dataclass(frozen=True)
class FittedImage:
    """uint8 [H, W, 3] at the model's size and what fitting did (a note for stderr, or None)."""

    pixels: np.ndarray
    note: str | None = None
    source_hw: tuple[int, int] | None = None  # the image's own size, before fitting



def image_digest(pixels: np.ndarray) -> str:
    """sha256 of fitted uint8 pixels and their shape: what a run's hash takes (not the file's bytes: the same
    picture fitted the same way is the same run, whatever its container)."""
    h = hashlib.sha256(repr(pixels.shape).encode())
    h.update(np.ascontiguousarray(pixels, dtype=np.uint8).tobytes())
    return h.hexdigest()


def read_picture(path: str | os.PathLike, what: str | None = None) -> Decoded:
    """uint8 RGB [H, W, 3] of an image file (png, jpg, webp, bmp: size-checked before decoding, truncated data
    refused, transparency over white) or the first frame of a video. `what` names it in errors."""
    path = check_input(path)
    what = what or f"--image {printable(path)}"
    suffix = path.suffix.lower()
    if path.is_dir() or suffix in VIDEO_EXTS:
        return Decoded(read_video(path, max_frames=1)[0])
    if suffix not in IMAGE_EXTS:
        raise InputError(f"{what}: unsupported format '{printable(suffix)}'; use png, jpg, webp, bmp or a video (its "
                         f"first frame)")
    return decode_picture(path, what)


def read_image(path: str | os.PathLike, what: str | None = None) -> np.ndarray:
    """`read_picture`'s pixels."""
    return read_picture(path, what).pixels


def fit_image(image: np.ndarray, height: int, width: int, fit: str = "crop") -> FittedImage:
    """The image at (height, width): `crop` its largest centred region of that aspect, `pad` it into that
    aspect with black bars, or `squash` it."""
    if fit not in IMAGE_FITS:
        raise InputError(f"--image-fit must be one of {', '.join(IMAGE_FITS)}, not {fit!r}")
    h, w = source_hw = image.shape[:2]
    note = None
    if fit == "crop":
        top, left, ch, cw = crop_box(h, w, height, width)
        if (ch, cw) != (h, w):
            note = f"image cropped {w}x{h} to its centre {cw}x{ch}"
        image = image[top:top + ch, left:left + cw]
    elif fit == "pad":
        ph, pw = max(h, round(w * height / width)), max(w, round(h * width / height))
        if (ph, pw) != (h, w):
            note = f"image padded {w}x{h} to {pw}x{ph} with black bars"
        if ph * pw > MAX_PIXELS:  # a strip in a frame of another shape: shrink it first, so the canvas stays bounded
            scale = math.sqrt(MAX_PIXELS / (ph * pw))
            image = resize_frames(image[None], max(1, int(h * scale)), max(1, int(w * scale)))[0]
            h, w = image.shape[:2]
            ph, pw = max(h, round(w * height / width)), max(w, round(h * width / height))
        canvas = np.zeros((ph, pw, 3), np.uint8)
        top, left = (ph - h) // 2, (pw - w) // 2
        canvas[top:top + h, left:left + w] = image
        image = canvas
    elif abs(w / h - width / height) > ASPECT_TOLERANCE * width / height:
        note = f"image squashed from aspect {w / h:.2f} to {width / height:.2f} (--image-fit crop or pad keeps it)"
    return FittedImage(resize_frames(image[None], height, width)[0], note, source_hw)


def load_image(path: str | os.PathLike, height: int, width: int, fit: str = "crop") -> FittedImage:
    """`read_picture` then `fit_image`; the note says too when transparent pixels were composited over white."""
    picture = read_picture(path)
    fitted = fit_image(picture.pixels, height, width, fit)
    if not picture.transparent:
        return fitted
    note = "; ".join(n for n in ("image has transparent pixels: composited over white", fitted.note) if n)
    return replace(fitted, note=note)


def aspect_warning(image_hw: tuple[int, int], reference_hw: tuple[int, int], fit: str) -> str | None:
    """A warning when the image's aspect differs from the reference's by more than `fit` absorbs: the AMF is per
    patch position, so motion lands where the reference moved, and a differently framed picture moves wrongly."""
    (h, w), (rh, rw) = image_hw, reference_hw
    diff = abs((w / h) / (rw / rh) - 1)
    if diff <= ASPECT_TOLERANCE:
        return None
    return (f"warning: the image's aspect ({w / h:.2f}) differs from the reference's ({rw / rh:.2f}) by {100 * diff:.0f}%; "
            f"the motion follows the reference's patch positions, so after --image-fit {fit} it lands on other parts "
            f"of the picture")
